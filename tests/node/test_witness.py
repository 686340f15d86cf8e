"""Signed audit heads, receipts and cross-records, in-process (the cluster test is
tests/security/test_audit_tamper.py)."""

import json

import pytest
from fastapi.testclient import TestClient

from misuan.audit_heads import SignedHead
from misuan.client.transport import SignRequests
from misuan.cluster.init import init_cluster
from misuan.errors import IntegrityError
from misuan.identity import load_identity
from misuan.node.app import create_app
from misuan.node.audit_verify import verify_cluster
from tests.conftest import node_service


def _services(d):
    init_cluster(d, parties=3)
    return [node_service(d, r) for r in (0, 1)]


@pytest.fixture(scope="module")
def two(tmp_path_factory):
    d = tmp_path_factory.mktemp("witness")
    svcs = _services(d)
    with TestClient(create_app(svcs[0]), base_url="http://127.0.0.1") as tc:
        tc.auth = SignRequests(load_identity(d / "admin.key"), "node0")
        yield d, tc, svcs
    svcs[1].db.close()


def _rows(svc, op):
    return svc.db.query("SELECT status, detail FROM audit WHERE op=? ORDER BY seq", (op,))


def test_head_needs_no_principal_and_is_signed(two):
    d, tc, svcs = two
    body = tc.get("/v1/audit/head", auth=None).json()
    assert body["public_key"] == (d / "node0" / "audit.pub").read_text().strip()
    assert (d / "node0" / "audit.key").stat().st_mode & 0o777 == 0o600
    head = SignedHead("misuan", "node0", body["seq"], body["hash"], body["ts_ms"], body["signature"])
    head.verify(body["public_key"])
    assert (body["seq"], body["hash"]) == svcs[0].audit.head()
    with pytest.raises(IntegrityError):  # bound to the party: not node1's head
        SignedHead("misuan", "node1", body["seq"], body["hash"], body["ts_ms"], body["signature"]).verify(body["public_key"])


def test_every_answer_carries_a_receipt_covering_its_rows(two):
    _, tc, svcs = two
    r = tc.post("/v1/sessions", json={"session_id": "receipt0001", "kind": "run"})
    assert r.status_code == 201
    head = SignedHead.from_receipt("misuan", "node0", r.headers["x-misuan-receipt"])
    head.verify(svcs[0].signer.public_key)
    opened = svcs[0].db.query("SELECT seq FROM audit WHERE op='session.open' ORDER BY seq DESC LIMIT 1")[0][0]
    assert head.seq >= opened
    assert "x-misuan-receipt" not in tc.get("/v1/status", auth=None, headers={"Authorization": "Bearer admin.bad"}).headers
    tc.delete("/v1/sessions/receipt0001")


def test_peer_heads_are_recorded_once_pinned_and_checked(two):
    _, _, (s0, s1) = two
    w, peer = s0.witness, s0.cfg.cluster.party(1)
    s1.audit.append("session.open", requester="admin")
    assert w.observe(peer, s1.witness.head_view())
    assert not w.observe(peer, s1.witness.head_view())  # nothing new: no row
    s1.audit.append("audit.peer_head", requester="system")  # only a peer-head row since: no row either
    assert not w.observe(peer, s1.witness.head_view())
    [(status, detail)] = _rows(s0, "audit.peer_key")
    assert json.loads(detail)["public_key"] == s1.signer.public_key
    forged = {**s1.witness.head_view(), "seq": 10**6, "last_op_seq": 10**6}
    assert not w.observe(peer, forged)  # the signature does not cover seq 10**6
    other = {**s1.witness.head_view(), "public_key": "ab" * 32}
    assert not w.observe(peer, other)  # a changed key is refused and flagged
    flagged = [json.loads(d) for st, d in _rows(s0, "audit.peer_head") if st == "inconsistent"]
    assert {"reason"} <= flagged[0].keys() and flagged[1]["pinned"] == s1.signer.public_key


def test_verify_blames_a_recorder_that_forges_a_peer_head(tmp_path):
    d = tmp_path
    s0, s1 = _services(d)
    s1.audit.append("session.open", requester="admin")
    assert s0.witness.observe(s0.cfg.cluster.party(1), s1.witness.head_view())
    assert all(r.ok for r in verify_cluster(d)), [r.reason for r in verify_cluster(d)]
    # node 0's operator invents a head of node 1 (cannot sign it)
    s0.audit.append(
        "audit.peer_head",
        asset="party:node1",
        requester="system",
        detail={"peer": "node1", "seq": 1, "hash": "f" * 64, "ts_ms": 1, "signature": "AAAA"},
    )
    reps = {r.party: r for r in verify_cluster(d)}
    assert not reps["node0"].ok and "did not sign" in reps["node0"].reason and reps["node1"].ok
    for s in (s0, s1):
        s.db.close()


def test_client_refuses_a_changed_node_key(two, tmp_path):
    from misuan.client.receipts import ReceiptBook
    from misuan.config import load_cluster

    d, _, (s0, _) = two
    cfg = load_cluster(d / "cluster.toml")
    book = ReceiptBook(cfg, tmp_path / "r")
    book.record(cfg.party(0), s0.witness.signed_head().receipt(), lambda: s0.signer.public_key)
    from misuan.audit_heads import HeadSigner

    impostor = HeadSigner(tmp_path, "misuan", "node0")  # another key claiming to be node0
    with pytest.raises(IntegrityError, match="pinned"):
        book.record(cfg.party(0), impostor.sign(99, "a" * 64, 1).receipt(), lambda: impostor.public_key)
    assert ReceiptBook(cfg, tmp_path / "r")._key(cfg.party(0), lambda: impostor.public_key) == s0.signer.public_key
