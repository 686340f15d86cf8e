"""The asset registry of one node, for every kind: staged uploads, versions, grants.

One :class:`AssetRegistry` per asset kind a capability registers (``model``
today; ``kb``, ``dataset``, ``adapter`` next), over shared tables: a name
(``<owner>/<name>``) belongs to one kind. A publish stages every tensor share
under ``shares/staging/<upload>/`` and registers nothing until ``commit``,
which moves the directory into ``shares/<kind>s/<name>/<version>/`` and writes
the registry rows in one transaction. Aborted, idle or interrupted uploads
(including those cut by a node restart) are deleted, so a failed publish
leaves no half asset.

Each share file is encrypted with the node key and bound (AEAD associated
data) to ``<kind>:<name>:<version>:<tensor>``. Nothing here ever returns share
bytes to a client.
"""

from __future__ import annotations

import json
import re
import secrets
import shutil
import time
from dataclasses import dataclass

from ..errors import Conflict, InvalidInput, NotFound, PermissionDenied
from ..identity import ADMIN
from ..mpc import _aby3, _pb
from .audit import AuditLog
from .capability import AssetKind
from .db import Database
from .store import ShareStore, StreamWriter

MODEL_RE = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")
#: an asset's full name: ``<owner>/<name>`` (every principal publishes under its own name)
FULL_NAME_RE = re.compile(r"^[a-z][a-z0-9_-]{0,63}/[a-z0-9][a-z0-9._-]{0,63}$")
TENSOR_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
VIS_SECRET = 1  # spu Visibility.VIS_SECRET


def check_asset_name(name: str, kind: str) -> str:
    """A full asset name ``<owner>/<name>``."""
    if not FULL_NAME_RE.match(name or "") or ".." in name:
        raise InvalidInput(f"{kind} names are <owner>/<name>: name 1-64 chars, a-z 0-9 first, then a-z 0-9 . _ - (no '..')")
    return name


def asset_fields(full: str, kind: str) -> dict:
    """How an asset is named in answers: ``<kind>`` (``<owner>/<name>``), ``owner``, ``name``."""
    owner, _, name = full.partition("/")
    return {kind: full, "owner": owner, "name": name}


@dataclass
class _HeadCheck:
    """Checks the head of an uploaded share frame: magic, meta, shape, size."""

    shape: tuple[int, ...]
    storage: str
    buf: bytearray
    done: bool = False
    #: exact size of a compressed (MSC1) frame, once known
    exact_size: int | None = None

    def feed(self, data: bytes | memoryview) -> None:
        if self.done:
            return
        self.buf += data[:4096]
        if len(self.buf) < 8:
            return
        magic = bytes(self.buf[:4])
        if magic not in (b"MSH1", _aby3.COMPRESSED):
            raise InvalidInput("upload is not a misuan share frame")
        mlen = int.from_bytes(self.buf[4:8], "little")
        if mlen > 4000:
            raise InvalidInput("share frame header too large")
        if len(self.buf) < 8 + mlen + 2:
            return
        if magic == _aby3.COMPRESSED:
            if self.storage != _aby3.STORAGE.decode():
                raise InvalidInput("compressed shares are for ABY3/FM64 clusters only")
            kinds = tuple(self.buf[8 + mlen : 10 + mlen])
            if not all(k in (_aby3.SEED, _aby3.DATA) for k in kinds):
                raise InvalidInput("bad compressed share frame")
            n = 1
            for d in self.shape:
                n *= d
            self.exact_size = _aby3.compressed_size(mlen, kinds, n)
        try:
            shape, visibility, storage = _pb.value_meta(bytes(self.buf[8 : 8 + mlen]))
        except InvalidInput:
            raise InvalidInput("share frame carries no valid meta") from None
        if shape != self.shape:
            raise InvalidInput(f"share shape {shape} does not match the declared {self.shape}")
        if visibility != VIS_SECRET or storage != self.storage:
            raise InvalidInput(f"share is not a secret {self.storage} share")
        self.done = True


