"""Issue 18, finding 2: no secret shared by all nodes; operators exchange only certificates.

The attack: an operator reading only its own node directory minted the model
owner's token (one HMAC secret on every node) and used the owner-only verify
program as a weight oracle, logged under the owner's name. Now principals are
key pairs made on their own machines and nodes hold only public keys.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time

import numpy as np
import pytest

import misuan
from misuan.cluster.init import init_cluster, init_node, trust
from misuan.config import load_cluster
from misuan.identity import new_identity
from misuan.sdk import Client
from tests.conftest import FAST, client_as


def test_operator_files_hold_nothing_that_signs_for_a_principal(cluster3):
    """What an operator reads in its node directory: no shared secret, only the
    admin's public key; a key it makes itself is refused for an existing name."""
    node_dir = cluster3.dir / "node1"
    texts = b"".join(p.read_bytes() for p in node_dir.rglob("*") if p.is_file() and p.suffix in (".toml", ".secret", ".key"))
    admin_priv = (cluster3.dir / "admin.key").read_bytes().split(b'private_key = "')[1].split(b'"')[0]
    assert admin_priv not in texts and not list(node_dir.rglob("*.secret"))
    owner = client_as(cluster3, "owner18")
    assert owner.nodes[0].whoami()["principal"] == "owner18"
    forged = Client(cluster3.config, new_identity("owner18"))  # the operator's own key for that name
    for rank in range(3):
        with pytest.raises(misuan.AuthError):
            forged.nodes[rank].list_models()
    forged.close()


def test_revoked_key_is_refused_everywhere(cluster3):
    """One principal's key can be revoked; the name cannot be re-bound."""
    carol = client_as(cluster3, "carol18")
    assert carol.nodes[2].whoami()["principal"] == "carol18"
    carol.fanout(lambda i: carol.nodes[i].revoke_principal("carol18"))  # self-revocation
    for rank in range(3):
        with pytest.raises(misuan.AuthError):
            carol.nodes[rank].whoami()
    admin = cluster3.client()
    with pytest.raises(misuan.Conflict):
        admin.nodes[0].register_principal("carol18", new_identity("carol18").public_key)


def _serve(node_toml, log):
    return subprocess.Popen(
        [sys.executable, "-m", "misuan", "node", "serve", "--config", str(node_toml)],
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=log,
        start_new_session=True,
        env={**os.environ, "JAX_PLATFORMS": "cpu"},
    )


@pytest.mark.cluster
def test_operators_on_separate_hosts_share_only_certificates(tmp_path):
    """The multi-host setup path: the coordinator writes only the public cluster
    file; each operator makes its node's keys in its own directory; only
    certificates travel; the admin key never leaves the admin's directory."""
    admin = new_identity("admin")
    admin.save(tmp_path / "admin" / "admin.key")
    pub = tmp_path / "public"
    init_cluster(pub, parties=3, tls=True, separate=True, timeouts=FAST)
    assert sorted(p.name for p in pub.rglob("*")) == ["cluster.toml"]
    ops = []
    for i in range(3):
        op = tmp_path / f"operator{i}"
        op.mkdir()
        shutil.copy(pub / "cluster.toml", op / "cluster.toml")
        ops.append(init_node(op / "node", op / "cluster.toml", i, admin.public_key, check_files=False))
    # only the certificates travel to the coordinator, and the bundle back
    trust(pub, [tmp_path / f"operator{i}" / "node" / "tls" / "node.pem" for i in range(3)])
    for i in range(3):
        (tmp_path / f"operator{i}" / "pki").mkdir()
        shutil.copy(pub / "pki" / "nodes.pem", tmp_path / f"operator{i}" / "pki" / "nodes.pem")
    private = [(tmp_path / f"operator{i}" / "node" / n).read_bytes() for i in range(3) for n in ("storage.key", "tls/node.key")]
    assert len(set(private)) == 6
    procs = [_serve(ops[i], open(tmp_path / f"node{i}.log", "ab")) for i in range(3)]
    try:
        cfg = load_cluster(pub / "cluster.toml")
        with Client(cfg, admin) as c:
            deadline = time.monotonic() + 90
            while True:
                try:
                    c.fanout(lambda i: c.nodes[i].health())
                    break
                except misuan.MisuanError:
                    assert time.monotonic() < deadline, "nodes did not come up"
                    time.sleep(0.3)
            alice = new_identity("alice")  # made on alice's machine; only the public key moves
            c.fanout(lambda i: c.nodes[i].register_principal("alice", alice.public_key))
        with Client(cfg, alice) as a:
            assert np.allclose(a.run(lambda x: x * 2.0, np.arange(4, dtype=np.float32)), np.arange(4) * 2.0, atol=1e-3)
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(15)
            except subprocess.TimeoutExpired:
                p.kill()


def test_principal_routes_are_the_admins_and_scoped(cluster3):
    """The registry routes as an attacker: a registered principal cannot register or
    revoke anyone else, sees only itself, and malformed registrations are 4xx."""
    dave = client_as(cluster3, "dave18")
    victim = client_as(cluster3, "erin18")
    for rank in range(3):
        node = dave.nodes[rank]
        with pytest.raises(misuan.PermissionDenied):
            node.register_principal("mallet18", new_identity("mallet18").public_key)
        with pytest.raises(misuan.PermissionDenied):
            node.revoke_principal("erin18")
        assert [p["principal"] for p in node.principals()] == ["dave18"]
        assert node.whoami() == {"principal": "dave18", "party": cluster3.config.party(rank).id}
    assert victim.nodes[0].whoami()["principal"] == "erin18"  # untouched
    admin = cluster3.client()
    for body in (
        {"principal": "Bad Name", "public_key": new_identity("x").public_key},
        {"principal": "okname", "public_key": "ed25519:short"},
        {"principal": "okname", "public_key": new_identity("x").public_key, "extra": 1},
    ):
        with pytest.raises(misuan.InvalidInput):
            admin.nodes[0]._request("POST", "/v1/principals", json=body)
    with pytest.raises(misuan.NotFound):
        admin.nodes[0].revoke_principal("nobody18")
