"""The probes of hosting's ``verify`` program, drawn alike on the owner's machine and on each node.

The probes of ``verify`` are not the owner's to choose (chosen probes, e.g. unit
vectors or single flipped signs, would make ``u·W·v`` an oracle for individual
weights): every node draws them itself from the owner's public seed, and the
owner draws the same ones locally to compare. They are ±1 vectors (exact in fixed
point), from SHAKE-256 over ``VERIFY_DOMAIN || seed || tensor || axis``.
"""

from __future__ import annotations

import hashlib

import numpy as np

from .protocol import MAX_SEED

VERIFY_DOMAIN = b"misuan.verify.probes.v1"


def probe(seed: int, tensor: int, axis: int, n: int) -> np.ndarray:
    """The ±1 probe ``(n,)`` float32 of one axis of one tensor."""
    if not 0 <= seed <= MAX_SEED:
        raise ValueError("seed must be in [0, 2^63 - 1]")
    msg = VERIFY_DOMAIN + seed.to_bytes(8, "little") + tensor.to_bytes(4, "little") + axis.to_bytes(1, "little")
    bits = np.unpackbits(np.frombuffer(hashlib.shake_256(msg).digest((n + 7) // 8), np.uint8), bitorder="little")[:n]
    return (bits.astype(np.float32) * 2.0 - 1.0).astype(np.float32)
