"""``misuan kb``: encrypted retrieval (密态检索) from the command line.

Only typer, rich and the CLI's common options are imported here; the client and
the retrieval edge functions load when a command runs."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from ..cli.common import ClusterOpt, JsonOpt, KeyOpt, _client, _emit_json, _fmt_bytes, err, out
from . import protocol as P

VersionOpt = typer.Option(None, "--version", "-v")


def _warn(msg: str) -> None:
    err.print(f"[yellow]warning:[/yellow] {msg}")


def kb_publish(
    path: Path = typer.Argument(..., help="a folder of .txt/.md files, or a JSONL file of {'id', 'text'} lines"),
    name: str = typer.Option(..., "--name", "-n", help="the KB's name"),
    model: str = typer.Option(..., "--model", "-m", help="the hosted model whose tokenizer chunks the documents"),
    chunk_tokens: int = typer.Option(P.CHUNK_TOKENS, "--chunk-tokens", min=1, max=1024),
    overlap: Optional[int] = typer.Option(
        None, "--overlap", min=0, help=f"tokens shared by neighbouring chunks (default {P.OVERLAP}, at most chunk-tokens / 8)"
    ),
    reveal: str = typer.Option(P.REVEAL_PASSAGES, "--reveal", help="what a searching user may see: passages | ids | none"),
    cluster: Optional[Path] = ClusterOpt,
    key_file: Optional[Path] = KeyOpt,
    as_json: bool = JsonOpt,
):
    """Chunk, embed and secret-share documents on this machine; share i goes to node i only."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    from .publish import publish_kb

    with _client(cluster, key_file) as client:
        with Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), console=err, transient=True) as bar:
            task = bar.add_task("chunking", total=None)

            def stage(what: str, done: int, total: int) -> None:
                bar.update(task, description=what, completed=done, total=total)

            res = publish_kb(client, path, name, model, chunk_tokens=chunk_tokens, overlap=overlap, reveal=reveal, stage=stage, warn=_warn)
    if as_json:
        _emit_json(res.to_dict())
        return
    out.print(
        f"published [bold]{res.name}@{res.version}[/bold]: {res.documents} documents, {res.chunks} chunks of ≤ {res.chunk_tokens} tokens, "
        f"reveal {res.reveal}, {_fmt_bytes(res.share_bytes_per_node)} per node, {res.seconds:.1f} s (embedding {res.embed_seconds:.1f} s)"
    )


def kb_search(
    name: str,
    question: str,
    k: int = typer.Option(5, "-k", help="how many chunks"),
    version: Optional[int] = VersionOpt,
    plaintext: bool = typer.Option(False, "--plaintext", help="the same search in the clear on the owner's copy (--source)"),
    source: Optional[Path] = typer.Option(None, "--source", help="the owner's documents, for --plaintext"),
    cluster: Optional[Path] = ClusterOpt,
    key_file: Optional[Path] = KeyOpt,
    as_json: bool = JsonOpt,
):
    """Secure top-k search: the question is embedded and secret-shared here; no node learns it or which chunks match."""
    from .. import errors as E

    with _client(cluster, key_file) as client:
        if plaintext:
            if source is None:
                raise E.InvalidInput("--plaintext needs --source PATH (the owner's documents)")
            from .reference import search_plaintext

            res = search_plaintext(client, name, source, question, k, version=version, warn=_warn)
        else:
            from .client import search

            res = search(client, name, question, k, version=version)
    for note in res.notes:
        _warn(note)
    if as_json:
        _emit_json(res.to_dict())
        return
    t = Table(title=f"{res.kb}@{res.version}: top {res.k} ({'plaintext' if plaintext else 'secure'}, {res.seconds:.2f} s)")
    for c in ("#", "id", "score", "text"):
        t.add_column(c)
    for i, p in enumerate(res.results, 1):
        text = (p.text or "").replace("\n", " ")
        t.add_row(str(i), p.id or "(withheld)", "-" if p.score is None else f"{p.score:.4f}", text[:200] or "(withheld)")
    out.print(t)


