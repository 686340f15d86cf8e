"""``misuan`` command line. Every command that prints a result takes --json."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.table import Table

from ..errors import MisuanError
from . import identity
from .data import data_app

app = typer.Typer(add_completion=False, no_args_is_help=True, help="misuan (密算): confidential computing for large models on SPU.")
node_app = typer.Typer(no_args_is_help=True, help="Run a compute node (one party).")
cluster_app = typer.Typer(no_args_is_help=True, help="Create, start, inspect and stop clusters.")
audit_app = typer.Typer(no_args_is_help=True, help="Verify the nodes' hash-chained audit logs.")
psi_app = typer.Typer(no_args_is_help=True, help="Private set intersection (隐私求交) between two parties' nodes.")
model_app = typer.Typer(no_args_is_help=True, help="Encrypted model hosting (密态托管): publish, list, show, rm, grant, revoke, verify.")
app.add_typer(node_app, name="node")
app.add_typer(cluster_app, name="cluster")
app.add_typer(audit_app, name="audit")
app.add_typer(model_app, name="model")
app.add_typer(psi_app, name="psi")
app.add_typer(data_app, name="data")
identity.register(app, node_app, cluster_app)

out = Console()
err = Console(stderr=True)
DEFAULT_DIR = Path.home() / ".misuan" / "cluster"

DirOpt = typer.Option(DEFAULT_DIR, "--dir", "-d", help="cluster directory")
JsonOpt = typer.Option(False, "--json", help="machine-readable output")


def _emit_json(obj) -> None:
    sys.stdout.write(json.dumps(obj, indent=2, default=str) + "\n")


def _fmt_bytes(n: int | None) -> str:
    if n is None:
        return "-"
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


# ------------------------------------------------------------------ node


@node_app.command("serve")
def node_serve(config: Path = typer.Option(..., "--config", "-c", help="node.toml")):
    """Run one node in the foreground."""
    from ..node.server import serve

    try:
        serve(config)
    except MisuanError as exc:
        sys.stderr.write(f"misuan node refuses to start: {exc}\n")
        raise typer.Exit(2)


# ------------------------------------------------------------------ cluster


@cluster_app.command("init")
def cluster_init(
    dir: Path = DirOpt,
    parties: int = typer.Option(3, "--parties", "-n"),
    hosts: Optional[str] = typer.Option(None, "--hosts", help="comma-separated host per party"),
    tls: Optional[bool] = typer.Option(None, "--tls/--no-tls", help="TLS for control API and links (default: on unless all loopback)"),
    protocol: Optional[str] = typer.Option(None, "--protocol", help="ABY3 (3 parties) | CHEETAH (2) | SEMI2K"),
    ids: Optional[str] = typer.Option(None, "--ids", help="comma-separated party names (default node0,node1,...)"),
    separate: Optional[bool] = typer.Option(
        None,
        "--separate/--local",
        help="only the public cluster file, each operator runs `misuan node init` on its own host (default: when a host is not loopback)",
    ),
    force: bool = typer.Option(False, "--force"),
    as_json: bool = JsonOpt,
):
    """Write a cluster file; for a local cluster also the admin key and every node's keys and certificate."""
    from ..cluster.init import init_cluster

    res = init_cluster(
        dir,
        parties=parties,
        hosts=hosts.split(",") if hosts else None,
        tls=tls,
        protocol=protocol,
        force=force,
        ids=ids.split(",") if ids else None,
        separate=separate,
    )
    info = {"dir": str(res.dir), "cluster_file": str(res.cluster_file), "parties": res.parties, "protocol": res.protocol, "tls": res.tls}
    if as_json:
        _emit_json(info)
    else:
        out.print(f"cluster initialised in {res.dir}: {res.parties} parties, {res.protocol}, TLS {'on' if res.tls else 'off'}")


def _states_table(title: str, states) -> Table:
    t = Table(title=title)
    for c in ("rank", "id", "url", "pid", "state", "note"):
        t.add_column(c)
    for s in states:
        t.add_row(str(s.rank), s.id, s.url, str(s.pid or "-"), "healthy" if s.healthy else ("running" if s.running else "stopped"), s.note)
    return t


