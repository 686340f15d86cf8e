"""Datasets: the only node-local files a job (PSI) may read, each with an owner and grants.

A principal ``P`` registers a file under a dataset name; the node accepts it only
if the file resolves (symlinks followed) to a regular file inside ``P``'s own
directory ``<data_dir>/<P>/`` of one of the node's configured ``data_dirs``. The
operator decides whose directory a file lands in; no principal can claim a file
in another principal's directory, and no request can name a path outside them.
The node records the file's SHA-256 and size: a job reads the dataset only if
its bytes still hash to that value (the PSI engine checks its private snapshot),
so the file cannot be swapped under a granted name.

Names are per owner (``P``'s ``customers`` and ``Q``'s ``customers`` are two
datasets), so a name never reveals another principal's datasets. Jobs refer to
one's own dataset as ``name`` and to another's as ``owner/name``. The owner may
grant a principal ``use`` (its rows may be a PSI input on a side that does not
receive the result) or ``use`` plus ``receive`` (that side may receive its
rows: a ``left`` join then returns the whole file, so this is a read grant).

Unknown and forbidden answer the same: a dataset that does not exist and one
the caller may not use are one ``NotFound``; so are a missing path, a path
outside the caller's directory, a symlink leading out of it and a special file.
"""

from __future__ import annotations

import hashlib
import os
import re
import stat
import time
from dataclasses import dataclass
from pathlib import Path

from ..errors import Conflict, InvalidInput, NotFound
from ..node.audit import AuditLog
from ..node.db import Database

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
MAX_PATH = 4096
MAX_COMPONENT = 255
UNKNOWN_DATASET = "no such dataset on this node (or not shared with you)"
NO_SUCH_FILE = "no such file in your data directory on this node"
_CHUNK = 1 << 20


#: the registry's own tables (created at start if missing; kept in the node's database)
_TABLES = """
CREATE TABLE IF NOT EXISTS datasets (
    owner TEXT NOT NULL,
    name TEXT NOT NULL,
    path TEXT NOT NULL,
    sha256 TEXT NOT NULL,
    size_bytes INTEGER NOT NULL,
    created REAL NOT NULL,
    PRIMARY KEY (owner, name)
);
CREATE TABLE IF NOT EXISTS dataset_grants (
    owner TEXT NOT NULL,
    name TEXT NOT NULL,
    principal TEXT NOT NULL,
    receive INTEGER NOT NULL,
    created REAL NOT NULL,
    PRIMARY KEY (owner, name, principal)
);
"""


@dataclass(frozen=True)
class Dataset:
    owner: str
    name: str
    path: Path
    sha256: str
    size: int

    @property
    def ref(self) -> str:
        return f"{self.owner}/{self.name}"


def check_dataset_name(name: str) -> str:
    if not isinstance(name, str) or not NAME_RE.match(name):
        raise InvalidInput("dataset names are 1-64 chars of letters, digits, '.', '_' or '-' (a letter or digit first)")
    return name


def check_path_text(path: str) -> str:
    """Refuse, with one clear line, paths the OS would choke on (NUL, over-long)."""
    if not isinstance(path, str) or not path:
        raise InvalidInput("the path must be a non-empty string")
    if "\0" in path:
        raise InvalidInput("the path must not contain NUL bytes")
    if len(path.encode("utf-8", "surrogateescape")) > MAX_PATH:
        raise InvalidInput(f"the path is longer than {MAX_PATH} bytes")
    if any(len(part.encode("utf-8", "surrogateescape")) > MAX_COMPONENT for part in path.split("/")):
        raise InvalidInput(f"a path component is longer than {MAX_COMPONENT} bytes")
    return path


def _own_dir_name(who: str) -> str:
    """The principal's directory name under each data dir (its name, if that is a safe path component)."""
    if not who or who in (".", "..") or "/" in who or "\0" in who or len(who) > MAX_COMPONENT:
        raise NotFound(NO_SUCH_FILE)
    return who


