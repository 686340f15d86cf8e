"""Fast client-side sharing into SPU's ABY3 share format (FM64, float32 inputs).

``spu.api.Io.make_shares`` takes ~0.5-0.7 µs per value under ABY3 (≈70-90 s
for the 134 M weights of SmolLM2). This module produces equivalent shares with
numpy and a CSPRNG, writing each party's framed share (see
:mod:`misuan.mpc.shares`) straight into a reusable buffer: on this machine
class fresh memory costs ~2 s/GB in page faults, so buffers are kept and
reused across tensors.

It writes *input shares* only — no MPC protocol: value ``v`` is encoded as
``e = rint(v · 2^f)`` in Z_{2^64}, split into random summands
``e = x0 + x1 + x2``, and party ``i`` receives the replicated pair
``(x_i, x_{i+1})`` per element, exactly as spu 0.9.5 lays it out
(``aby3.AShr<FM64>``: interleaved little-endian uint64 pairs in
``ValueChunkProto.content``, chunks of at most 128 MiB). Tests check the bytes
against SPU's own ``Io`` (same meta, reconstructs, runs in programs).

Randomness: AES-256-CTR keystream under a fresh ``os.urandom`` key per tensor.

Compressed upload (``MSC1``): two of the three summands are pure randomness,
so for stored assets the owner sends *seeds* instead of them. Party 0 gets
``(seed0, seed1)``, party 1 ``(seed1, x2)``, party 2 ``(x2, seed0)`` where
``x_k = AES-256-CTR(seed_k)`` as uint64 — exactly the information of its
replicated share, a third of the bytes in total (party 0 stores 64 bytes per
tensor). The node expands the frame into SPU's format when it loads it.
"""

from __future__ import annotations

import functools
import os
import struct

import numpy as np
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

DT_F32 = 11
VIS_SECRET = 1
STORAGE = b"aby3.AShr<FM64>"
CHUNK = 128 * 1024 * 1024  # spu's default share_max_chunk_size
MAGIC = b"MSH1"


def _varint(n: int) -> bytes:
    out = bytearray()
    n &= (1 << 64) - 1
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def _field_len(num: int, length: int) -> bytes:
    return _varint(num << 3 | 2) + _varint(length)


def _field_varint(num: int, value: int) -> bytes:
    return _varint(num << 3) + _varint(value)


def meta_bytes(shape: tuple[int, ...]) -> bytes:
    """ValueMetaProto{data_type=F32, visibility=SECRET, shape, storage_type}."""
    dims = b"".join(_varint(d) for d in shape)
    shape_proto = _field_len(1, len(dims)) + dims if dims else b""
    return (
        _field_varint(1, DT_F32)
        + _field_varint(3, VIS_SECRET)
        + _field_len(4, len(shape_proto))
        + shape_proto
        + _field_len(5, len(STORAGE))
        + STORAGE
    )


def prg_u64(seed: bytes, n: int, out: bytearray | None = None) -> np.ndarray:
    """n uint64 from AES-256-CTR(key=seed, iv=0); identical on client and node."""
    if out is None:
        return prg_u64_range(seed, 0, n)
    enc = Cipher(algorithms.AES(seed), modes.CTR(bytes(16))).encryptor()
    enc.update_into(bytes(8 * n), out)
    return np.frombuffer(memoryview(out)[: 8 * n], dtype=np.uint64)


