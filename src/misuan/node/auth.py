"""Who is asking: signed requests checked against registered public keys.

Each node keeps its own table of principals (name → Ed25519 public key). The
``admin`` principal's public key comes from the node's own config
(``admin_key`` in ``node.toml``); the admin registers every other principal's
public key on every node. A name, once registered, stays bound to its key: it
can be revoked (by the admin or by the principal itself) but never re-bound,
so ownership and grants, which name principals, follow keys. No node holds a
secret that would let it, or its operator, sign as anyone.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import threading
import time

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from ..errors import AuthError, Conflict, InvalidInput, NotFound, PermissionDenied
from ..identity import (
    ADMIN,
    MAX_SKEW_S,
    RESERVED,
    check_principal,
    parse_authorization,
    parse_public_key,
    signed_message,
    verify_signature,
)
from .audit import AuditLog
from .db import Database

__all__ = ["ADMIN", "Authenticator", "BodyHash"]

_HEX64 = re.compile(r"^[0-9a-f]{64}$")


class BodyHash:
    """SHA-256 of a streamed body, checked against the signed one at the end."""

    def __init__(self, declared: str):
        self.declared = declared
        self._h = hashlib.sha256()

    def update(self, chunk: bytes) -> None:
        self._h.update(chunk)

    def check(self) -> None:
        if not hmac.compare_digest(self._h.hexdigest(), self.declared):
            raise AuthError("request body does not match its signature")


class Authenticator:
    def __init__(self, db: Database, audit: AuditLog, party_id: str, admin_key: str):
        self.db = db
        self.audit = audit
        self.party_id = party_id
        self._admin = parse_public_key(admin_key)
        self._seen: dict[tuple[str, str], float] = {}
        self._lock = threading.Lock()

    # ------------------------------------------------------------ requests

    def _key_of(self, name: str) -> Ed25519PublicKey | None:
        if name == ADMIN:
            return self._admin
        rows = self.db.query("SELECT public_key FROM principals WHERE name=? AND revoked IS NULL", (name,))
        return parse_public_key(rows[0][0]) if rows else None

    def verify(self, method: str, target: str, authorization: str | None, declared_sha256: str | None) -> str:
        """The principal that signed this request (headers only), or :class:`AuthError`.

        The caller then checks the body against ``declared_sha256``."""
        req = parse_authorization(authorization)
        if not _HEX64.match(declared_sha256 or ""):
            raise AuthError("missing or malformed request signature")
        now = time.time()
        if abs(now - req.ts) > MAX_SKEW_S:
            raise AuthError(f"request time is more than {MAX_SKEW_S} s off this node's clock")
        key = self._key_of(req.principal)
        message = signed_message(self.party_id, method, target, declared_sha256, req.ts, req.nonce)
        if key is None or not verify_signature(key, req.signature, message):
            raise AuthError("invalid request signature")
        with self._lock:
            if (req.principal, req.nonce) in self._seen:
                raise AuthError("replayed request")
            self._seen[(req.principal, req.nonce)] = now
            if len(self._seen) > 4096:
                cutoff = now - 2 * MAX_SKEW_S
                self._seen = {k: t for k, t in self._seen.items() if t >= cutoff}
        return req.principal

    # ------------------------------------------------------------ registry

    def register(self, by: str, name: str, public_key: str) -> dict:
        """Bind ``name`` to ``public_key`` on this node (the admin only; once per name)."""
        if by != ADMIN:
            raise PermissionDenied("only the cluster admin registers principals")
        check_principal(name)
        if name == ADMIN or name in RESERVED:
            raise InvalidInput(f"the principal name {name!r} is reserved")
        parse_public_key(public_key)
        rows = self.db.query("SELECT public_key, revoked FROM principals WHERE name=?", (name,))
        if rows:
            if rows[0][0] == public_key and rows[0][1] is None:
                return {"principal": name, "public_key": public_key, "created": False}
            raise Conflict(f"principal {name!r} is already registered (names stay bound to their first key)")
        with self.db.tx() as conn:
            conn.execute("INSERT INTO principals VALUES (?,?,?,?,NULL)", (name, public_key, by, time.time()))
        self.audit.append("principal.register", asset=name, requester=by, detail={"public_key": public_key})
        return {"principal": name, "public_key": public_key, "created": True}

    def revoke(self, by: str, name: str) -> dict:
        """Revoke ``name``'s key (the admin, or the principal itself)."""
        if by != ADMIN and by != name:
            raise PermissionDenied("only the cluster admin or the principal itself revokes a key")
        rows = self.db.query("SELECT revoked FROM principals WHERE name=?", (name,))
        if not rows:
            raise NotFound(f"unknown principal {name!r}")
        if rows[0][0] is None:
            with self.db.tx() as conn:
                conn.execute("UPDATE principals SET revoked=? WHERE name=?", (time.time(), name))
            self.audit.append("principal.revoke", asset=name, requester=by)
        return {"principal": name, "revoked": True}

    def list(self, by: str) -> list[dict]:
        """Registered principals: all for the admin, oneself for anyone else."""
        sql = "SELECT name, public_key, created, revoked FROM principals"
        rows = self.db.query(sql + " ORDER BY name") if by == ADMIN else self.db.query(sql + " WHERE name=?", (by,))
        return [{"principal": n, "public_key": k, "created": c, "revoked": r is not None} for n, k, c, r in rows]