@cluster_app.command("up")
def cluster_up(
    dir: Path = DirOpt,
    parties: int = typer.Option(3, "--parties", "-n"),
    tls: bool = typer.Option(False, "--tls/--no-tls", help="TLS when the cluster is created here"),
    as_json: bool = JsonOpt,
):
    """Start every local node (creating the cluster if needed); wait until linked."""
    from ..cluster.local import up

    if not as_json:
        with err.status("starting nodes and checking the SPU link…"):
            states = up(dir, parties=parties, tls=tls)
    else:
        states = up(dir, parties=parties, tls=tls)
    if as_json:
        _emit_json([s.__dict__ for s in states])
    else:
        out.print(_states_table(f"misuan cluster {dir}", states))


@cluster_app.command("down")
def cluster_down(dir: Path = DirOpt, as_json: bool = JsonOpt):
    """Stop every local node; harmless when nothing runs."""
    from ..cluster.local import down

    states = down(dir)
    if as_json:
        _emit_json([s.__dict__ for s in states])
    else:
        out.print(_states_table(f"misuan cluster {dir}", states))


@cluster_app.command("status")
def cluster_status(dir: Path = DirOpt, as_json: bool = JsonOpt):
    """Health, protocol, uptime, resident assets and memory of each node."""
    from ..cluster.local import status

    rows = status(dir)
    if as_json:
        _emit_json(rows)
        return
    t = Table(title=f"misuan cluster {dir}")
    for c in ("rank", "id", "health", "protocol", "uptime", "sessions", "models (resident)", "rss", "workers rss", "store"):
        t.add_column(c)
    for r in rows:
        if not r["healthy"]:
            t.add_row(str(r["rank"]), r["id"], "[red]down[/red]", "-", "-", "-", "-", "-", "-", "-")
            continue
        resident = {(m["model"], m["version"]): m for m in r.get("resident", [])}
        assets = (
            ", ".join(
                f"{a['model']}@{a['version']}"
                + (
                    f" [resident {_fmt_bytes(resident[(a['model'], a['version'])].get('rss_bytes'))}]"
                    if (a["model"], a["version"]) in resident
                    else ""
                )
                for a in r["assets"]
            )
            or "-"
        )
        t.add_row(
            str(r["rank"]),
            r["id"],
            "[green]ok[/green]",
            f"{r['protocol']}/{r['field']}",
            f"{r['uptime_s']:.0f} s",
            str(len(r["sessions"])),
            assets,
            _fmt_bytes(r["rss_bytes"]),
            _fmt_bytes(r["workers_rss_bytes"]),
            _fmt_bytes(r["store_bytes"]),
        )
    out.print(t)
    if any(not r["healthy"] for r in rows):
        raise typer.Exit(1)


# ------------------------------------------------------------------ audit


@audit_app.command("verify")
def audit_verify(
    dir: Path = DirOpt,
    receipts: Optional[Path] = typer.Option(
        None, "--receipts", help="a client's receipts dir (default: the one cluster.toml names, if present)"
    ),
    as_json: bool = JsonOpt,
):
    """Recompute every node's audit chain and check it against its peers' records and the client's receipts."""
    from ..node.audit_verify import default_receipts, verify_cluster

    d = dir.expanduser().resolve()
    reports = verify_cluster(d, receipts.expanduser().resolve() if receipts else default_receipts(d))
    if as_json:
        _emit_json([r.public() for r in reports])
    else:
        t = Table(title="audit chains")
        for c in ("node", "rows", "peer heads", "receipts", "result", "first broken row", "reason"):
            t.add_column(c)
        for r in reports:
            result = "[green]ok[/green]" if r.ok else "[red]BROKEN[/red]"
            t.add_row(r.party, str(r.rows), str(r.peer_heads), str(r.receipts), result, str(r.first_broken or "-"), r.reason)
        out.print(t)
    if not all(r.ok for r in reports):
        raise typer.Exit(1)


# ------------------------------------------------------------------ models

ClusterOpt = typer.Option(None, "--cluster", "-c", help="cluster file (default: <default dir>/cluster.toml)")
KeyOpt = typer.Option(None, "--key-file", envvar="MISUAN_KEY", help="your key file (default: the cluster file's key_file)")


def _client(cluster: Optional[Path], key: Optional[Path]):
    from ..client.client import connect

    return connect(cluster or DEFAULT_DIR / "cluster.toml", key)