def prg_u64_range(seed: bytes, start: int, stop: int) -> np.ndarray:
    """``prg_u64(seed, stop)[start:stop]`` without the first ``start`` values (start even:
    two uint64 per AES block, so the CTR counter starts at block start / 2)."""
    if start % 2:
        raise ValueError("prg_u64_range needs an even start")
    iv = (start // 2).to_bytes(16, "big")
    enc = Cipher(algorithms.AES(seed), modes.CTR(iv)).encryptor()
    return np.frombuffer(enc.update(bytes(8 * (stop - start))), dtype=np.uint64)


COMPRESSED = b"MSC1"
SEED, DATA = 1, 2


def compressed_parts(meta: bytes, kinds: tuple[int, int], parts: tuple[bytes | memoryview, bytes | memoryview]) -> list[bytes | memoryview]:
    head = COMPRESSED + struct.pack("<I", len(meta)) + meta + bytes(kinds)
    return [head, *parts]


def expand(frame: bytes | memoryview) -> tuple[bytes, list[bytes]]:
    """(meta, chunks) of the SPU share that a compressed frame stands for."""
    view = memoryview(frame)
    if bytes(view[:4]) != COMPRESSED:
        raise ValueError("not a compressed share frame")
    (mlen,) = struct.unpack_from("<I", view, 4)
    meta = bytes(view[8 : 8 + mlen])
    pos = 8 + mlen
    kinds = tuple(view[pos : pos + 2])
    pos += 2
    dims = _dims_from_meta(meta)
    n = 1
    for d in dims:
        n *= d
    # each part as a function (start, stop) -> its uint64 values there: a seed's stream is
    # generated one chunk at a time (a whole one for SmolLM2's embedding is 226 MB)
    parts = []
    for kind in kinds:
        if kind == SEED:
            parts.append(functools.partial(prg_u64_range, bytes(view[pos : pos + 32])))
            pos += 32
        elif kind == DATA:
            data = np.frombuffer(view[pos : pos + 8 * n], dtype=np.uint64)
            parts.append(lambda s, t, data=data: data[s:t])
            pos += 8 * n
        else:
            raise ValueError("bad part kind")
    if pos != len(view) or len(parts) != 2:
        raise ValueError("compressed frame has the wrong size")
    chunks = []
    for head, s, t in _layout(n):
        msg = bytearray(len(head) + 16 * (t - s))
        msg[: len(head)] = head
        pairs = np.frombuffer(msg, dtype=np.uint64, count=2 * (t - s), offset=len(head)).reshape(t - s, 2)
        pairs[:, 0] = parts[0](s, t)
        pairs[:, 1] = parts[1](s, t)
        chunks.append(bytes(msg))
        del pairs, msg
    return meta, chunks


def compressed_size(meta_len: int, kinds: tuple[int, int], n: int) -> int:
    return 4 + 4 + meta_len + 2 + sum(32 if k == SEED else 8 * n for k in kinds)


def _dims_from_meta(meta: bytes) -> tuple[int, ...]:
    from . import _pb

    return _pb.value_meta(meta)[0]


def encode_fxp(flat: np.ndarray, scale: float, f64: np.ndarray, out: np.ndarray) -> np.ndarray:
    """rint(flat * scale) as uint64 ring elements, in the caller's buffers."""
    np.multiply(flat, scale, out=f64)
    np.rint(f64, out=f64)
    np.copyto(out, f64, casting="unsafe")
    return out.view(np.uint64)


def _layout(n: int) -> list[tuple[bytes, int, int]]:
    """(chunk header, first element, end element) per chunk of a party's share."""
    total = 16 * n
    per = CHUNK // 16
    out = []
    for start in range(0, n, per):
        end = min(n, start + per)
        head = _field_varint(1, total)
        if start:
            head += _field_varint(2, 16 * start)
        head += _field_len(3, 16 * (end - start))
        out.append((head, start, end))
    return out


class Aby3Sharer:
    """Shares float32 arrays into per-party frames, reusing its buffers.

    The memoryviews returned by :meth:`frames` stay valid until the next call.
    Not thread-safe; use one instance per thread.
    """

    def __init__(self, fraction_bits: int = 18):
        self.scale = float(1 << fraction_bits)
        self._cap = 0
        self._f64 = self._i64 = self._r = None
        self._frames: list[bytearray] = [bytearray(), bytearray(), bytearray()]

    def _reserve(self, n: int) -> None:
        if n > self._cap:
            self._cap = max(n, int(self._cap * 1.25))
            self._f64 = np.empty(self._cap, dtype=np.float64)
            self._i64 = np.empty(self._cap, dtype=np.int64)
            self._r = bytearray(16 * self._cap + 16)

    def frames(self, x: np.ndarray) -> list[memoryview]:
        x = np.ascontiguousarray(x, dtype=np.float32)
        flat = x.reshape(-1)
        n = flat.size
        if n == 0:
            raise ValueError("empty arrays take the Io path")
        self._reserve(n)
        e = encode_fxp(flat, self.scale, self._f64[:n], self._i64[:n])
        keystream = Cipher(algorithms.AES(os.urandom(32)), modes.CTR(os.urandom(16))).encryptor()
        rb = memoryview(self._r)[: 16 * n]
        keystream.update_into(bytes(16 * n), self._r)
        r = np.frombuffer(rb, dtype=np.uint64)
        x0, x1 = r[:n], r[n:]
        np.subtract(e, x0, out=e)
        np.subtract(e, x1, out=e)  # e is now x2 (mod 2^64)
        x2 = e
        meta = meta_bytes(tuple(x.shape))
        layout = _layout(n)
        size = 4 + 4 + len(meta) + 4 + sum(8 + len(h) + 16 * (b - a) for h, a, b in layout)
        out = []
        for party, (a_arr, b_arr) in enumerate(((x0, x1), (x1, x2), (x2, x0))):
            buf = self._frames[party]
            if len(buf) < size:  # grow (a new buffer: old views may still be alive)
                buf = self._frames[party] = bytearray(max(size, int(len(buf) * 1.25)))
            pos = 0

            def put(data: bytes) -> None:
                nonlocal pos
                buf[pos : pos + len(data)] = data
                pos += len(data)

            put(MAGIC + struct.pack("<I", len(meta)) + meta + struct.pack("<I", len(layout)))
            for head, s, t in layout:
                put(struct.pack("<Q", len(head) + 16 * (t - s)) + head)
                # (m, 2) uint64 pairs written in place (numpy handles unaligned offsets)
                pairs = np.frombuffer(buf, dtype=np.uint64, count=2 * (t - s), offset=pos).reshape(t - s, 2)
                pairs[:, 0] = a_arr[s:t]
                pairs[:, 1] = b_arr[s:t]
                pos += 16 * (t - s)
            out.append(memoryview(buf)[:size])
        return out


class CompressedSharer:
    """Shares float32 arrays as compressed frames (see module docstring).

    Returns, per party, a list of byte parts to send in order; the big part
    (x2, shared by parties 1 and 2) lives in a buffer reused by the next call.
    """

    def __init__(self, fraction_bits: int = 18):
        self.scale = float(1 << fraction_bits)
        self._cap = 0
        self._f64 = self._x2 = None
        self._r = bytearray()

    def parts(self, x: np.ndarray) -> list[list[bytes | memoryview]]:
        x = np.ascontiguousarray(x, dtype=np.float32)
        flat = x.reshape(-1)
        n = flat.size
        if n > self._cap:
            self._cap = max(n, int(self._cap * 1.25))
            self._f64 = np.empty(self._cap, dtype=np.float64)
            self._x2 = np.empty(self._cap, dtype=np.int64)
            self._r = bytearray(8 * self._cap + 16)
        x2 = encode_fxp(flat, self.scale, self._f64[:n], self._x2[:n])
        s0, s1 = os.urandom(32), os.urandom(32)
        np.subtract(x2, prg_u64(s0, n, self._r), out=x2)
        np.subtract(x2, prg_u64(s1, n, self._r), out=x2)
        meta = meta_bytes(tuple(x.shape))
        data = memoryview(x2.view(np.uint8))
        return [
            compressed_parts(meta, (SEED, SEED), (s0, s1)),
            compressed_parts(meta, (SEED, DATA), (s1, data)),
            compressed_parts(meta, (DATA, SEED), (data, s0)),
        ]
