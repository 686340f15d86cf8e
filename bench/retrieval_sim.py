"""Secure search variants under SPU (not in CI): seconds, rounds and bytes per query.

    PYTHONPATH=src python bench/retrieval_sim.py [--sizes 10000 100000] [--out bench/results/retrieval_sim.json]

ABY3, FM64, 18 fractional bits, ``experimental_disable_mmul_split`` (the nodes' config).
Seconds: the slowest party's ``Runtime.run`` in the in-process simulator (3 threads),
best of ``--repeats``; rounds/bytes (party 0's send actions/bytes) and the costliest
ops from SPU's profile of one more run. ``chosen_3proc``: the chosen program on 3 brpc
processes (``bench/spu3.run3``). The machine is shared: ``loadavg_*`` says how loaded.
Variants: ``chosen`` (retrieval.specs.search_spec), ``eq_onehot`` (a (k, N) one-hot
from k N equality tests), ``unpacked`` (fetch 2C int columns, no packing),
``twostage`` (select a block of M rows by the high digit, then a row by the low one:
no (k, N) one-hot), ``argsort`` (a full secret sort instead of top_k),
``scores_right`` (q @ emb.T).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

D, C, K, VOCAB = 384, 128, 5, 49_152


def _kb(n: int):
    from misuan.retrieval import specs
    from misuan.secure.onehot import digit_base

    rng = np.random.default_rng(0)
    emb = rng.standard_normal((n, D)).astype(np.float32)
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    _, base = digit_base(VOCAB)
    ids = rng.integers(0, VOCAB, (n, C))
    hi, lo = (ids // base).astype(np.int32), (ids % base).astype(np.int32)
    tok = np.asarray(specs.pack_tokens(jnp.asarray(hi), jnp.asarray(lo), VOCAB))
    q = emb[n // 2] + 0.1 * rng.standard_normal(D).astype(np.float32)
    return emb, hi, lo, tok, (q / np.linalg.norm(q)).astype(np.float32)[None, :]


def variants(n: int):
    """name -> (fn, arg names) over the KB tensors."""
    from misuan.retrieval import specs
    from misuan.secure.onehot import digit_base

    _, base = digit_base(VOCAB)
    chosen = specs.search_spec(n, D, C, K, VOCAB, "passages").fn

    def eq_onehot(emb, tok, q):
        vals, idx = specs.rank_sort(*jax.lax.top_k(specs.scores(emb, q), K))
        oh = (idx[:, None] == jnp.arange(n, dtype=jnp.int32)[None, :]).astype(jnp.int32)
        hi, lo = specs.unpack_tokens(oh @ tok, C, VOCAB)
        return vals, idx, hi * base + lo, hi, lo

    def unpacked(emb, hilo, q):
        vals, idx = specs.rank_sort(*jax.lax.top_k(specs.scores(emb, q), K))
        d = specs.index_onehot(idx, n) @ hilo
        return vals, idx, d[:, :C] * base + d[:, C:], d[:, :C], d[:, C:]

    base_n = math.isqrt(n - 1) + 1
    n_a = -(-n // base_n)

    def twostage(emb, tok, q):
        vals, idx = specs.rank_sort(*jax.lax.top_k(specs.scores(emb, q), K))
        a_oh, a = specs._steps_onehot(idx, n_a, base_n)  # (k, n_a)
        b_oh, _ = specs._steps_onehot(idx - a * base_n, base_n, 1)  # (k, M)
        padded = jnp.concatenate([tok, jnp.zeros((n_a * base_n - n, tok.shape[1]), tok.dtype)])
        blocks = a_oh @ padded.reshape(n_a, -1)  # (k, M m)
        fetched = jnp.sum(blocks.reshape(K, base_n, -1) * b_oh[:, :, None], axis=1)  # (k, m)
        hi, lo = specs.unpack_tokens(fetched, C, VOCAB)
        return vals, idx, hi * base + lo, hi, lo

    def argsort(emb, tok, q):
        s = specs.scores(emb, q)
        idx = jnp.argsort(-s)[:K].astype(jnp.int32)
        oh = specs.index_onehot(idx, n)
        hi, lo = specs.unpack_tokens(oh @ tok, C, VOCAB)
        return oh.astype(jnp.float32) @ s, idx, hi * base + lo, hi, lo

    def scores_right(emb_t, q):
        return (q @ emb_t)[0]

    def scores_left(emb, q):
        return specs.scores(emb, q)

    def topk_only(s):
        return specs.rank_sort(*jax.lax.top_k(s, K))

    return {
        "chosen": (chosen, ("emb", "tok", "q")),
        "eq_onehot": (eq_onehot, ("emb", "tok", "q")),
        "unpacked": (unpacked, ("emb", "hilo", "q")),
        "twostage": (twostage, ("emb", "tok", "q")),
        "argsort": (argsort, ("emb", "tok", "q")),
        "scores_left": (scores_left, ("emb", "q")),
        "scores_right": (scores_right, ("emb_t", "q")),
        "topk_sorted": (topk_only, ("s",)),
    }


def profiled(prog, args) -> dict:
    """One run with SPU's profile on (its log captured): party 0's send bytes/actions and
    the costliest ops."""
    import tempfile

    from spu3 import parse_profile

    from misuan.mpc.simulator import run_program, runtime_config

    cfg = runtime_config(experimental_disable_mmul_split=True, enable_pphlo_profile=True)
    with tempfile.TemporaryFile("w+") as log:
        sys.stdout.flush()
        saved = [os.dup(1), os.dup(2)]
        os.dup2(log.fileno(), 1)  # SPU's logger writes to the process's stdout
        os.dup2(log.fileno(), 2)
        try:
            run_program(prog, *args, config=cfg, recv_timeout_ms=600_000)
        finally:
            for fd, old in zip((1, 2), saved):
                os.dup2(old, fd)
                os.close(old)
        log.seek(0)
        runs = parse_profile(log.read())
    run = runs[0] if runs else {}
    top = sorted(run.get("ops", {}).items(), key=lambda kv: -kv[1]["seconds"])[:4]
    return {
        "send_bytes": run.get("send_bytes"),
        "send_actions": run.get("send_actions"),
        "top_ops": {
            op: {"seconds": round(v["seconds"], 4), "send_bytes": v["send_bytes"], "send_actions": v["send_actions"]} for op, v in top
        },
    }


def run_sim(fn, args, repeats: int) -> tuple[float, object, dict]:
    from misuan.mpc.simulator import run_program, runtime_config, sim_program

    cfg = runtime_config(experimental_disable_mmul_split=True)
    prog = sim_program(fn, *args)
    best, out = float("inf"), None
    for _ in range(repeats):
        out, s = run_program(prog, *args, config=cfg, with_run_seconds=True, recv_timeout_ms=600_000)
        best = min(best, s)
    return best, out, profiled(prog, args)


def bench_size(n: int, names: list[str], repeats: int, procs: bool) -> dict:
    from misuan.retrieval import plain

    emb, hi, lo, tok, q = _kb(n)
    t0 = time.perf_counter()
    ref = plain.search_plain(emb, hi, lo, q, K, vocab=VOCAB)
    res: dict = {"plaintext_s": time.perf_counter() - t0}
    tensors = {"emb": emb, "tok": tok, "q": q, "hilo": np.concatenate([hi, lo], 1), "emb_t": np.ascontiguousarray(emb.T)}
    tensors["s"] = emb @ q[0]
    for name, (fn, argn) in variants(n).items():
        if name not in names:
            continue
        sec, out, prof = run_sim(fn, [tensors[a] for a in argn], 1 if name == "argsort" else repeats)
        entry = {"seconds": round(sec, 4), **prof}
        if isinstance(out, tuple) and len(out) == 5:
            entry["same_set_as_plaintext"] = set(np.asarray(out[1]).tolist()) == set(ref["index"].tolist())
            entry["tokens_exact"] = bool(np.array_equal(out[3], hi[np.asarray(out[1])]))
        res[name] = entry
        print(n, name, entry, flush=True)
    if procs and "chosen" in names:
        from spu3 import run3, summary

        fn, argn = variants(n)["chosen"]
        r = run3(fn, [tensors[a] for a in argn], repeats=repeats)
        res["chosen_3proc"] = summary(r)
        print(n, "chosen_3proc", res["chosen_3proc"], flush=True)
    return res


def bench_context(k: int, c: int, repeats: int) -> dict:
    """``context_rows`` for k chunks of c tokens (V = 49,152): digit equalities + outer product."""
    from misuan.retrieval import specs
    from misuan.secure.onehot import digit_base

    _, base = digit_base(VOCAB)
    ids = np.random.default_rng(1).integers(0, VOCAB, (k, c))
    hi, lo = (ids // base).astype(np.int32), (ids % base).astype(np.int32)
    hi[:, -3:], lo[:, -3:] = -1, -1
    sec, out, prof = run_sim(lambda h, lo_: specs.context_rows(h, lo_, VOCAB), [hi, lo], repeats)
    return {"seconds": round(sec, 4), "ok": bool(out[2]), **prof}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", type=int, nargs="*", default=[10_000, 100_000])
    ap.add_argument(
        "--variants",
        nargs="+",
        default=["chosen", "eq_onehot", "unpacked", "twostage", "argsort", "scores_left", "scores_right", "topk_sorted"],
    )
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--context", nargs="*", default=["2x64", "5x128"], help="context_rows shapes kxC")
    ap.add_argument("--no-procs", action="store_true", help="skip the 3-process run (rounds/bytes)")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "retrieval_sim.json"))
    a = ap.parse_args()
    result = {
        "cores": os.cpu_count(),
        "D": D,
        "C": C,
        "k": K,
        "vocab": VOCAB,
        "mpc": "ABY3 FM64 f=18, mmul split off",
        "sizes": {},
        "loadavg_start": os.getloadavg(),
    }
    for n in a.sizes:
        result["sizes"][str(n)] = bench_size(n, a.variants, a.repeats, not a.no_procs)
    result["context_rows"] = {}
    for shape in a.context:
        kk, cc = map(int, shape.split("x"))
        result["context_rows"][shape] = bench_context(kk, cc, a.repeats)
        print("context_rows", shape, result["context_rows"][shape], flush=True)
    result["loadavg_end"] = os.getloadavg()  # the machine is shared: a high load inflates every number
    parts = []
    for n, r in result["sizes"].items():
        extra = (
            f", 3 procs {r['chosen_3proc']['seconds']:.3f} s / {r['chosen_3proc']['send_actions']} rounds" if "chosen_3proc" in r else ""
        )
        sort = f", argsort {r['argsort']['seconds']:.2f} s" if "argsort" in r else ""
        parts.append(f"N={n}: top-{K}+fetch {r.get('chosen', {}).get('seconds', float('nan')):.3f} s{extra}{sort}")
    result["summary"] = f"secure search, simulator, {result['cores']} cores: " + "; ".join(parts)
    Path(a.out).write_text(json.dumps(result, indent=1) + "\n")
    print(result["summary"])


if __name__ == "__main__":
    main()
