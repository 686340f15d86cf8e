"""``misuan selftest``: a secret matrix product + softmax on real node processes."""

from __future__ import annotations

import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from .cluster.local import local_cluster

TOLERANCE = 1e-2


def secure_softmax_matmul(x, w):
    """The selftest program: softmax(x @ w) over the last axis."""
    return jax.nn.softmax(x @ w, axis=-1)


def selftest(directory: str | Path | None = None, *, parties: int = 3, rows: int = 16, dim: int = 64, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(rows, dim)).astype(np.float32)
    w = (rng.normal(size=(dim, dim)) / np.sqrt(dim)).astype(np.float32)
    t0 = time.perf_counter()
    with local_cluster(parties, dir=directory) as lc:
        up_s = time.perf_counter() - t0
        client = lc.client()
        y, stats = client.run_with_stats(secure_softmax_matmul, x, w)
        pids = [s["pid"] for s in client.status()]
        protocol = client.cluster.mpc.protocol
        started = lc.started
    ref = np.asarray(secure_softmax_matmul(jnp.asarray(x), jnp.asarray(w)))
    err = float(np.max(np.abs(np.asarray(y) - ref)))
    return {
        "ok": bool(err <= TOLERANCE),
        "parties": parties,
        "protocol": protocol,
        "program": f"softmax(x @ w), x {x.shape}, w {w.shape}",
        "max_abs_error": err,
        "tolerance": TOLERANCE,
        "node_pids": pids,
        "cluster_started_here": started,
        "cluster_up_s": round(up_s, 2),
        **stats.to_dict(),
    }
