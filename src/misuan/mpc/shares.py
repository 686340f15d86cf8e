"""Secret shares on the wire and at rest.

A party's share of a value is an SPU ``Share``: ``meta`` (a serialized
``ValueMeta``) and ``share_chunks``. On the wire and on disk misuan frames it
as plain bytes (never pickle)::

    b"MSH1" | u32 meta_len | meta | u32 n_chunks | (u64 len | chunk)*

Decoding validates lengths and raises :class:`InvalidInput` on anything else.
:class:`SecretShare` wraps the bytes so a share never prints: its repr says HIDDEN.
"""

from __future__ import annotations

import struct
import threading
from dataclasses import dataclass

import numpy as np
from spu import api as spu_api
from spu import libspu

from ..config import MpcSettings
from ..errors import InvalidInput
from . import _aby3
from .runtime import runtime_config

MAGIC = b"MSH1"
MAX_CHUNKS = 1 << 20
#: below this many values SPU's own Io is fast enough.
FAST_MIN = 4096


@dataclass(frozen=True, repr=False)
class SecretShare:
    """One party's share of one value, framed as bytes. Prints as HIDDEN."""

    data: bytes

    def __repr__(self) -> str:
        return f"SecretShare(HIDDEN, {len(self.data)} bytes)"

    __str__ = __repr__

    def __len__(self) -> int:
        return len(self.data)

    def to_spu(self) -> libspu.Share:
        return decode_share(self.data)

    @classmethod
    def from_spu(cls, share: libspu.Share) -> "SecretShare":
        return cls(encode_share(share))


def encode_share(share: libspu.Share) -> bytes:
    meta = bytes(share.meta)
    chunks = [bytes(c) for c in share.share_chunks]
    parts = [MAGIC, struct.pack("<I", len(meta)), meta, struct.pack("<I", len(chunks))]
    for c in chunks:
        parts.append(struct.pack("<Q", len(c)))
        parts.append(c)
    return b"".join(parts)


def decode_share(data: bytes | memoryview) -> libspu.Share:
    view = memoryview(data)
    try:
        if bytes(view[:4]) != MAGIC:
            raise InvalidInput("not a misuan share (bad magic)")
        (mlen,) = struct.unpack_from("<I", view, 4)
        pos = 8
        meta = bytes(view[pos : pos + mlen])
        if len(meta) != mlen:
            raise InvalidInput("truncated share")
        pos += mlen
        (n,) = struct.unpack_from("<I", view, pos)
        pos += 4
        if n > MAX_CHUNKS:
            raise InvalidInput("share has too many chunks")
        chunks = []
        for _ in range(n):
            (clen,) = struct.unpack_from("<Q", view, pos)
            pos += 8
            chunk = bytes(view[pos : pos + clen])
            if len(chunk) != clen:
                raise InvalidInput("truncated share")
            chunks.append(chunk)
            pos += clen
        if pos != len(view):
            raise InvalidInput("trailing bytes after share")
    except struct.error:
        raise InvalidInput("truncated share") from None
    share = libspu.Share()
    share.meta = meta
    share.share_chunks = chunks
    return share


class Sharer:
    """Client-side sharing and reconstruction (the only place plaintext meets shares)."""

    def __init__(self, mpc: MpcSettings, world_size: int):
        self.world_size = world_size
        self.mpc = mpc
        self._io = spu_api.Io(world_size, runtime_config(mpc))
        self._fast = mpc.protocol == "ABY3" and mpc.field == "FM64" and world_size == 3
        self._local = threading.local()

    def share_frames(self, x: np.ndarray) -> list[bytes | memoryview]:
        """Framed shares of ``x``, one per party.

        Float32 arrays under ABY3/FM64 take the fast path, whose memoryviews
        point into buffers reused by the next call on this thread: send or
        copy them before sharing the next value.
        """
        arr = np.ascontiguousarray(x)
        if self._fast and arr.dtype == np.float32 and arr.size >= FAST_MIN:
            fast = getattr(self._local, "aby3", None)
            if fast is None:
                fast = self._local.aby3 = _aby3.Aby3Sharer(self.mpc.fxp_fraction_bits)
            return fast.frames(arr)
        return [encode_share(s) for s in self._io.make_shares(arr, libspu.Visibility.VIS_SECRET)]

    def share(self, x: np.ndarray) -> list[SecretShare]:
        """Secret-share ``x``; element i goes to party i only."""
        return [SecretShare(bytes(f)) for f in self.share_frames(x)]

    def reveal(self, shares: list[SecretShare]) -> np.ndarray:
        """Reconstruct a value from one share per party (call only on the owner's machine)."""
        if len(shares) != self.world_size:
            raise InvalidInput(f"need {self.world_size} shares, got {len(shares)}")
        try:
            return self._io.reconstruct([s.to_spu() for s in shares])
        except RuntimeError:
            raise InvalidInput("shares do not reconstruct (mismatched or corrupted)") from None
