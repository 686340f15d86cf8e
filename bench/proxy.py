"""The proxy's cost over the SDK: added latency per token and time to first byte.

Brings up a local 3-node cluster with the tiny random LLaMA from the tests, streams
the same greedy answer through the SDK's ChatBackend and through the proxy (the
``openai`` package, streaming), interleaved, and writes bench/results/proxy.json.
Not run in CI: ``python bench/proxy.py [--rounds 3] [--tokens 24]``.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import tempfile
import time
from pathlib import Path

os.environ.setdefault("JAX_PLATFORMS", "cpu")

OUT = Path(__file__).resolve().parent / "results" / "proxy.json"
MESSAGES = [{"role": "user", "content": "hello"}]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def sdk_run(backend, n: int) -> dict:
    from misuan.inference import GenerationParams

    t0 = time.perf_counter()
    times = []
    for ev in backend.stream_chat(MESSAGES, GenerationParams(max_tokens=n)):
        if ev.token_id is not None:
            times.append(time.perf_counter() - t0)
    return {"first_token_s": times[0], "total_s": times[-1], "tokens": len(times)}


def proxy_run(oai, model: str, n: int) -> dict:
    t0 = time.perf_counter()
    first_byte, times = None, []
    for chunk in oai.chat.completions.create(model=model, messages=MESSAGES, max_tokens=n, stream=True):
        now = time.perf_counter() - t0
        first_byte = now if first_byte is None else first_byte
        if chunk.choices and chunk.choices[0].delta.content is not None and not chunk.choices[0].delta.role:
            times.append(now)
    return {"first_byte_s": first_byte, "first_token_s": times[0], "total_s": times[-1], "tokens": len(times)}


class PlainProvider:
    """One plaintext ChatBackend (the reference engine on the tiny model): the proxy's own
    cost per token, without the MPC engine's run-to-run noise (the proxy sees only the
    ChatBackend interface, so its overhead is the same over either engine)."""

    def __init__(self, backend, name: str = "plain/tiny"):
        self.name, self._backend = name, backend

    def models(self):
        from misuan.proxy.provider import ModelCard

        return [ModelCard(self.name, "plain", 0, self._backend.model_info().max_context)]

    def backend(self, model_id: str, *, k=None):
        from misuan.errors import NotFound

        if model_id != self.name:
            raise NotFound(f"unknown model {model_id!r}")
        return self._backend

    def embedder(self, model_id: str):
        from misuan.errors import NotFound

        raise NotFound("no embedder")

    def protocol(self) -> str:
        return "plaintext"


def usage_run(oai, model: str, n: int) -> dict:
    """Streamed through the proxy, timed to the last content chunk; tokens from the usage chunk."""
    t0 = time.perf_counter()
    first_byte, last, tokens = None, None, 0
    stream = oai.chat.completions.create(model=model, messages=MESSAGES, max_tokens=n, stream=True, stream_options={"include_usage": True})
    for chunk in stream:
        now = time.perf_counter() - t0
        first_byte = now if first_byte is None else first_byte
        if chunk.choices and chunk.choices[0].delta.content:
            last = now
        if chunk.usage is not None:
            tokens = chunk.usage.completion_tokens
    return {"first_byte_s": first_byte, "total_s": last, "tokens": tokens}


def plain_overhead(path: Path, n: int, rounds: int) -> dict:
    """Per-token time through the proxy minus the same ChatBackend iterated directly, interleaved."""
    import openai

    from misuan.inference.plain import PlainModel
    from misuan.proxy.server import serving
    from misuan.proxy.settings import ProxySettings

    backend = PlainModel(path, "plain/tiny")
    with serving(PlainProvider(backend), ProxySettings(port=_free_port())) as url:
        oai = openai.OpenAI(base_url=url, api_key="x", max_retries=0, timeout=600)
        sdk_run(backend, n), usage_run(oai, "plain/tiny", n)  # warm: jit
        sdk, prx = [], []
        for _ in range(rounds):
            sdk.append(sdk_run(backend, n))
            prx.append(usage_run(oai, "plain/tiny", n))
    tokens = {r["tokens"] for r in sdk + prx}
    per = [(p["total_s"] - s_["total_s"]) / p["tokens"] for s_, p in zip(sdk, prx)]
    return {
        "added_ms_per_token": round(statistics.median(per) * 1e3, 3),
        "added_ms_per_token_per_round": [round(x * 1e3, 3) for x in per],
        "first_byte_ms": round(statistics.median(p["first_byte_s"] for p in prx) * 1e3, 1),
        "tokens": sorted(tokens),
        "sdk_total_s": round(statistics.median(r["total_s"] for r in sdk), 4),
        "proxy_total_s": round(statistics.median(r["total_s"] for r in prx), 4),
        "rounds": rounds,
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--tokens", type=int, default=24)
    args = ap.parse_args()

    import openai

    from misuan.cluster.local import local_cluster
    from misuan.hosting import publish_model
    from misuan.proxy.provider import ClientProvider
    from misuan.proxy.server import serving
    from misuan.proxy.settings import ProxySettings
    from tests.models.tinymodels import make_llama, save_hf

    with tempfile.TemporaryDirectory() as tmp:
        tiny = save_hf(Path(tmp) / "tiny", make_llama(seed=11, tie=False))
        plain = plain_overhead(tiny, 64, 7)
        print(f"plaintext backend: {plain}", flush=True)
    with tempfile.TemporaryDirectory() as tmp, local_cluster(3, dir=Path(tmp) / "c") as lc:
        client = lc.client()
        publish_model(client, save_hf(Path(tmp) / "tiny", make_llama(seed=11, tie=False)), "bench", receipt=False)
        model = client.model_ref("bench")
        backend = client.model(model)
        with serving(ClientProvider(client), ProxySettings(port=_free_port())) as url:
            oai = openai.OpenAI(base_url=url, api_key="x", max_retries=0, timeout=600)
            sdk_run(backend, args.tokens), proxy_run(oai, model, args.tokens)  # warm: programs compiled
            sdk, prx = [], []
            for _ in range(args.rounds):
                sdk.append(sdk_run(backend, args.tokens))
                prx.append(proxy_run(oai, model, args.tokens))
    n = min(r["tokens"] for r in sdk + prx)
    med = lambda rows, k: statistics.median(r[k] for r in rows)  # noqa: E731
    added_per_token = (med(prx, "total_s") - med(sdk, "total_s")) / n
    res = {
        "summary": (
            f"proxy adds {plain['added_ms_per_token']:.2f} ms/token over the same ChatBackend iterated directly "
            f"(plaintext engine, {plain['tokens']} tokens, median of {plain['rounds']} interleaved rounds), first byte "
            f"{plain['first_byte_ms']:.0f} ms; over MPC (tiny model, 3 nodes) {added_per_token * 1e3:.1f} ms/token, within "
            f"the engine's noise, first byte {med(prx, 'first_byte_s') * 1e3:.0f} ms, first token {med(prx, 'first_token_s'):.2f} s "
            f"(SDK {med(sdk, 'first_token_s'):.2f} s); {os.cpu_count()} cores"
        ),
        "targets": {"added_latency_le_5ms_per_token": plain["added_ms_per_token"] <= 5.0},
        "plaintext_backend": plain,
        "added_ms_per_token": round(added_per_token * 1e3, 2),
        "proxy_first_byte_ms": round(med(prx, "first_byte_s") * 1e3, 1),
        "proxy_first_token_s": round(med(prx, "first_token_s"), 3),
        "sdk_first_token_s": round(med(sdk, "first_token_s"), 3),
        "sdk_total_s": round(med(sdk, "total_s"), 3),
        "proxy_total_s": round(med(prx, "total_s"), 3),
        "tokens": n,
        "rounds": args.rounds,
        "cores": os.cpu_count(),
        "raw": {"sdk": sdk, "proxy": prx},
    }
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(res, indent=2) + "\n")
    print(res["summary"])


if __name__ == "__main__":
    main()