def _hash_file(path: Path) -> tuple[str, int]:
    """SHA-256 and size of a regular file, read through one descriptor (no FIFO/device ever opened blocking)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except PermissionError:
        raise InvalidInput("the node cannot read this file (check its permissions)") from None
    except OSError:
        raise NotFound(NO_SUCH_FILE) from None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise NotFound(NO_SUCH_FILE)
        digest, size = hashlib.sha256(), 0
        while chunk := os.read(fd, _CHUNK):
            digest.update(chunk)
            size += len(chunk)
        return digest.hexdigest(), size
    finally:
        os.close(fd)


class DatasetRegistry:
    def __init__(self, data_dirs: tuple[Path, ...], db: Database, audit: AuditLog):
        self.data_dirs = tuple(data_dirs)
        self.db = db
        self.audit = audit
        db.create_tables(_TABLES)

    # ------------------------------------------------------------ helpers

    def _roots(self, who: str) -> list[Path]:
        name = _own_dir_name(who)
        return [(d / name).resolve() for d in self.data_dirs]

    def _locate(self, who: str, path: str) -> Path:
        """The real path of ``path`` if it is a file inside ``who``'s own directory, else NotFound."""
        check_path_text(path)
        roots = self._roots(who)
        given = Path(path)
        candidates = [given] if given.is_absolute() else [r / given for r in roots]
        for cand in candidates:
            try:
                real = cand.resolve(strict=True)
            except (OSError, RuntimeError, ValueError):
                continue
            if any(real != r and real.is_relative_to(r) for r in roots):
                return real
        raise NotFound(NO_SUCH_FILE)

    def _row(self, owner: str, name: str) -> Dataset | None:
        rows = self.db.query("SELECT path, sha256, size_bytes FROM datasets WHERE owner=? AND name=?", (owner, name))
        if not rows:
            return None
        path, sha, size = rows[0]
        return Dataset(owner, name, Path(path), sha, size)

    def _grant_of(self, owner: str, name: str, who: str) -> bool | None:
        """None: no grant; else whether the grant includes receiving."""
        rows = self.db.query("SELECT receive FROM dataset_grants WHERE owner=? AND name=? AND principal=?", (owner, name, who))
        return bool(rows[0][0]) if rows else None

    def _owned(self, who: str, name: str) -> Dataset:
        check_dataset_name(name)
        ds = self._row(who, name)
        if ds is None:
            raise NotFound(UNKNOWN_DATASET)
        return ds

    @staticmethod
    def _public(ds: Dataset) -> dict:
        return {"owner": ds.owner, "name": ds.name, "ref": ds.ref, "sha256": ds.sha256, "size_bytes": ds.size}

    # ------------------------------------------------------------ owner

    def register(self, who: str, name: str, path: str, replace: bool = False) -> dict:
        check_dataset_name(name)
        real = self._locate(who, path)
        sha, size = _hash_file(real)
        with self.db.tx() as conn:
            exists = conn.execute("SELECT 1 FROM datasets WHERE owner=? AND name=?", (who, name)).fetchone()
            if exists and not replace:
                raise Conflict(f"you already have a dataset {name!r} on this node (register it again with replace)")
            conn.execute("INSERT OR REPLACE INTO datasets VALUES (?,?,?,?,?,?)", (who, name, str(real), sha, size, time.time()))
        self.audit.append(
            "dataset.register",
            asset=f"dataset:{who}/{name}",
            requester=who,
            detail={"sha256": sha, "bytes": size, "replaced": bool(exists)},
        )
        return {**self._public(Dataset(who, name, real, sha, size)), "path": str(real)}

    def remove(self, who: str, name: str) -> None:
        self._owned(who, name)
        with self.db.tx() as conn:
            conn.execute("DELETE FROM datasets WHERE owner=? AND name=?", (who, name))
            conn.execute("DELETE FROM dataset_grants WHERE owner=? AND name=?", (who, name))
        self.audit.append("dataset.remove", asset=f"dataset:{who}/{name}", requester=who)

    def grant(self, who: str, name: str, to: str, receive: bool = False) -> None:
        from ..node.auth import check_principal

        check_principal(to)
        self._owned(who, name)
        if to == who:
            raise InvalidInput("the owner of a dataset needs no grant")
        with self.db.tx() as conn:
            conn.execute("INSERT OR REPLACE INTO dataset_grants VALUES (?,?,?,?,?)", (who, name, to, int(receive), time.time()))
        self.audit.append("dataset.grant", asset=f"dataset:{who}/{name}", requester=who, detail={"to": to, "receive": bool(receive)})

    def revoke(self, who: str, name: str, to: str) -> bool:
        self._owned(who, name)
        with self.db.tx() as conn:
            cur = conn.execute("DELETE FROM dataset_grants WHERE owner=? AND name=? AND principal=?", (who, name, to))
        self.audit.append("dataset.revoke", asset=f"dataset:{who}/{name}", requester=who, detail={"from": to})
        return cur.rowcount > 0

    # ------------------------------------------------------------ anyone (scoped)

    def list(self, who: str) -> list[dict]:
        own = self.db.query("SELECT owner, name, path, sha256, size_bytes FROM datasets WHERE owner=? ORDER BY name", (who,))
        shared = self.db.query(
            "SELECT d.owner, d.name, d.path, d.sha256, d.size_bytes, g.receive FROM datasets d JOIN dataset_grants g "
            "ON d.owner=g.owner AND d.name=g.name WHERE g.principal=? ORDER BY d.owner, d.name",
            (who,),
        )
        out = [{**self._public(Dataset(o, n, Path(p), s, z)), "access": "owner"} for o, n, p, s, z in own]
        out += [{**self._public(Dataset(o, n, Path(p), s, z)), "access": "receive" if r else "use"} for o, n, p, s, z, r in shared]
        return out

    def _usable(self, who: str, owner: str, name: str) -> tuple[Dataset, bool | None]:
        """Dataset ``owner/name`` if ``who`` owns it (grant None) or was granted it (grant:
        may receive its rows); unknown and forbidden answer alike."""
        check_dataset_name(name)
        ds = self._row(owner, name)
        if ds is None:
            raise NotFound(UNKNOWN_DATASET)
        if owner == who:
            return ds, None
        grant = self._grant_of(owner, name, who)
        if grant is None:
            raise NotFound(UNKNOWN_DATASET)
        return ds, grant

    def show(self, who: str, name: str, owner: str | None = None) -> dict:
        ds, grant = self._usable(who, owner or who, name)
        if grant is None:
            grants = self.db.query("SELECT principal, receive FROM dataset_grants WHERE owner=? AND name=? ORDER BY principal", (who, name))
            return {
                **self._public(ds),
                "access": "owner",
                "path": str(ds.path),
                "grants": [{"to": p, "receive": bool(r)} for p, r in grants],
            }
        return {**self._public(ds), "access": "receive" if grant else "use"}

    def resolve(self, who: str, ref: str) -> tuple[Dataset, bool]:
        """The dataset ``ref`` (``name`` or ``owner/name``) if ``who`` may use it, and whether ``who`` may receive its rows."""
        if not isinstance(ref, str) or "\0" in ref:
            raise InvalidInput("a dataset is named 'name' or 'owner/name'")
        owner, _, name = ref.rpartition("/")
        ds, grant = self._usable(who, owner or who, name)
        return ds, True if grant is None else grant

    @staticmethod
    def check_unchanged(ds: Dataset) -> None:
        """Cheap early check (size and type) before a job; the engine verifies the SHA-256 on its snapshot."""
        try:
            st = os.stat(ds.path)
        except OSError:
            st = None
        if st is None or not stat.S_ISREG(st.st_mode) or st.st_size != ds.size:
            raise Conflict(f"dataset {ds.ref!r} changed or is gone since it was registered; its owner must register it again")
