"""What the owner's machine and the nodes agree on for hosting's ``verify`` program.

The probes of ``verify`` are not the owner's to choose (chosen probes, e.g. unit
vectors or single flipped signs, would make ``u·W·v`` an oracle for individual
weights): every node draws them itself from the owner's public seed, and the
owner draws the same ones locally to compare. They are ±1 vectors (exact in fixed
point), from SHAKE-256 over ``VERIFY_DOMAIN || seed || tensor || axis``.
"""

from __future__ import annotations

import hashlib
import re

import numpy as np

VERIFY = "verify"
VERIFY_DOMAIN = b"misuan.verify.probes.v1"
#: run-time settings of ``verify`` (not part of the compiled program)
VERIFY_SETTINGS: tuple[str, ...] = ("seed",)
#: at most this many ``verify`` runs per model, owner and node per hour
VERIFY_RUNS_PER_HOUR = 30
MAX_SEED = (1 << 63) - 1
_PROBE = re.compile(r"p(\d{1,6})_([01])")


def probe_name(tensor: int, axis: int) -> str:
    return f"p{tensor}_{axis}"


def parse_probe_name(name: str) -> tuple[int, int]:
    m = _PROBE.fullmatch(name)
    if m is None:
        raise ValueError(f"not a probe name: {name!r}")
    return int(m[1]), int(m[2])


def probe(seed: int, tensor: int, axis: int, n: int) -> np.ndarray:
    """The ±1 probe ``(n,)`` float32 of one axis of one tensor."""
    if not 0 <= seed <= MAX_SEED:
        raise ValueError("seed must be in [0, 2^63 - 1]")
    msg = VERIFY_DOMAIN + seed.to_bytes(8, "little") + tensor.to_bytes(4, "little") + axis.to_bytes(1, "little")
    bits = np.unpackbits(np.frombuffer(hashlib.shake_256(msg).digest((n + 7) // 8), np.uint8), bitorder="little")[:n]
    return (bits.astype(np.float32) * 2.0 - 1.0).astype(np.float32)
