"""Prepare one party's input for libpsi: canonical keys, duplicates, libpsi's CSV.

libpsi sees a one-column CSV (``k``) of base64 key digests, one line per
*distinct* key, sorted, plus one random dummy key (see below). Nothing else of
the user's file reaches it, so quoting, unicode and extra columns are not its
concern, and it never needs to handle duplicates (its duplicate mode would send
per-key multiplicities to the peer).

The dummy key: when both inputs are duplicate-free, libpsi 0.9.5 sends the peer
a SHA-256 of the whole key column and, if both hashes are equal, logs "the keys
between two parties share the same set" and takes a shortcut (marked FIXME
upstream). That would tell even a non-receiving party that the two sets are
identical, and let a peer confirm a guessed key set offline. One random 120-bit
key per party makes the hash useless to the peer and the shortcut unreachable.
It never matches anything and is not counted in any number misuan reports.
"""

from __future__ import annotations

import itertools
import operator
import os
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from misuan.errors import ComputeError, InvalidInput
from misuan.psi._csvio import open_csv, open_plain
from misuan.psi._keys import DIGEST_BYTES, DIGEST_DTYPE, encode_tokens, make_batch_digester
from misuan.psi._snapshot import Snapshot
from misuan.psi.spec import PsiSpec

LIBPSI_KEY_COLUMN = "k"
#: Row states in :attr:`PreparedInput.row_uid`.
EMPTY_KEY = -1
DROPPED_DUPLICATE = -2


class Cancelled(ComputeError):
    """Preparation was stopped because the peer failed first."""


@dataclass(frozen=True, eq=False)
class PreparedInput:
    """What the later stages need to know about this party's rows.

    ``row_uid[r]`` is the index in ``unique_keys`` of data row ``r``'s key, or
    ``EMPTY_KEY`` / ``DROPPED_DUPLICATE``.
    """

    header: tuple[str, ...]
    input_rows: int
    empty_key_rows: int
    duplicate_rows: int
    dropped_rows: int
    unique_keys: np.ndarray  # (u,) S15, sorted
    row_uid: np.ndarray  # (input_rows,) int64
    libpsi_input: Path


def key_indexes(header: tuple[str, ...], keys: tuple[str, ...]) -> tuple[int, ...]:
    """Positions of ``keys`` in ``header``; InvalidInput if missing or ambiguous."""
    indexes = []
    for key in keys:
        hits = [i for i, name in enumerate(header) if name == key]
        if not hits:
            raise InvalidInput(f"key column {key!r} is not in the input header")
        if len(hits) > 1:
            raise InvalidInput(f"key column {key!r} appears {len(hits)} times in the input header")
        indexes.append(hits[0])
    return tuple(indexes)


_CSV_BATCH_ROWS = 1 << 16


@contextmanager
def _key_cells(snapshot: Snapshot, keys: tuple[str, ...]) -> Iterator[tuple[tuple[str, ...], Iterator[list], Callable[[], int]]]:
    """Open the snapshot; yield (header, batches of key cells, byte position).

    A batch holds one entry per data row: the key cell (one key column) or the
    tuple of key cells (several).
    """
    if snapshot.plain:
        with open_plain(snapshot.path) as plain:
            index = key_indexes(plain.header, keys)
            yield plain.header, _plain_cells(plain.batches, index, len(plain.header)), plain.position
    else:
        with open_csv(snapshot.path) as source:
            index = key_indexes(source.header, keys)
            pick = operator.itemgetter(*index)

            def batches() -> Iterator[list]:
                while True:
                    rows = list(itertools.islice(source.rows, _CSV_BATCH_ROWS))
                    if not rows:
                        return
                    yield list(map(pick, rows))

            yield source.header, batches(), source.position


def _plain_cells(batches: Iterator[list[str]], index: tuple[int, ...], width: int) -> Iterator[list]:
    if len(index) > 1:
        pick = operator.itemgetter(*index)
        for lines in batches:
            yield [pick(line.split(",")) for line in lines]
        return
    (column,) = index
    for lines in batches:
        if width == 1:
            yield lines
        elif column == 0:
            yield [line.partition(",")[0] for line in lines]
        else:
            yield [line.split(",", column + 1)[column] for line in lines]


def prepare_input(
    snapshot: Snapshot,
    spec: PsiSpec,
    libpsi_input: Path,
    *,
    reserved_columns: tuple[str, ...] = (),
    cancel: threading.Event | None = None,
    on_progress: Callable[[float], None] | None = None,
) -> PreparedInput:
    """Read ``snapshot``, apply the key and duplicate policies, write libpsi's input.

    Args:
        snapshot: this party's private copy of its CSV.
        spec: the job spec (keys, normalisation, duplicate policy).
        libpsi_input: where to write the one-column CSV for libpsi.
        reserved_columns: column names the output will add (refused in the input).
        cancel: set by another thread to stop early (raises :class:`Cancelled`).
        on_progress: called with the fraction of the file read so far.

    Raises:
        InvalidInput: bad CSV, missing key column, no data rows, refused duplicates.
    """
    size = max(1, snapshot.size)
    digest_batch = make_batch_digester(spec.normalize, len(spec.keys))
    digests = bytearray()
    kept: list[np.ndarray] = []
    rows = 0
    with _key_cells(snapshot, spec.keys) as (header, batches, position):
        for name in reserved_columns:
            if name in header:
                raise InvalidInput(f"input already has a column named {name!r}, which the output adds")
        for cells in batches:
            if cancel is not None and cancel.is_set():
                raise Cancelled("PSI input preparation cancelled")
            batch_digests, positions = digest_batch(cells)
            digests += batch_digests
            if positions is None:
                kept.append(np.arange(rows, rows + len(cells), dtype=np.int64))
            else:
                kept.append(np.asarray(positions, dtype=np.int64) + rows)
            rows += len(cells)
            if on_progress is not None:
                on_progress(min(1.0, position() / size))
    if rows == 0:
        raise InvalidInput("input has a header but no data rows")
    if not digests:
        raise InvalidInput("no input row has a non-empty key")

    keyed = np.frombuffer(digests, dtype=DIGEST_DTYPE)
    unique, first, inverse = np.unique(keyed, return_index=True, return_inverse=True)
    duplicates = len(keyed) - len(unique)
    if duplicates and spec.duplicates == "refuse":
        raise InvalidInput(f"{duplicates} input rows repeat the key of an earlier row (duplicates='refuse'; use 'first' or 'all')")
    kept_rows = np.concatenate(kept)
    row_uid = np.full(rows, EMPTY_KEY, dtype=np.int64)
    row_uid[kept_rows] = inverse
    dropped = 0
    if duplicates and spec.duplicates == "first":
        is_first = np.zeros(len(keyed), dtype=bool)
        is_first[first] = True
        row_uid[kept_rows[~is_first]] = DROPPED_DUPLICATE
        dropped = duplicates

    dummy = np.frombuffer(os.urandom(DIGEST_BYTES), dtype=DIGEST_DTYPE)
    with open(libpsi_input, "wb") as out:
        out.write(LIBPSI_KEY_COLUMN.encode() + b"\n")
        out.write(encode_tokens(unique))
        out.write(encode_tokens(dummy))
    if on_progress is not None:
        on_progress(1.0)
    return PreparedInput(
        header=header,
        input_rows=rows,
        empty_key_rows=rows - len(keyed),
        duplicate_rows=duplicates,
        dropped_rows=dropped,
        unique_keys=unique,
        row_uid=row_uid,
        libpsi_input=libpsi_input,
    )
