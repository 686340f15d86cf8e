"""Signed requests against registered public keys (node/auth.py, misuan/identity.py)."""

import hashlib
import time

import pytest

from misuan.errors import AuthError, ConfigError, Conflict, InvalidInput, PermissionDenied
from misuan.identity import EMPTY_SHA256, load_identity, new_identity
from misuan.node.audit import AuditLog
from misuan.node.auth import Authenticator
from misuan.node.db import Database


@pytest.fixture
def auth(tmp_path):
    db = Database(tmp_path / "state.db")
    admin = new_identity("admin")
    a = Authenticator(db, AuditLog(db), "node0", admin.public_key)
    yield a, admin
    db.close()


def _verify(a, ident, party="node0", method="GET", target="/v1/status", body=EMPTY_SHA256, now=None):
    h = ident.sign_request(party, method, target, body, now=now)
    return a.verify(method, target, h["Authorization"], h["X-Misuan-Content-SHA256"])


def test_admin_and_registered_principals_sign_requests(auth):
    a, admin = auth
    assert _verify(a, admin) == "admin"
    alice = new_identity("alice")
    with pytest.raises(AuthError):
        _verify(a, alice)  # not registered yet
    a.register("admin", "alice", alice.public_key)
    assert _verify(a, alice) == "alice"


def test_a_signature_binds_node_method_path_body_and_time(auth):
    a, admin = auth
    h = admin.sign_request("node0", "GET", "/v1/status", EMPTY_SHA256)
    for method, target, body in (
        ("POST", "/v1/status", EMPTY_SHA256),
        ("GET", "/v1/audit", EMPTY_SHA256),
        ("GET", "/v1/status", hashlib.sha256(b"x").hexdigest()),
    ):
        with pytest.raises(AuthError):
            a.verify(method, target, h["Authorization"], body)
    with pytest.raises(AuthError):  # signed for another node
        _verify(a, admin, party="node1")
    with pytest.raises(AuthError, match="clock"):
        _verify(a, admin, now=time.time() - 3600)


def test_replayed_request_is_refused(auth):
    a, admin = auth
    h = admin.sign_request("node0", "GET", "/v1/status", EMPTY_SHA256)
    assert a.verify("GET", "/v1/status", h["Authorization"], EMPTY_SHA256) == "admin"
    with pytest.raises(AuthError, match="replayed"):
        a.verify("GET", "/v1/status", h["Authorization"], EMPTY_SHA256)


@pytest.mark.parametrize("header", [None, "", "Bearer admin.x", "Misuan admin:1:00:AAAA", "Misuan ../root:1:" + "0" * 24 + ":" + "A" * 86])
def test_malformed_authorization(auth, header):
    with pytest.raises(AuthError):
        auth[0].verify("GET", "/v1/status", header, EMPTY_SHA256)


def test_registry_rules(auth):
    a, _ = auth
    bob = new_identity("bob")
    with pytest.raises(PermissionDenied):
        a.register("bob", "bob", bob.public_key)  # only the admin registers
    for name in ("admin", "system"):
        with pytest.raises(InvalidInput):
            a.register("admin", name, bob.public_key)
    assert a.register("admin", "bob", bob.public_key)["created"]
    assert not a.register("admin", "bob", bob.public_key)["created"]  # idempotent
    with pytest.raises(Conflict):  # a name never moves to another key
        a.register("admin", "bob", new_identity("bob").public_key)
    with pytest.raises(PermissionDenied):
        a.revoke("carol", "bob")
    a.revoke("bob", "bob")  # a principal revokes its own key
    with pytest.raises(AuthError):
        _verify(a, bob)
    with pytest.raises(Conflict):  # not even the admin can re-bind a revoked name
        a.register("admin", "bob", new_identity("bob").public_key)
    assert [r["principal"] for r in a.list("admin")] == ["bob"] and a.list("carol") == []


def test_key_files(tmp_path):
    ident = new_identity("alice")
    path = ident.save(tmp_path / "k" / "alice.key")
    assert path.stat().st_mode & 0o777 == 0o600
    assert load_identity(path).public_key == ident.public_key
    assert "HIDDEN" in repr(ident) and "private" not in repr(ident)
    with pytest.raises(ConfigError, match="overwrite"):
        ident.save(path)
    path.chmod(0o644)
    with pytest.raises(ConfigError, match="chmod 600"):
        load_identity(path)
    (tmp_path / "bad.key").write_text("nonsense")
    (tmp_path / "bad.key").chmod(0o600)
    with pytest.raises(ConfigError, match="not a misuan key file"):
        load_identity(tmp_path / "bad.key")