@model_app.command("publish")
def model_publish(
    path: Path = typer.Argument(..., help="GGUF file or Hugging Face model directory"),
    name: str = typer.Option(..., "--name", "-n"),
    cluster: Optional[Path] = ClusterOpt,
    key_file: Optional[Path] = KeyOpt,
    receipt: Optional[Path] = typer.Option(None, "--receipt", help="where to keep the commitment receipt (default ~/.misuan/receipts/)"),
    as_json: bool = JsonOpt,
):
    """Secret-share a model on this machine and stream share i to node i only."""
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn, TransferSpeedColumn

    from ..hosting import publish_model

    with _client(cluster, key_file) as client:
        if as_json:
            res = publish_model(client, path, name, receipt=receipt or True)
            _emit_json(res.to_dict())
            return
        with Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            DownloadColumn(),
            TransferSpeedColumn(),
            TimeRemainingColumn(),
            console=err,
            transient=True,
        ) as bar:
            task = bar.add_task(f"loading {path.name}", total=None)

            def progress(done: int, total: int, tensor: str) -> None:
                bar.update(task, completed=done, total=total, description=f"publishing {name}: {tensor}")

            res = publish_model(client, path, name, progress=progress, receipt=receipt or True)
    out.print(
        f"published [bold]{res.name}@{res.version}[/bold]: {res.tensors} tensors, {res.parameters:,} parameters, "
        f"{_fmt_bytes(res.share_bytes_per_node)} max per node, {res.seconds:.1f} s (load {res.load_seconds:.1f} s); receipt {res.receipt}"
    )


@model_app.command("list")
def model_list(cluster: Optional[Path] = ClusterOpt, key_file: Optional[Path] = KeyOpt, as_json: bool = JsonOpt):
    """Models registered on every node that you own or were granted."""
    from ..hosting import list_models

    with _client(cluster, key_file) as client:
        rows = list_models(client)
    if as_json:
        _emit_json(rows)
        return
    t = Table(title="models")
    for c in ("name", "version", "architecture", "parameters", "owner", "max share bytes/node", "state"):
        t.add_column(c)
    for r in rows:
        t.add_row(
            r["model"],
            str(r["version"]),
            str(r.get("architecture", "-")),
            f"{r.get('params') or 0:,}",
            str(r.get("owner", "-")),
            _fmt_bytes(r.get("share_bytes")),
            r.get("state", "ready"),
        )
    out.print(t)


@model_app.command("show")
def model_show(
    name: str,
    version: Optional[int] = typer.Option(None, "--version", "-v"),
    cluster: Optional[Path] = ClusterOpt,
    key_file: Optional[Path] = KeyOpt,
    as_json: bool = JsonOpt,
):
    """Public config, tensors and commitments of a hosted model (checked identical on every node)."""
    from ..hosting import show_model

    with _client(cluster, key_file) as client:
        info = show_model(client, name, version)
    if as_json:
        _emit_json(info)
        return
    cfg = info["config"]
    out.print(f"[bold]{info['name']}@{info['version']}[/bold] (versions {info['versions']}), owner {info['owner']}, kind {info['kind']}")
    out.print(
        f"  {cfg.get('n_layers')} layers, dim {cfg.get('dim')}, heads {cfg.get('n_heads')}/{cfg.get('n_kv_heads')}, vocab {cfg.get('vocab_size')}, "
        f"{cfg.get('n_params', 0):,} parameters, {len(info['tensors'])} tensors"
    )
    out.print(f"  share bytes per node: {', '.join(_fmt_bytes(b) for b in info['share_bytes_per_node'])}")
    if "grants" in info:
        out.print(f"  granted to: {', '.join(info['grants']) or '-'}")


@model_app.command("rm")
def model_rm(
    name: str,
    version: Optional[int] = typer.Option(None, "--version", "-v"),
    cluster: Optional[Path] = ClusterOpt,
    key_file: Optional[Path] = KeyOpt,
    as_json: bool = JsonOpt,
):
    """Remove a model (or one version) and its shares from every node (owner only)."""
    from ..hosting import remove_model

    with _client(cluster, key_file) as client:
        removed = remove_model(client, name, version)
    if as_json:
        _emit_json({"name": name, "removed_versions": removed})
    else:
        out.print(f"removed {name} versions {removed} from every node")


