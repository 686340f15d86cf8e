"""Append-only, hash-chained audit log.

Every row records an operation, the asset it touched, who asked, when, and byte
counts — never payloads. Row ``n`` stores ``hash_n = sha256(prev_hash ||
canonical(row_n))`` with ``prev_hash = hash_{n-1}`` (64 zeros for the first
row), so editing, deleting or reordering any row breaks every later link.
:func:`verify_chain` recomputes the chain from the database file alone.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path

from ..audit_heads import GENESIS
from .db import Database

#: the op of a row that records a peer's signed head (node/witness.py)
PEER_HEAD_OP = "audit.peer_head"
_COLS = ("seq", "ts", "op", "asset", "requester", "bytes_in", "bytes_out", "status", "detail")


def _row_hash(prev_hash: str, row: dict) -> str:
    canon = json.dumps([row[c] for c in _COLS], separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256((prev_hash + canon).encode()).hexdigest()


class AuditLog:
    def __init__(self, db: Database):
        self.db = db

    def append(
        self,
        op: str,
        *,
        asset: str = "",
        requester: str = "",
        bytes_in: int = 0,
        bytes_out: int = 0,
        status: str = "ok",
        detail: dict | None = None,
    ) -> int:
        """Append one row; ``detail`` holds public metadata only (counts, shapes, hashes)."""
        with self.db.tx() as conn:
            last = conn.execute("SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1").fetchone()
            seq, prev = (last[0] + 1, last[1]) if last else (1, GENESIS)
            row = {
                "seq": seq,
                "ts": round(time.time(), 6),
                "op": op,
                "asset": asset,
                "requester": requester,
                "bytes_in": int(bytes_in),
                "bytes_out": int(bytes_out),
                "status": status,
                "detail": json.dumps(detail or {}, sort_keys=True, separators=(",", ":")),
            }
            h = _row_hash(prev, row)
            conn.execute(
                "INSERT INTO audit VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                (*[row[c] for c in _COLS], prev, h),
            )
        return seq

    def head(self) -> tuple[int, str]:
        """``(seq, hash)`` of the last row; ``(0, GENESIS)`` for an empty chain."""
        row = self.db.query("SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1")
        return (row[0][0], row[0][1]) if row else (0, GENESIS)

    def last_op_seq(self) -> int:
        """Seq of the last row that is not a peer-head record (0 if none)."""
        # walks back from the end: only the trailing peer-head rows are read
        row = self.db.query("SELECT seq FROM audit WHERE op != ? ORDER BY seq DESC LIMIT 1", (PEER_HEAD_OP,))
        return row[0][0] if row else 0

    def tail(self, n: int = 20, requester: str | None = None) -> list[dict]:
        """The last ``n`` rows (only ``requester``'s own, when given)."""
        where, args = ("WHERE requester=? ", (requester, n)) if requester is not None else ("", (n,))
        rows = self.db.query(f"SELECT {', '.join(_COLS)}, hash FROM audit {where}ORDER BY seq DESC LIMIT ?", args)
        return [dict(zip((*_COLS, "hash"), r)) for r in reversed(rows)]


@dataclass(frozen=True)
class ChainReport:
    path: str
    rows: int
    ok: bool
    first_broken: int | None = None
    reason: str = ""
    head: str = GENESIS


def verify_chain(db_path: Path) -> ChainReport:
    """Recompute the chain of one node's audit table, read-only."""
    try:
        conn = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)
        rows = conn.execute(f"SELECT {', '.join(_COLS)}, prev_hash, hash FROM audit ORDER BY seq").fetchall()
        conn.close()
    except sqlite3.DatabaseError as exc:
        return ChainReport(str(db_path), 0, False, None, f"cannot read audit table: {exc}")
    prev = GENESIS
    expected_seq = 1
    for r in rows:
        row = dict(zip(_COLS, r[: len(_COLS)]))
        stored_prev, stored_hash = r[len(_COLS)], r[len(_COLS) + 1]
        if row["seq"] != expected_seq:
            return ChainReport(str(db_path), len(rows), False, expected_seq, f"row {expected_seq} is missing")
        if stored_prev != prev:
            return ChainReport(str(db_path), len(rows), False, row["seq"], "prev_hash does not match the previous row")
        if _row_hash(prev, row) != stored_hash:
            return ChainReport(str(db_path), len(rows), False, row["seq"], "row content does not match its hash")
        prev = stored_hash
        expected_seq += 1
    return ChainReport(str(db_path), len(rows), True, head=prev)
