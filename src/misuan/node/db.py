"""The node's SQLite database: registry, grants, sessions, audit chain, and the
tables a capability creates for itself (:meth:`Database.create_tables`).

Tables are created with ``IF NOT EXISTS``, so a table added later appears in an
existing database without a version bump."""

from __future__ import annotations

import sqlite3
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from ..errors import ConfigError

SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS audit (
    seq INTEGER PRIMARY KEY,
    ts REAL NOT NULL,
    op TEXT NOT NULL,
    asset TEXT NOT NULL,
    requester TEXT NOT NULL,
    bytes_in INTEGER NOT NULL,
    bytes_out INTEGER NOT NULL,
    status TEXT NOT NULL,
    detail TEXT NOT NULL,
    prev_hash TEXT NOT NULL,
    hash TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS peer_keys (
    party TEXT PRIMARY KEY,
    public_key TEXT NOT NULL,
    pinned REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS sessions (
    id TEXT PRIMARY KEY,
    principal TEXT NOT NULL,
    kind TEXT NOT NULL,
    state TEXT NOT NULL,
    created REAL NOT NULL,
    closed REAL,
    bytes_in INTEGER NOT NULL DEFAULT 0,
    bytes_out INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS assets (
    name TEXT NOT NULL,
    version INTEGER NOT NULL,
    kind TEXT NOT NULL,
    owner TEXT NOT NULL,
    state TEXT NOT NULL,
    config TEXT NOT NULL,
    created REAL NOT NULL,
    size_bytes INTEGER NOT NULL DEFAULT 0,
    asset_kind TEXT NOT NULL DEFAULT 'model',
    PRIMARY KEY (name, version)
);
CREATE TABLE IF NOT EXISTS tensors (
    asset TEXT NOT NULL,
    version INTEGER NOT NULL,
    idx INTEGER NOT NULL,
    name TEXT NOT NULL,
    shape TEXT NOT NULL,
    commitment TEXT NOT NULL,
    share_sha256 TEXT NOT NULL,
    bytes INTEGER NOT NULL,
    PRIMARY KEY (asset, version, name)
);
CREATE TABLE IF NOT EXISTS public_blobs (
    asset TEXT NOT NULL,
    version INTEGER NOT NULL,
    key TEXT NOT NULL,
    value TEXT NOT NULL,
    PRIMARY KEY (asset, version, key)
);
CREATE TABLE IF NOT EXISTS uploads (
    id TEXT PRIMARY KEY,
    asset TEXT NOT NULL,
    version INTEGER NOT NULL,
    principal TEXT NOT NULL,
    spec TEXT NOT NULL,
    created REAL NOT NULL,
    touched REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS upload_tensors (
    upload TEXT NOT NULL,
    name TEXT NOT NULL,
    share_sha256 TEXT NOT NULL,
    bytes INTEGER NOT NULL,
    PRIMARY KEY (upload, name)
);
CREATE TABLE IF NOT EXISTS principals (
    name TEXT PRIMARY KEY,
    public_key TEXT NOT NULL,
    added_by TEXT NOT NULL,
    created REAL NOT NULL,
    revoked REAL
);
CREATE TABLE IF NOT EXISTS grants (
    asset TEXT NOT NULL,
    principal TEXT NOT NULL,
    granted_by TEXT NOT NULL,
    created REAL NOT NULL,
    scope TEXT NOT NULL DEFAULT '',
    PRIMARY KEY (asset, principal)
);
"""


def _add_columns(conn: sqlite3.Connection) -> None:
    """Additive changes to tables made by an earlier release of this schema version."""
    cols = {r[1] for r in conn.execute("PRAGMA table_info(assets)").fetchall()}
    if "asset_kind" not in cols:  # one asset registry for every kind; the rows so far are models
        conn.execute("ALTER TABLE assets ADD COLUMN asset_kind TEXT NOT NULL DEFAULT 'model'")
    cols = {r[1] for r in conn.execute("PRAGMA table_info(grants)").fetchall()}
    if "scope" not in cols:  # grants limited to one use of an asset ('' = every use); the rows so far are full grants
        conn.execute("ALTER TABLE grants ADD COLUMN scope TEXT NOT NULL DEFAULT ''")


class Database:
    """One SQLite file, one connection, serialized by a lock (WAL mode)."""

    def __init__(self, path: Path):
        self.path = Path(path)
        try:
            self._conn = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None, timeout=30)
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("PRAGMA synchronous=FULL")
            self._conn.executescript(_SCHEMA)
            _add_columns(self._conn)
            row = self._conn.execute("SELECT value FROM meta WHERE key='schema'").fetchone()
            if row is None:
                self._conn.execute("INSERT INTO meta VALUES ('schema', ?)", (str(SCHEMA_VERSION),))
            elif int(row[0]) != SCHEMA_VERSION:
                raise ConfigError(f"{self.path}: schema version {row[0]} is not supported (want {SCHEMA_VERSION})")
        except sqlite3.DatabaseError as exc:
            raise ConfigError(f"cannot open node database {self.path}: {exc}") from None
        self._lock = threading.RLock()

    @contextmanager
    def tx(self) -> Iterator[sqlite3.Connection]:
        """A write transaction (BEGIN IMMEDIATE … COMMIT/ROLLBACK)."""
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield self._conn
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")

    def create_tables(self, ddl: str) -> None:
        """Run a capability's ``CREATE TABLE IF NOT EXISTS …`` statements (idempotent)."""
        with self._lock:
            self._conn.executescript(ddl)

    def query(self, sql: str, args: tuple = ()) -> list[tuple]:
        with self._lock:
            return self._conn.execute(sql, args).fetchall()

    def close(self) -> None:
        with self._lock:
            self._conn.close()
