"""List, show, remove, grant, revoke and verify hosted models."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from ..client.assets import grant_asset, list_assets, remove_asset, revoke_asset, show_asset
from ..client.client import Client
from ..client.runtime import ModelRuntime
from .protocol import MODEL


def list_models(client: Client) -> list[dict]:
    """Models (and versions) registered on *every* node, as this principal sees them."""
    return list_assets(client, MODEL)


def show_model(client: Client, name: str, version: int | None = None) -> dict:
    return show_asset(client, MODEL, name, version)


def remove_model(client: Client, name: str, version: int | None = None) -> list[int]:
    return remove_asset(client, MODEL, name, version)


def grant_model(client: Client, name: str, to: str) -> None:
    grant_asset(client, MODEL, name, to)


def revoke_model(client: Client, name: str, to: str) -> bool:
    return revoke_asset(client, MODEL, name, to)


def verify_tolerance(shape: tuple[int, ...], fraction_bits: int) -> float:
    """How far ``u·W·v`` on the hosted shares may be from the owner's, for ±1 probes.

    Every hosted weight is the owner's rounded to the fixed-point grid (within
    ``2^-f``); with random-sign probes those errors add like a random walk
    (std <= ``2^-f·sqrt(n/3)``), plus a few truncations inside the program. A
    single weight changed by ``d`` moves ``y`` by exactly ``|d|``, so any change
    larger than this bound (0.015 for a 576x1536 matrix, 0.08 for SmolLM2's
    embedding) is caught.
    """
    n = int(np.prod(shape))
    return 2.0**-fraction_bits * (4.0 * np.sqrt(n) + 16.0)


def verify_model(
    client: Client, name: str, path: str | Path, version: int | None = None, *, seed: int | None = None, tolerance: float | None = None
) -> dict:
    """Owner-only check that the hosted shares reconstruct to the weights at ``path``.

    Random-sign probes u, v per tensor, drawn by every node from ``seed`` (random
    if not given; :mod:`.protocol`); the nodes compute ``u·W·v`` on the resident
    shares with a program they compile themselves; only the owner sees the
    results, and compares them with the same products on its plaintext weights
    (the same probes, drawn here), within :func:`verify_tolerance` per tensor (or
    ``tolerance`` if given).
    """
    import secrets

    from ..models.loader import load_model
    from .probes import probe
    from .protocol import VERIFY, Y
    from .publish import hosted_tensors

    cfg, params, _ = load_model(path)
    tensors = hosted_tensors(cfg, params)
    t0 = time.perf_counter()
    rt = ModelRuntime.ensure(client, name, version)
    ensure_s = time.perf_counter() - t0
    seed = secrets.randbits(63) if seed is None else seed
    expected = []
    for i, (_tname, w) in enumerate(tensors):
        probes = [probe(seed, i, j, d) for j, d in enumerate(w.shape)]  # ±1: exact in fixed point
        w64 = np.asarray(w, np.float64)
        y = probes[0] @ w64 if w.ndim == 1 else probes[0] @ w64 @ probes[1]
        expected.append(float(y))
    with rt.request() as req:
        t1 = time.perf_counter()
        req.run(VERIFY, {}, {"seed": seed})
        run_s = time.perf_counter() - t1
        got = req.reveal(Y)
    err = np.abs(np.asarray(got, np.float64) - np.asarray(expected))
    f = client.cluster.mpc.fxp_fraction_bits
    tol = np.array([tolerance if tolerance is not None else verify_tolerance(w.shape, f) for _, w in tensors])
    bad = [tensors[i][0] for i in np.nonzero(err > tol)[0]]
    return {
        "model": name,
        "version": rt.version,
        "tensors": len(tensors),
        "max_abs_error": float(err.max()),
        "max_error_to_tolerance": float((err / tol).max()),
        "tolerance": float(tol.max()),
        "mismatched": bad,
        "ok": not bad,
        "runtime_ready_s": round(ensure_s, 2),
        "verify_run_s": round(run_s, 2),
    }
