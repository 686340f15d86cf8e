"""``misuan generate``, ``misuan chat``, ``misuan demo``: encrypted inference (密态推理) from the command line.

Only typer, rich and the CLI's common options are imported here; the client and the
engines (jax) load when a command runs, so ``misuan --help`` stays fast."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Optional

import typer

from ..cli.common import ClusterOpt, JsonOpt, KeyOpt, _client, _emit_json, err


def _receipt_source(name: str) -> Path:
    from ..errors import MisuanError

    pattern = f"{name}@*.json" if "/" in name else f"*/{name}@*.json"  # receipts/<owner>/<name>@<v>.json
    receipts = sorted((Path.home() / ".misuan" / "receipts").glob(pattern), key=lambda p: int(p.stem.split("@")[1]))
    if not receipts:
        raise MisuanError(f"--plaintext needs the weights: pass --weights PATH (no publish receipt for {name!r} on this machine)")
    return Path(json.loads(receipts[-1].read_text())["source"])


def _load_generator(model: str, cluster, key_file, plaintext: bool, weights: Optional[Path], quiet: bool):
    if plaintext:
        from .plain import PlainModel

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

    from .backend import GenerationParams, GenerationStats

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
    from .backend import GenerationParams

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


def register(app: typer.Typer) -> None:
    app.command("generate")(generate_cmd)
    app.command("chat")(chat_cmd)
    app.command("demo")(demo_cmd)
