"""Canonical keys: from CSV cells to the fixed-size digests that libpsi intersects.

Both parties turn each row's key cells into one 15-byte digest with BLAKE2b-120,
personalised with the number of key columns (``misuan-psi-1-kNN``):

- one key column:  ``digest = H(utf8(norm(cell)))``
- several columns: ``digest = H(len_1 || utf8_1 || len_2 || utf8_2 ...)`` with
  4-byte big-endian lengths, so ``("a,b", "c")`` and ``("a", "b,c")`` differ.

``norm`` is :class:`~misuan.psi.spec.KeyNormalization`. Hashing makes every key
a CSV-safe token (no commas, quotes, newlines or non-ASCII reach libpsi) of
fixed size; 120 bits keep accidental collisions out of reach (~1e-12 for
1e9 x 1e9 keys). Digests go to libpsi base64-encoded: 15 bytes are exactly 20
characters without padding, so a whole column encodes and decodes in one call.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import unicodedata
from collections.abc import Callable, Sequence

import numpy as np

from misuan.errors import ComputeError
from misuan.psi.spec import KeyNormalization

DIGEST_BYTES = 15
TOKEN_CHARS = 20  # base64 of 15 bytes
DIGEST_DTYPE = f"S{DIGEST_BYTES}"

#: ``cells -> (digests of the rows with a non-empty key, positions of those rows)``
BatchDigester = Callable[[Sequence], "tuple[bytes, list[int] | None]"]


def _normalized(values: Sequence[str], policy: KeyNormalization) -> list[bytes]:
    """Apply ``policy`` to a column of cells and UTF-8 encode them (C-level loops)."""
    nfc = functools.partial(unicodedata.normalize, "NFC")
    it = iter(values)
    if policy.nfc:
        it = map(nfc, it)
    if policy.strip:
        it = map(str.strip, it)
    if policy.casefold:
        it = map(str.casefold, it)
        if policy.nfc:
            it = map(nfc, it)
    return list(map(str.encode, it))


def normalize_cell(cell: str, policy: KeyNormalization) -> str:
    """The normalised form of one cell (for tests and documentation)."""
    return _normalized([cell], policy)[0].decode("utf-8")


def make_batch_digester(policy: KeyNormalization, key_count: int) -> BatchDigester:
    """Return a function digesting a batch of key cells.

    The batch is a list of strings for one key column, or a list of tuples of
    strings for several. It returns the concatenated digests of the rows whose
    key cells are all non-empty after normalisation, and the positions of those
    rows in the batch (``None`` meaning "all of them").
    """
    if not 1 <= key_count <= 99:
        raise ValueError("key_count must be in 1..99")
    base = hashlib.blake2b(digest_size=DIGEST_BYTES, person=b"misuan-psi-1-k%02d" % key_count)

    if key_count == 1:

        def digest_single(cells: Sequence[str]) -> tuple[bytes, list[int] | None]:
            encoded = _normalized(cells, policy)
            positions = None
            if b"" in encoded:
                positions = [i for i, value in enumerate(encoded) if value]
                encoded = [encoded[i] for i in positions]
            out = []
            for value in encoded:
                h = base.copy()
                h.update(value)
                out.append(h.digest())
            return b"".join(out), positions

        return digest_single

    def digest_multi(rows: Sequence[tuple[str, ...]]) -> tuple[bytes, list[int] | None]:
        columns = [_normalized(column, policy) for column in zip(*rows)]
        out = []
        positions: list[int] = []
        for i, values in enumerate(zip(*columns)):
            if b"" in values:
                continue
            h = base.copy()
            for value in values:
                h.update(len(value).to_bytes(4, "big"))
                h.update(value)
            out.append(h.digest())
            positions.append(i)
        return b"".join(out), (None if len(positions) == len(rows) else positions)

    return digest_multi


def encode_tokens(digests: np.ndarray) -> bytes:
    """``(n,)`` array of ``S15`` digests -> ``n`` newline-terminated base64 lines."""
    count = len(digests)
    if count == 0:
        return b""
    encoded = np.frombuffer(base64.b64encode(digests.tobytes()), dtype=np.uint8)
    lines = np.empty((count, TOKEN_CHARS + 1), dtype=np.uint8)  # (n, 21): token + "\n"
    lines[:, :TOKEN_CHARS] = encoded.reshape(count, TOKEN_CHARS)
    lines[:, TOKEN_CHARS] = ord("\n")
    return lines.tobytes()


def decode_tokens(tokens: Sequence[bytes]) -> np.ndarray:
    """Inverse of :func:`encode_tokens` for a list of 20-character tokens."""
    if any(len(t) != TOKEN_CHARS for t in tokens):
        raise ComputeError("libpsi returned a malformed key token")
    return decode_tokens_packed(b"".join(tokens))


def decode_tokens_packed(packed: bytes) -> np.ndarray:
    """Decode back-to-back 20-character tokens into an ``S15`` array."""
    if len(packed) % TOKEN_CHARS:
        raise ComputeError("libpsi returned a malformed key token")
    try:
        raw = base64.b64decode(packed, validate=True)
    except ValueError as exc:  # binascii.Error is a ValueError
        raise ComputeError("libpsi returned a malformed key token") from exc
    return np.frombuffer(raw, dtype=DIGEST_DTYPE)
