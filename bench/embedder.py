"""Edge embedder speed: load time, first (compiling) and warm query, chunks per second. Not a test.

    .venv/bin/python bench/embedder.py [--chunks 256] [--batch 32] [--out bench/results/embedder.json]

Chunks are exactly ``--tokens`` word pieces ([CLS]/[SEP] included) of random whole-word
vocabulary entries, so every batch has one shape. The first batch (the compile) is
reported apart; throughput is the median over the remaining batches' rate.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time

import numpy as np


def chunk_texts(embedder, n: int, tokens: int, seed: int = 0) -> list[str]:
    vocab = [w for w in embedder.tokenizer.get_vocab() if w.isalpha() and w.isascii() and len(w) > 2]
    rng = np.random.default_rng(seed)
    texts = [" ".join(rng.choice(vocab, tokens - 2)) for _ in range(n)]
    lengths = {len(e.ids) for e in embedder.tokenizer.encode_batch(texts)}
    assert lengths == {tokens}, lengths
    return texts


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--chunks", type=int, default=256)
    ap.add_argument("--tokens", type=int, default=128)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--out", default=None)
    args = ap.parse_args()

    t0 = time.perf_counter()
    from misuan.retrieval.embedder import Embedder

    t1 = time.perf_counter()
    emb = Embedder.load()
    t2 = time.perf_counter()
    _, _ = emb.embed_query("What does the contract say about termination?")
    t3 = time.perf_counter()
    warm = []
    for q in ("How long is the notice period?", "Who owns the data?", "Where are backups stored?"):
        s = time.perf_counter()
        emb.embed_query(q)
        warm.append(time.perf_counter() - s)

    texts = chunk_texts(emb, args.chunks, args.tokens)
    rates = []
    first = None
    for i in range(0, len(texts), args.batch):
        s = time.perf_counter()
        emb.embed(texts[i : i + args.batch], batch_size=args.batch)
        dt = time.perf_counter() - s
        if first is None:
            first = dt
        else:
            rates.append(args.batch / dt)
    result = {
        "cores": os.cpu_count(),
        "load_avg_1min": os.getloadavg()[0],
        "import_s": round(t1 - t0, 3),
        "load_s": round(t2 - t1, 3),
        "first_query_s": round(t3 - t2, 3),
        "warm_query_s": round(statistics.median(warm), 4),
        "chunk_tokens": args.tokens,
        "batch": args.batch,
        "first_batch_s": round(first, 3),
        "chunks_per_s_median": round(statistics.median(rates), 1),
        "chunks_per_s_best": round(max(rates), 1),
    }
    print(json.dumps(result, indent=2))
    if args.out:
        with open(args.out, "w") as f:
            json.dump(result, f, indent=2)
            f.write("\n")


if __name__ == "__main__":
    main()
