"""``make demo`` / ``misuan demo``: a secure answer from SmolLM2 on three local nodes.

Fresh machine → local 3-node cluster (ABY3) → publish the bundled SmolLM2
unless already published → stream a secure answer token by token → prefill
time, time per token, bytes per token, and whether the tokens match the
plaintext engine on the same weights.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from rich.console import Console

from .cluster.local import local_cluster

QUESTION = "What is the capital of France?"
MODEL = "smollm2"


def run_demo(directory: str | Path, question: str = QUESTION, max_tokens: int = 16, keep: bool = False) -> dict:
    from .hosting import list_models, publish_model
    from .inference import GenerationParams, GenerationStats
    from .inference.plain import PlainModel
    from .inference.secure import stream_text
    from .models.assets import smollm2_gguf_path

    err = Console(stderr=True)
    gguf = smollm2_gguf_path()
    t_all = time.perf_counter()
    with err.status("starting 3 node processes (ABY3, FM64) and checking their SPU links…"):
        ctx = local_cluster(3, dir=directory, keep=keep)
        lc = ctx.__enter__()
    try:
        client = lc.client()
        err.print(f"[dim]cluster: {lc.dir} (node pids {', '.join(str(s['pid']) for s in client.status())})[/dim]")
        if not any(m["model"] == client.model_ref(MODEL) for m in list_models(client)):
            from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TransferSpeedColumn

            with Progress(
                TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn(), console=err, transient=True
            ) as bar:
                task = bar.add_task("loading SmolLM2-135M-Instruct (GGUF)", total=None)
                res = publish_model(
                    client,
                    gguf,
                    MODEL,
                    receipt=False,
                    progress=lambda d, t, n: bar.update(task, completed=d, total=t, description=f"publishing shares: {n}"),
                )
            err.print(f"[dim]published {MODEL}@{res.version}: {res.parameters:,} parameters as secret shares in {res.seconds:.0f} s[/dim]")
        with err.status("loading the model's shares into the nodes' secure runtimes…"):
            model = client.model(MODEL)
        params = GenerationParams(max_tokens=max_tokens)
        messages = [{"role": "user", "content": question}]
        ids = model.prompt_ids(messages)
        stats = GenerationStats()
        sys.stdout.write(f"\nuser> {question}\nsmollm2 (under MPC)> ")
        sys.stdout.flush()
        status = err.status(f"prefill of {len(ids)} prompt tokens under MPC (first run compiles the programs on every node)…")
        status.start()
        secure_ids: list[int] = []
        text = ""
        try:
            for tok, piece in stream_text(model, ids, params, stats):
                status.stop()
                if tok >= 0:
                    secure_ids.append(tok)
                text += piece
                sys.stdout.write(piece)
                sys.stdout.flush()
        finally:
            status.stop()
        sys.stdout.write("\n\n")
        with err.status("plaintext reference on the same weights…"):
            plain = PlainModel(gguf)
            plain_ids = [t for t, _ in stream_text(plain, ids, params, None) if t >= 0]
        match = secure_ids == plain_ids
        same = sum(a == b for a, b in zip(secure_ids, plain_ids))
        summary = {
            "question": question,
            "answer": text,
            "tokens": len(secure_ids),
            "prompt_tokens": len(ids),
            "prefill_s": round(stats.prefill_s, 1),
            "decode_s_per_token": round(stats.decode_s_per_token, 2),
            "bytes_per_token": int(stats.bytes_per_token),
            "matches_plaintext": match,
            "identical_tokens": f"{same}/{max(len(secure_ids), len(plain_ids))}",
            "total_s": round(time.perf_counter() - t_all, 1),
        }
        out = Console()
        out.print(
            f"prefill {summary['prefill_s']} s ({len(ids)} tokens, bucket {stats.prompt_bucket}) · "
            f"{summary['decode_s_per_token']} s/token · {summary['bytes_per_token'] / 1e6:.1f} MB/token sent (all nodes) · "
            f"tokens {'[green]match[/green]' if match else '[red]differ from[/red]'} the plaintext engine ({summary['identical_tokens']})"
        )
        return summary
    finally:
        ctx.__exit__(None, None, None)


__all__ = ["run_demo"]