class AssetRegistry:
    def __init__(self, db: Database, store: ShareStore, audit: AuditLog, storage_type: str, bytes_per_value: int, kind: AssetKind):
        self.db = db
        self.store = store
        self.audit = audit
        self.storage_type = storage_type
        self.bytes_per_value = bytes_per_value
        self.kind = kind
        self.k = kind.name

    def _aad(self, name: str, version: int, tensor: str) -> str:
        return f"{self.k}:{name}:{version}:{tensor}"

    def _key(self, name: str, version: int, tensor: str | None = None) -> str:
        base = f"{self.k}s/{name}/{version}"
        return f"{base}/{tensor}" if tensor else base

    def fields(self, full: str) -> dict:
        return asset_fields(full, self.k)

    # ------------------------------------------------------------ helpers

    def owner(self, name: str) -> str | None:
        """The owner of asset ``name`` of this kind (None: no such asset of this kind)."""
        rows = self.db.query("SELECT owner FROM assets WHERE name=? AND asset_kind=? LIMIT 1", (name, self.k))
        if rows:
            return rows[0][0]
        rows = self.db.query(
            # uploads staged before assets had kinds were all models
            "SELECT principal FROM uploads WHERE asset=? AND COALESCE(json_extract(spec, '$.asset_kind'), 'model')=? LIMIT 1",
            (name, self.k),
        )
        return rows[0][0] if rows else None

    def can_use(self, principal: str, name: str, scope: str | None = None) -> bool:
        """Whether ``principal`` owns ``name`` or holds a grant on it; with ``scope``, a
        grant for that use (or for every use)."""
        owner = self.owner(name)
        if owner is None:
            return False
        if principal == owner:
            return True
        rows = self.db.query("SELECT scope FROM grants WHERE asset=? AND principal=?", (name, principal))
        return bool(rows) and (scope is None or rows[0][0] in ("", scope))

    def _visible(self, principal: str, name: str) -> None:
        if not self.can_use(principal, name) and principal != ADMIN:
            raise NotFound(f"unknown {self.k} {name!r}")

    def _require_owner(self, principal: str, name: str) -> str:
        owner = self.owner(name)
        if owner is None:
            raise NotFound(f"unknown {self.k} {name!r}")
        if principal != owner:
            if self.can_use(principal, name) or principal == ADMIN:
                raise PermissionDenied(f"only the owner of {name!r} may do this")
            raise NotFound(f"unknown {self.k} {name!r}")
        return owner

    def resolve_version(self, name: str, version: int | None) -> int:
        if version is None:
            rows = self.db.query("SELECT MAX(version) FROM assets WHERE name=? AND asset_kind=? AND state='ready'", (name, self.k))
            if not rows or rows[0][0] is None:
                raise NotFound(f"unknown {self.k} {name!r}")
            return int(rows[0][0])
        if not self.db.query("SELECT 1 FROM assets WHERE name=? AND version=? AND asset_kind=? AND state='ready'", (name, version, self.k)):
            raise NotFound(f"{self.k} {name!r} has no version {version}")
        return version

    # ------------------------------------------------------------ uploads

    def begin_upload(self, principal: str, name: str, version: int, kind: str, config: dict, tokenizer: str, tensors: list[dict]) -> str:
        check_asset_name(name, self.k)
        self.kind.validate(kind, config)
        if version < 1:
            raise InvalidInput("version must be >= 1")
        names = [t["name"] for t in tensors]
        if not tensors or len(set(names)) != len(names):
            raise InvalidInput("tensor list is empty or has duplicates")
        for t in tensors:
            if not TENSOR_RE.match(t["name"]):
                raise InvalidInput("invalid tensor name")
            if not all(isinstance(d, int) and d >= 0 for d in t["shape"]):
                raise InvalidInput(f"invalid shape for tensor {t['name']!r}")
        if name.split("/", 1)[0] != principal:  # decided by the name alone: no oracle of others' models
            raise PermissionDenied(f"you publish under your own name: {principal}/<{self.k}>")
        if self.db.query("SELECT 1 FROM assets WHERE name=? AND version=?", (name, version)) or self.db.query(
            "SELECT 1 FROM uploads WHERE asset=? AND version=?", (name, version)
        ):
            raise Conflict(f"{self.k} {name!r} version {version} already exists or is being published")
        uid = secrets.token_hex(12)
        spec = {"asset_kind": self.k, "kind": kind, "config": config, "tokenizer": tokenizer, "tensors": tensors}
        now = time.time()
        with self.db.tx() as conn:
            conn.execute("INSERT INTO uploads VALUES (?,?,?,?,?,?,?)", (uid, name, version, principal, json.dumps(spec), now, now))
        self.audit.append(f"{self.k}.upload.begin", asset=f"{name}@{version}", requester=principal, detail={"tensors": len(tensors)})
        return uid

    def upload_kind(self, uid: str) -> str | None:
        """The asset kind of staged upload ``uid`` (None: no such upload)."""
        rows = self.db.query("SELECT COALESCE(json_extract(spec, '$.asset_kind'), 'model') FROM uploads WHERE id=?", (uid,))
        return rows[0][0] if rows else None

    def _upload(self, uid: str, principal: str) -> tuple[str, int, dict]:
        if not re.match(r"^[0-9a-f]{24}$", uid or ""):
            raise NotFound("unknown upload")
        rows = self.db.query("SELECT asset, version, principal, spec FROM uploads WHERE id=?", (uid,))
        if not rows or rows[0][2] != principal:
            raise NotFound("unknown upload")
        name, version, _, spec = rows[0]
        return name, version, json.loads(spec)

    def tensor_writer(self, uid: str, principal: str, tensor: str) -> tuple[StreamWriter, _HeadCheck, int]:
        name, version, spec = self._upload(uid, principal)
        match = [t for t in spec["tensors"] if t["name"] == tensor]
        if not match:
            raise NotFound(f"tensor {tensor!r} is not part of this upload")
        shape = tuple(match[0]["shape"])
        n = 1
        for d in shape:
            n *= d
        writer = self.store.writer(f"staging/{uid}/{tensor}", self._aad(name, version, tensor))
        return writer, _HeadCheck(shape, self.storage_type, bytearray()), n

    def finish_tensor(self, uid: str, principal: str, tensor: str, writer: StreamWriter, head: _HeadCheck, n: int) -> dict:
        if not head.done:
            writer.abort()
            raise InvalidInput("upload ended before the share header")
        expected = self.bytes_per_value * n
        if head.exact_size is not None:
            if writer.bytes != head.exact_size:
                writer.abort()
                raise InvalidInput(f"share of {tensor!r} has {writer.bytes} bytes, expected {head.exact_size}")
        elif not expected <= writer.bytes <= expected + 4096 + 64 * (1 + expected // (64 << 20)):
            writer.abort()
            raise InvalidInput(f"share of {tensor!r} has {writer.bytes} bytes, expected about {expected}")
        sha = writer.commit()
        with self.db.tx() as conn:
            conn.execute("INSERT OR REPLACE INTO upload_tensors VALUES (?,?,?,?)", (uid, tensor, sha, writer.bytes))
            conn.execute("UPDATE uploads SET touched=? WHERE id=?", (time.time(), uid))
        return {"tensor": tensor, "bytes": writer.bytes, "share_sha256": sha}

    def prepare(self, uid: str, principal: str) -> dict:
        name, version, spec = self._upload(uid, principal)
        got = {r[0] for r in self.db.query("SELECT name FROM upload_tensors WHERE upload=?", (uid,))}
        missing = [t["name"] for t in spec["tensors"] if t["name"] not in got]
        if missing:
            raise Conflict(f"upload incomplete: {len(missing)} tensors missing (first: {missing[0]})")
        return {"ready": True, "tensors": len(got)}

    def commit(self, uid: str, principal: str) -> dict:
        name, version, spec = self._upload(uid, principal)
        self.prepare(uid, principal)
        rows = {r[0]: (r[1], r[2]) for r in self.db.query("SELECT name, share_sha256, bytes FROM upload_tensors WHERE upload=?", (uid,))}
        total = sum(b for _, b in rows.values())
        self.store.move_tree(f"staging/{uid}", self._key(name, version))
        now = time.time()
        with self.db.tx() as conn:
            conn.execute(
                "INSERT INTO assets (name, version, kind, owner, state, config, created, size_bytes, asset_kind) VALUES (?,?,?,?,?,?,?,?,?)",
                (name, version, spec["kind"], principal, "ready", json.dumps(spec["config"]), now, total, self.k),
            )
            for idx, t in enumerate(spec["tensors"]):
                sha, nbytes = rows[t["name"]]
                conn.execute(
                    "INSERT INTO tensors VALUES (?,?,?,?,?,?,?,?)",
                    (name, version, idx, t["name"], json.dumps(t["shape"]), t.get("commitment", ""), sha, nbytes),
                )
            conn.execute("INSERT INTO public_blobs VALUES (?,?,?,?)", (name, version, "tokenizer", spec["tokenizer"]))
            conn.execute("DELETE FROM upload_tensors WHERE upload=?", (uid,))
            conn.execute("DELETE FROM uploads WHERE id=?", (uid,))
        self.audit.append(
            f"{self.k}.publish", asset=f"{name}@{version}", requester=principal, bytes_in=total, detail={"tensors": len(rows)}
        )
        return {"name": name, "version": version, "bytes": total}

    def abort(self, uid: str, principal: str | None, reason: str = "aborted") -> None:
        if principal is not None:
            name, version, _ = self._upload(uid, principal)
        else:
            rows = self.db.query("SELECT asset, version, principal FROM uploads WHERE id=?", (uid,))
            if not rows:
                return
            name, version, principal = rows[0]
        self.store.delete_tree(f"staging/{uid}")
        with self.db.tx() as conn:
            conn.execute("DELETE FROM upload_tensors WHERE upload=?", (uid,))
            conn.execute("DELETE FROM uploads WHERE id=?", (uid,))
        self.audit.append(
            f"{self.k}.upload.abort", asset=f"{name}@{version}", requester=principal, status="aborted", detail={"reason": reason}
        )

    def reap_uploads(self, max_idle_s: float) -> int:
        cutoff = time.time() - max_idle_s
        stale = [r[0] for r in self.db.query("SELECT id FROM uploads WHERE touched < ?", (cutoff,))]
        for uid in stale:
            self.abort(uid, None, "idle timeout")
        return len(stale)

    def recover(self) -> None:
        """At start: uploads never survive a restart; stray staging files go."""
        for (uid,) in self.db.query("SELECT id FROM uploads"):
            self.abort(uid, None, "node restarted")
        staging = self.store.root / "staging"
        if staging.exists():
            shutil.rmtree(staging)

    # ------------------------------------------------------------ registry

    def list(self, principal: str) -> list[dict]:
        rows = self.db.query(
            "SELECT name, version, kind, owner, created, size_bytes, config FROM assets WHERE state='ready' AND asset_kind=? ORDER BY name, version",
            (self.k,),
        )
        out = []
        for name, version, kind, owner, created, size, config in rows:
            if principal in (owner, ADMIN) or self.can_use(principal, name):
                cfg = json.loads(config)
                out.append(
                    {
                        **self.fields(name),
                        "version": version,
                        "kind": kind,
                        "created": created,
                        "share_bytes": size,
                        "params": cfg.get("n_params"),
                        "architecture": cfg.get("family", kind),
                    }
                )
        return out

    def show(self, principal: str, name: str, version: int | None = None) -> dict:
        check_asset_name(name, self.k)
        self._visible(principal, name)
        version = self.resolve_version(name, version)
        kind, owner, created, size, config = self.db.query(
            "SELECT kind, owner, created, size_bytes, config FROM assets WHERE name=? AND version=?", (name, version)
        )[0]
        tensors = [
            {"name": n, "shape": json.loads(s), "commitment": c, "share_sha256": h, "bytes": b}
            for n, s, c, h, b in self.db.query(
                "SELECT name, shape, commitment, share_sha256, bytes FROM tensors WHERE asset=? AND version=? ORDER BY idx", (name, version)
            )
        ]
        versions = [r[0] for r in self.db.query("SELECT version FROM assets WHERE name=? AND state='ready' ORDER BY version", (name,))]
        info = {
            **self.fields(name),
            "version": version,
            "versions": versions,
            "kind": kind,
            "created": created,
            "share_bytes": size,
            "config": json.loads(config),
            "tensors": tensors,
        }
        if principal == owner:
            grants = self.db.query("SELECT principal, scope FROM grants WHERE asset=? ORDER BY principal", (name,))
            info["grants"] = [p for p, _ in grants]
            info["grant_scopes"] = {p: scope or "all" for p, scope in grants}
        return info

    def tokenizer(self, principal: str, name: str, version: int | None = None) -> str:
        check_asset_name(name, self.k)
        self._visible(principal, name)
        version = self.resolve_version(name, version)
        return self.db.query("SELECT value FROM public_blobs WHERE asset=? AND version=? AND key='tokenizer'", (name, version))[0][0]

    def public_tokenizer(self, name: str, version: int) -> str | None:
        """The tokenizer JSON published with an asset version (None: no such version)."""
        rows = self.db.query("SELECT value FROM public_blobs WHERE asset=? AND version=? AND key='tokenizer'", (name, version))
        return rows[0][0] if rows else None

    def tensor_specs(self, name: str, version: int) -> list[tuple[str, tuple[int, ...]]]:
        return [
            (n, tuple(json.loads(s)))
            for n, s in self.db.query("SELECT name, shape FROM tensors WHERE asset=? AND version=? ORDER BY idx", (name, version))
        ]

    def config(self, name: str, version: int) -> dict:
        return json.loads(self.db.query("SELECT config FROM assets WHERE name=? AND version=?", (name, version))[0][0])

    def store_key(self, name: str, version: int, tensor: str) -> tuple[str, str]:
        return self._key(name, version, tensor), self._aad(name, version, tensor)

    def remove(self, principal: str, name: str, version: int | None = None) -> list[int]:
        check_asset_name(name, self.k)
        self._require_owner(principal, name)
        if version is None:
            versions = [r[0] for r in self.db.query("SELECT version FROM assets WHERE name=?", (name,))]
        else:
            versions = [self.resolve_version(name, version)]
        for v in versions:
            with self.db.tx() as conn:
                conn.execute("DELETE FROM assets WHERE name=? AND version=?", (name, v))
                conn.execute("DELETE FROM tensors WHERE asset=? AND version=?", (name, v))
                conn.execute("DELETE FROM public_blobs WHERE asset=? AND version=?", (name, v))
            self.store.delete_tree(self._key(name, v))
            self.audit.append(f"{self.k}.remove", asset=f"{name}@{v}", requester=principal)
        if not self.db.query("SELECT 1 FROM assets WHERE name=?", (name,)):
            with self.db.tx() as conn:
                conn.execute("DELETE FROM grants WHERE asset=?", (name,))
            self.store.delete_tree(f"{self.k}s/{name}")
        return versions

    def grant(self, principal: str, name: str, to: str, scope: str | None = None) -> None:
        """Let ``to`` use ``name``: for every use, or (``scope``) for one of the kind's
        grant scopes only; a new grant replaces the old one."""
        from .auth import check_principal

        check_asset_name(name, self.k)
        check_principal(to)
        if scope is not None and scope not in self.kind.scopes:
            raise InvalidInput(f"{self.k} grant scopes are {', '.join(self.kind.scopes) or 'none'}; got {scope!r}")
        self._require_owner(principal, name)
        with self.db.tx() as conn:
            conn.execute("INSERT OR REPLACE INTO grants VALUES (?,?,?,?,?)", (name, to, principal, time.time(), scope or ""))
        detail = {"to": to, **({"scope": scope} if scope else {})}
        self.audit.append(f"{self.k}.grant", asset=name, requester=principal, detail=detail)

    def revoke(self, principal: str, name: str, to: str) -> bool:
        check_asset_name(name, self.k)
        self._require_owner(principal, name)
        with self.db.tx() as conn:
            cur = conn.execute("DELETE FROM grants WHERE asset=? AND principal=?", (name, to))
        self.audit.append(f"{self.k}.revoke", asset=name, requester=principal, detail={"from": to})
        return cur.rowcount > 0
