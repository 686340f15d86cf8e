"""Map libpsi's answer back to the receiver's own rows and write the result file.

The result is written to a hidden temporary file next to the output path,
fsync'ed, and renamed over the output path, so the output path either does not
change or holds a complete result, never a half-written one.
"""

from __future__ import annotations

import io
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np

from misuan._fs import atomic_open
from misuan.errors import ComputeError, InvalidInput
from misuan.psi._csvio import open_csv, open_plain, writer_for
from misuan.psi._keys import TOKEN_CHARS, decode_tokens, decode_tokens_packed
from misuan.psi._prepare import DROPPED_DUPLICATE, PreparedInput
from misuan.psi._snapshot import Snapshot
from misuan.psi.spec import MATCH_COLUMN

NOT_MATCHED, MATCHED, DROPPED = 0, 1, 2
_TICK_ROWS = 1 << 15


def read_intersection(libpsi_output: Path, prepared: PreparedInput) -> np.ndarray:
    """Indexes (into ``prepared.unique_keys``) of the keys libpsi found in both sets."""
    try:
        data = libpsi_output.read_bytes()
    except OSError as exc:
        raise ComputeError("libpsi produced no result file") from exc
    body = data[data.find(b"\n") + 1 :] if b"\n" in data else b""
    width = TOKEN_CHARS + 1
    grid = np.frombuffer(body, dtype=np.uint8)
    if len(body) % width == 0 and np.all(grid[width - 1 :: width] == ord("\n")):
        # libpsi copies our input lines verbatim: (n, 21) = 20-char token + "\n"
        found = decode_tokens_packed(grid.reshape(-1, width)[:, :TOKEN_CHARS].tobytes())
    else:
        found = decode_tokens([line.strip(b'"\r') for line in body.split(b"\n") if line.strip()])
    index = np.searchsorted(prepared.unique_keys, found)
    if len(found) and (index.max() >= len(prepared.unique_keys) or not np.array_equal(prepared.unique_keys[index], found)):
        raise ComputeError("libpsi returned a key that is not in this party's input")
    return index


def row_states(prepared: PreparedInput, intersection: np.ndarray) -> np.ndarray:
    """Per data row: ``MATCHED``, ``NOT_MATCHED`` or ``DROPPED`` (uint8)."""
    matched_keys = np.zeros(len(prepared.unique_keys), dtype=bool)
    matched_keys[intersection] = True
    uid = prepared.row_uid
    states = np.full(len(uid), NOT_MATCHED, dtype=np.uint8)
    keyed = uid >= 0
    states[keyed] = matched_keys[uid[keyed]]
    states[uid == DROPPED_DUPLICATE] = DROPPED
    return states


def check_output_path(output: Path, input_csv: Path) -> None:
    """Refuse output paths that cannot work before any protocol work is done."""
    if output.exists() and output.is_dir():
        raise InvalidInput("output path is a directory")
    if not output.parent.is_dir():
        raise InvalidInput("output directory does not exist")
    if not os.access(output.parent, os.W_OK):
        raise InvalidInput("output directory is not writable by this node")
    try:
        if output.resolve() == input_csv.resolve():
            raise InvalidInput("output path must differ from the input path")
    except OSError:
        raise InvalidInput("output path cannot be resolved") from None


def _write_plain(stream: io.TextIOBase, snapshot: Snapshot, states: bytes, join: str, on_progress: Callable[[float], None] | None) -> int:
    """Copy the selected raw lines of a plain CSV (byte for byte, minus CRs)."""
    size = max(1, snapshot.size)
    written = row = 0
    with open_plain(snapshot.path) as source:
        header = ",".join(source.header)
        stream.write(header + (f",{MATCH_COLUMN}\n" if join == "left" else "\n"))
        for lines in source.batches:
            batch = states[row : row + len(lines)]
            row += len(lines)
            if join == "inner":
                chosen = [line for line, state in zip(lines, batch) if state == MATCHED]
            elif join == "difference":
                chosen = [line for line, state in zip(lines, batch) if state == NOT_MATCHED]
            else:
                chosen = [line + (",1" if state == MATCHED else ",0") for line, state in zip(lines, batch) if state != DROPPED]
            if chosen:
                stream.write("\n".join(chosen))
                stream.write("\n")
                written += len(chosen)
            if on_progress is not None:
                on_progress(min(1.0, source.position() / size))
    return written


def _write_csv(stream: io.TextIOBase, snapshot: Snapshot, states: bytes, join: str, on_progress: Callable[[float], None] | None) -> int:
    """Re-parse the snapshot with the csv module and write the selected rows."""
    wanted = {"inner": (MATCHED,), "left": (MATCHED, NOT_MATCHED), "difference": (NOT_MATCHED,)}[join]
    size = max(1, snapshot.size)
    written = 0
    with open_csv(snapshot.path) as source:
        writer = writer_for(stream)
        writer.writerow((*source.header, MATCH_COLUMN) if join == "left" else source.header)
        for number, row in enumerate(source.rows):
            state = states[number]
            if state in wanted:
                if join == "left":
                    row.append("1" if state == MATCHED else "0")
                writer.writerow(row)
                written += 1
            if on_progress is not None and number % _TICK_ROWS == 0:
                on_progress(min(1.0, source.position() / size))
    return written


def write_output(
    snapshot: Snapshot,
    states: np.ndarray,
    join: str,
    output: Path,
    on_progress: Callable[[float], None] | None = None,
) -> int:
    """Write the receiver's rows selected by ``join`` to ``output`` atomically.

    Returns the number of data rows written.
    """
    if join not in ("inner", "left", "difference"):
        raise ValueError(f"unknown join {join!r}")
    write = _write_plain if snapshot.plain else _write_csv
    with atomic_open(output, "w", suffix=".part", strict_dir_sync=False, encoding="utf-8", newline="") as stream:
        return write(stream, snapshot, states.tobytes(), join, on_progress)