def kb_list(cluster: Optional[Path] = ClusterOpt, key_file: Optional[Path] = KeyOpt, as_json: bool = JsonOpt):
    """Knowledge bases on every node that you own or were granted."""
    from ..client.assets import list_assets

    with _client(cluster, key_file) as client:
        rows = list_assets(client, P.KB)
    if as_json:
        _emit_json(rows)
        return
    t = Table(title="knowledge bases")
    for c in ("name", "version", "owner", "max share bytes/node", "state"):
        t.add_column(c)
    for r in rows:
        t.add_row(r[P.KB], str(r["version"]), str(r.get("owner", "-")), _fmt_bytes(r.get("share_bytes")), r.get("state", "ready"))
    out.print(t)


def kb_show(
    name: str,
    version: Optional[int] = VersionOpt,
    cluster: Optional[Path] = ClusterOpt,
    key_file: Optional[Path] = KeyOpt,
    as_json: bool = JsonOpt,
):
    """A KB's public record (checked identical on every node): sizes, policy, grants."""
    from ..client.assets import show_asset

    with _client(cluster, key_file) as client:
        info = show_asset(client, P.KB, name, version)
    cfg = info["config"]
    if as_json:
        _emit_json({**info, "config": {k: v for k, v in cfg.items() if k != "chunk_ids"}})
        return
    out.print(f"[bold]{info[P.KB]}@{info['version']}[/bold] (versions {info['versions']}), owner {info['owner']}")
    out.print(
        f"  {cfg['documents']} documents, {cfg['n_chunks']} chunks of ≤ {cfg['chunk_tokens']} tokens (overlap {cfg['overlap']}), "
        f"{cfg['dim']}-dim {cfg['embedder']}, tokenizer of {cfg['model']}, reveal {cfg['reveal']}"
    )
    out.print(f"  share bytes per node: {', '.join(_fmt_bytes(b) for b in info['share_bytes_per_node'])}")
    if "grant_scopes" in info:
        out.print(f"  granted to: {', '.join(f'{p} ({s})' for p, s in info['grant_scopes'].items()) or '-'}")


def kb_rm(
    name: str,
    version: Optional[int] = VersionOpt,
    cluster: Optional[Path] = ClusterOpt,
    key_file: Optional[Path] = KeyOpt,
    as_json: bool = JsonOpt,
):
    """Remove a KB (or one version) and its shares from every node (owner only)."""
    from ..client.assets import remove_asset

    with _client(cluster, key_file) as client:
        removed = remove_asset(client, P.KB, name, version)
    _emit_json({"name": name, "removed_versions": removed}) if as_json else out.print(f"removed {name} versions {removed} from every node")


def kb_grant(
    name: str,
    to: str = typer.Option(..., "--to"),
    scope: str = typer.Option("all", "--scope", help="all | search (search only) | rag (ask only)"),
    cluster: Optional[Path] = ClusterOpt,
    key_file: Optional[Path] = KeyOpt,
    as_json: bool = JsonOpt,
):
    """Allow PRINCIPAL to search NAME, ask with it, or both (owner only)."""
    from .. import errors as E
    from ..client.assets import grant_asset

    if scope not in ("all", P.SCOPE_SEARCH, P.SCOPE_RAG):
        raise E.InvalidInput(f"--scope must be all, {P.SCOPE_SEARCH} or {P.SCOPE_RAG}; got {scope!r}")
    with _client(cluster, key_file) as client:
        grant_asset(client, P.KB, name, to, None if scope == "all" else scope)
    _emit_json({"name": name, "granted": to, "scope": scope}) if as_json else out.print(f"{to} may now use {name} ({scope})")