@model_app.command("grant")
def model_grant(
    name: str,
    to: str = typer.Option(..., "--to"),
    cluster: Optional[Path] = ClusterOpt,
    key_file: Optional[Path] = KeyOpt,
    as_json: bool = JsonOpt,
):
    """Allow PRINCIPAL to run inference on NAME (owner only)."""
    from ..hosting import grant_model

    with _client(cluster, key_file) as client:
        grant_model(client, name, to)
    _emit_json({"name": name, "granted": to}) if as_json else out.print(f"{to} may now use {name}")


@model_app.command("revoke")
def model_revoke(
    name: str,
    to: str = typer.Option(..., "--from", "--to"),
    cluster: Optional[Path] = ClusterOpt,
    key_file: Optional[Path] = KeyOpt,
    as_json: bool = JsonOpt,
):
    """Withdraw PRINCIPAL's grant on NAME (owner only)."""
    from ..hosting import revoke_model

    with _client(cluster, key_file) as client:
        had = revoke_model(client, name, to)
    _emit_json({"name": name, "revoked": to, "had_grant": had}) if as_json else out.print(
        f"{to} may no longer use {name}" if had else f"{to} had no grant on {name}"
    )


@model_app.command("verify")
def model_verify(
    name: str,
    path: Path = typer.Argument(..., help="the owner's plaintext model"),
    version: Optional[int] = typer.Option(None, "--version", "-v"),
    cluster: Optional[Path] = ClusterOpt,
    key_file: Optional[Path] = KeyOpt,
    as_json: bool = JsonOpt,
):
    """Owner-only: check the hosted shares reconstruct to your weights (random probes, nothing revealed to nodes)."""
    from ..hosting import verify_model

    with _client(cluster, key_file) as client:
        res = verify_model(client, name, path, version)
    if as_json:
        _emit_json(res)
    else:
        verdict = "[green]OK[/green]" if res["ok"] else f"[red]MISMATCH[/red] in {res['mismatched'][:5]}"
        out.print(f"{name}@{res['version']}: {res['tensors']} tensors, max |hosted - yours| = {res['max_abs_error']:.2e} → {verdict}")
    if not res["ok"]:
        raise typer.Exit(1)


# ------------------------------------------------------------------ PSI


@psi_app.command("run")
def psi_run(
    party: list[str] = typer.Option(
        ...,
        "--party",
        help="PARTY=INPUT (give two): a dataset on that party's node (NAME, or OWNER/NAME shared with you), "
        "or a path starting with / ~ or . inside data/<you>/ on that node (registered as your dataset first)",
    ),
    key: list[str] = typer.Option(..., "--key", help="key column (repeat for a compound key)"),
    protocol: str = typer.Option("rr22", "--protocol", help="rr22 | kkrt | ecdh"),
    receiver: str = typer.Option("both", "--receiver", help="who gets the result: a party name or 'both'"),
    join: str = typer.Option("inner", "--join", help="inner | left | difference"),
    out_path: Path = typer.Option(..., "--out", help="output CSV (with --receiver both: OUT.<party>.csv per party)"),
    duplicates: str = typer.Option("refuse", "--duplicates", help="refuse | first | all"),
    casefold: bool = typer.Option(False, "--casefold", help="compare keys case-insensitively"),
    cluster: Optional[Path] = ClusterOpt,
    key_file: Optional[Path] = KeyOpt,
    as_json: bool = JsonOpt,
):
    """Intersect two parties' tables; each file stays on its own node."""
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    parties = {}
    for item in party:
        name, sep, path = item.partition("=")
        if not sep or not name or not path:
            raise MisuanError(f"--party takes PARTY=DATASET or PARTY=PATH, got {item!r}")
        parties[name] = path
    with _client(cluster, key_file) as client:
        kw = dict(protocol=protocol, receiver=receiver, join=join, out=out_path, duplicates=duplicates, casefold=casefold)
        if as_json:
            res = client.psi(parties, key, **kw)
        else:
            with Progress(TextColumn("{task.description}"), BarColumn(), TimeElapsedColumn(), console=err, transient=True) as bar:
                task = bar.add_task("PSI", total=1.0)
                res = client.psi(
                    parties, key, progress=lambda f, stage: bar.update(task, completed=f, description=f"PSI ({protocol}): {stage}"), **kw
                )
    if as_json:
        _emit_json(res.to_dict())
        return
    a, b = res.parties
    out_desc = ", ".join(f"{k}: {v}" for k, v in res.outputs.items())
    inter = "hidden from the non-receiver" if res.intersection is None else f"{res.intersection:,}"
    out.print(
        f"PSI {res.protocol} ({res.join}): {a} {res.input_rows[0]:,} rows, {b} {res.input_rows[1]:,} rows, "
        f"intersection {inter}; {res.seconds:.1f} s, {_fmt_bytes(res.bytes_sent)} sent → {out_desc}"
    )


# ------------------------------------------------------------------ inference


def _receipt_source(name: str) -> Path:
    pattern = f"{name}@*.json" if "/" in name else f"*/{name}@*.json"  # receipts/<owner>/<name>@<v>.json
    receipts = sorted((Path.home() / ".misuan" / "receipts").glob(pattern), key=lambda p: int(p.stem.split("@")[1]))
    if not receipts:
        raise MisuanError(f"--plaintext needs the weights: pass --weights PATH (no publish receipt for {name!r} on this machine)")
    return Path(json.loads(receipts[-1].read_text())["source"])


def _load_generator(model: str, cluster, key_file, plaintext: bool, weights: Optional[Path], quiet: bool):
    if plaintext:
        from ..inference.plain import PlainModel

        path = weights or _receipt_source(model)
        if quiet:
            return PlainModel(path), None
        with err.status(f"loading {path} (plaintext reference engine)…"):
            return PlainModel(path), None
    client = _client(cluster, key_file)
    if quiet:
        return client.model(model), client
    with err.status(f"loading {model} into the nodes' secure runtime (first use can take ~20 s)…"):
        return client.model(model), client


@app.command("generate")
def generate_cmd(
    prompt: str = typer.Argument(..., help="the user message (or raw text with --raw)"),
    model: str = typer.Option(..., "--model", "-m"),
    max_tokens: int = typer.Option(64, "--max-tokens"),
    temperature: float = typer.Option(0.0, "--temperature", help="0 = greedy"),
    top_p: float = typer.Option(1.0, "--top-p", help="plaintext mode only; MPC supports greedy/temperature"),
    seed: Optional[int] = typer.Option(None, "--seed"),
    raw: bool = typer.Option(False, "--raw", help="feed the prompt as plain text, no chat template"),
    fixed_length: bool = typer.Option(False, "--fixed-length", help="always run max-tokens steps (hides the answer length)"),
    plaintext: bool = typer.Option(False, "--plaintext", help="run the reference engine locally on your own weights"),
    weights: Optional[Path] = typer.Option(None, "--weights", help="weights for --plaintext (default: the publish receipt's source)"),
    cluster: Optional[Path] = ClusterOpt,
    key_file: Optional[Path] = KeyOpt,
    as_json: bool = JsonOpt,
):
    """Answer one prompt under MPC, streaming tokens as they arrive."""
    import time

    from ..inference import GenerationParams, GenerationStats

    params = GenerationParams(max_tokens, temperature, top_p, seed, fixed_length)
    params.check(secure=not plaintext)
    gen, client = _load_generator(model, cluster, key_file, plaintext, weights, as_json)
    stats = GenerationStats()
    ids: list[int] = []
    text = ""
    t0 = time.perf_counter()
    status = None
    try:
        stream = gen.stream([{"role": "user", "content": prompt}], params, stats, raw=raw)
        if not as_json:
            status = err.status("prefill under MPC…" if not plaintext else "prefill…")
            status.start()
        for tok, piece in stream:
            if status is not None:
                status.stop()
                status = None
            if tok >= 0:
                ids.append(tok)
            text += piece
            if not as_json and piece:
                sys.stdout.write(piece)
                sys.stdout.flush()
    finally:
        if status is not None:
            status.stop()
        if client is not None:
            client.close()
    total = time.perf_counter() - t0
    res = {"text": text, "token_ids": ids, "mode": "plaintext" if plaintext else "mpc", **stats.to_dict(), "total_s": round(total, 2)}
    if as_json:
        _emit_json(res)
    else:
        sys.stdout.write("\n")
        err.print(
            f"[dim]{len(ids)} tokens · prompt {stats.prompt_tokens} tokens · prefill {stats.prefill_s:.1f} s · "
            f"{stats.decode_s_per_token:.2f} s/token"
            + (f" · {stats.bytes_per_token / 1e6:.1f} MB/token" if not plaintext else "")
            + f" · {res['finish_reason']}[/dim]"
        )