def kb_revoke(
    name: str,
    to: str = typer.Option(..., "--from", "--to"),
    cluster: Optional[Path] = ClusterOpt,
    key_file: Optional[Path] = KeyOpt,
    as_json: bool = JsonOpt,
):
    """Withdraw PRINCIPAL's grant on NAME (owner only)."""
    from ..client.assets import revoke_asset

    with _client(cluster, key_file) as client:
        had = revoke_asset(client, P.KB, name, to)
    _emit_json({"name": name, "revoked": to, "had_grant": had}) if as_json else out.print(
        f"{to} may no longer use {name}" if had else f"{to} had no grant on {name}"
    )


def ask_cmd(
    question: str = typer.Argument(..., help="the question (stays secret: embedded and tokenized here)"),
    model: str = typer.Option(..., "--model", "-m"),
    kb: str = typer.Option(..., "--kb", help="the knowledge base to answer from"),
    k: int = typer.Option(2, "-k", help="how many chunks go into the prompt"),
    max_tokens: int = typer.Option(64, "--max-tokens"),
    temperature: float = typer.Option(0.0, "--temperature", help="0 = greedy"),
    seed: Optional[int] = typer.Option(None, "--seed"),
    system: Optional[str] = typer.Option(None, "--system", help="the system prompt (default: answer from the context)"),
    plaintext: bool = typer.Option(
        False, "--plaintext", help="the reference in the clear: your weights (--weights) and documents (--source)"
    ),
    weights: Optional[Path] = typer.Option(None, "--weights", help="the model's weights, for --plaintext"),
    source: Optional[Path] = typer.Option(None, "--source", help="the KB's documents, for --plaintext"),
    cluster: Optional[Path] = ClusterOpt,
    key_file: Optional[Path] = KeyOpt,
    as_json: bool = JsonOpt,
):
    """Answer from a knowledge base under MPC: retrieval, prompt and generation all on secret shares."""
    import time

    from .. import errors as E
    from ..inference import GenerationParams, GenerationStats

    params = GenerationParams(max_tokens, temperature, 1.0, seed)
    messages = [{"role": "user", "content": question}]
    with _client(cluster, key_file) as client:
        if plaintext:
            if weights is None or source is None:
                raise E.InvalidInput("--plaintext needs --weights PATH (the model) and --source PATH (the KB's documents)")
            from .rag import ask_plaintext

            t0 = time.perf_counter()
            ids, facts = ask_plaintext(weights, source, client, kb, messages, params, k=k, system=system)
            text = facts.pop("answer")
            _emit_json(
                {"answer": text, "tokens": ids, "mode": "plaintext", **facts, "seconds": time.perf_counter() - t0}
            ) if as_json else out.print(text)
            return
        from .rag import RagModel

        with err.status(f"loading {model} and {kb} into the nodes' secure runtimes…"):
            rag = RagModel(client, model, kb, k=k, system=system)
        for note in rag.notes:
            _warn(note)
        stats = GenerationStats()
        ids: list[int] = []
        pieces: list[str] = []
        for tok, piece in rag.stream(messages, params, stats):
            if tok >= 0:
                ids.append(tok)
            pieces.append(piece)
            if not as_json:
                out.print(piece, end="", highlight=False, markup=False)
                out.file.flush()
        if as_json:
            _emit_json({"answer": "".join(pieces), "tokens": ids, "mode": "mpc", "stats": stats.to_dict()})
        else:
            out.print()
            err.print(
                f"[dim]time to first token {stats.prefill_s:.1f} s (retrieval included), {stats.decode_s_per_token:.2f} s/token, "
                f"{_fmt_bytes(int(stats.bytes_per_token))}/token; no node saw the question, the chunks or the answer[/dim]"
            )


def register(app: typer.Typer) -> None:
    kb_app = typer.Typer(no_args_is_help=True, help="Encrypted retrieval (密态检索): publish, search, list, show, rm, grant, revoke.")
    for name, command in (
        ("publish", kb_publish),
        ("search", kb_search),
        ("list", kb_list),
        ("show", kb_show),
        ("rm", kb_rm),
        ("grant", kb_grant),
        ("revoke", kb_revoke),
    ):
        kb_app.command(name)(command)
    app.add_typer(kb_app, name="kb")
    app.command("ask")(ask_cmd)