@app.command("chat")
def chat_cmd(
    model: str = typer.Option(..., "--model", "-m"),
    max_tokens: int = typer.Option(128, "--max-tokens"),
    temperature: float = typer.Option(0.0, "--temperature"),
    seed: Optional[int] = typer.Option(None, "--seed"),
    system: Optional[str] = typer.Option(None, "--system", help="system prompt (default: the model template's own)"),
    plaintext: bool = typer.Option(False, "--plaintext"),
    weights: Optional[Path] = typer.Option(None, "--weights"),
    cluster: Optional[Path] = ClusterOpt,
    key_file: Optional[Path] = KeyOpt,
):
    """Interactive multi-turn chat (empty line or /exit quits)."""
    from ..inference import GenerationParams

    params = GenerationParams(max_tokens, temperature, 1.0, seed)
    params.check(secure=not plaintext)
    gen, client = _load_generator(model, cluster, key_file, plaintext, weights, False)
    messages: list[dict] = [{"role": "system", "content": system}] if system else []
    err.print(f"[dim]chatting with {model} ({'plaintext' if plaintext else 'MPC'}); empty line or /exit to quit[/dim]")
    try:
        while True:
            try:
                line = input("you> ")
            except EOFError:
                break
            if not line.strip() or line.strip() == "/exit":
                break
            messages.append({"role": "user", "content": line})
            sys.stdout.write(f"{model}> ")
            answer = ""
            for piece in gen.chat(messages, params):
                answer += piece
                sys.stdout.write(piece)
                sys.stdout.flush()
            sys.stdout.write("\n")
            messages.append({"role": "assistant", "content": answer})
    finally:
        if client is not None:
            client.close()


@app.command("demo")
def demo_cmd(
    dir: Path = typer.Option(Path(".misuan/demo"), "--dir", "-d", help="cluster directory (kept between runs: the model stays published)"),
    question: str = typer.Option("What is the capital of France?", "--question", "-q"),
    max_tokens: int = typer.Option(16, "--max-tokens"),
    keep: bool = typer.Option(False, "--keep", help="leave the nodes running afterwards"),
    as_json: bool = JsonOpt,
):
    """Local 3-node cluster → publish SmolLM2 → a secure answer, streamed, checked against plaintext."""
    from ..demo import run_demo

    res = run_demo(dir, question, max_tokens, keep)
    if as_json:
        _emit_json(res)
    if not res["answer"].strip():
        raise typer.Exit(1)


# ------------------------------------------------------------------ selftest


@app.command("selftest")
def selftest_cmd(
    dir: Optional[Path] = typer.Option(None, "--dir", "-d", help="use/bring up the cluster in this directory (default: a temporary one)"),
    parties: int = typer.Option(3, "--parties", "-n"),
    as_json: bool = JsonOpt,
):
    """Secret matrix product + softmax on real node processes, checked against plaintext."""
    from ..selftest import selftest

    if as_json:
        res = selftest(dir, parties=parties)
        _emit_json(res)
    else:
        with err.status(f"bringing up {parties} nodes and computing softmax(x @ w) under MPC…"):
            res = selftest(dir, parties=parties)
        t = Table(title="misuan selftest")
        t.add_column("check")
        t.add_column("value")
        t.add_row("program", res["program"])
        t.add_row("parties / protocol", f"{res['parties']} / {res['protocol']} (node pids {', '.join(map(str, res['node_pids']))})")
        t.add_row("max |secure - plaintext|", f"{res['max_abs_error']:.2e} (tolerance {res['tolerance']:.0e})")
        t.add_row("time (total / link / compute)", f"{res['seconds']:.2f} s / {res['link_seconds']:.2f} s / {res['compute_seconds']:.2f} s")
        t.add_row("bytes exchanged (sent, all nodes)", f"{_fmt_bytes(res['send_bytes'])} in {res['rounds']} rounds")
        t.add_row("result", "[green]PASS[/green]" if res["ok"] else "[red]FAIL[/red]")
        out.print(t)
    if not res["ok"]:
        raise typer.Exit(1)


def main() -> None:
    try:
        app(standalone_mode=True)
    except MisuanError as exc:
        sys.stderr.write(f"error: {exc}\n")
        sys.exit(1)


if __name__ == "__main__":
    main()
