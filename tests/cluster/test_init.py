import stat

import pytest

from misuan.cluster.init import init_cluster
from misuan.config import load_cluster, load_node
from misuan.errors import ClusterError, ConfigError
from misuan.identity import load_identity
from misuan.pki import check_node_cert, make_node_cert


def _mode(p):
    return stat.S_IMODE(p.stat().st_mode)


def test_init_writes_a_complete_tls_cluster(tmp_path):
    res = init_cluster(tmp_path / "c", parties=3, tls=True)
    d = res.dir
    assert res.protocol == "ABY3" and res.tls
    cfg = load_cluster(d / "cluster.toml")
    ports = set()
    for p in cfg.parties:
        ports.add(p.control_port)
        ports.update(range(p.link_ports[0], p.link_ports[1] + 1))
        node = load_node(d / f"node{p.rank}" / "node.toml")
        check_node_cert(node.tls_cert, node.tls_key, cfg.ca_cert, p)
        for secret in ("storage.key", "tls/node.key", "node.toml"):
            assert _mode(d / f"node{p.rank}" / secret) == 0o600, secret
        assert node.admin_key == load_identity(d / "admin.key").public_key
    assert len(ports) == 3 * 17  # no port shared between parties
    assert _mode(d / "admin.key") == 0o600
    # no shared secret and no CA key anywhere: every node's keys are its own
    assert not list(d.rglob("*.secret")) and not list(d.rglob("ca.key"))
    keys = [(d / f"node{i}" / n).read_bytes() for i in range(3) for n in ("storage.key", "tls/node.key")]
    assert len(set(keys)) == 6


def test_two_parties_default_to_cheetah(tmp_path):
    assert init_cluster(tmp_path / "c2", parties=2).protocol == "CHEETAH"


def test_refuses_to_overwrite(tmp_path):
    init_cluster(tmp_path / "c", parties=3)
    with pytest.raises(ClusterError, match="already exists"):
        init_cluster(tmp_path / "c", parties=3)


def test_bad_protocol_party_combination(tmp_path):
    with pytest.raises(ClusterError, match="ABY3 needs 3"):
        init_cluster(tmp_path / "c", parties=2, protocol="ABY3")


def test_remote_hosts_default_to_tls(tmp_path):
    res = init_cluster(tmp_path / "r", parties=3, hosts=["10.0.0.1", "10.0.0.2", "10.0.0.3"])
    assert res.tls
    # the multi-host path writes only the public cluster file: no node's keys
    assert sorted(p.name for p in (tmp_path / "r").rglob("*")) == ["cluster.toml"]
    with pytest.raises(ClusterError, match="need TLS"):
        init_cluster(tmp_path / "r2", parties=3, hosts=["10.0.0.1", "10.0.0.2", "10.0.0.3"], tls=False)


def test_certificate_outside_the_trust_bundle_is_refused(tmp_path):
    init_cluster(tmp_path / "c", parties=3, tls=True)
    d = tmp_path / "c"
    make_node_cert(d / "node1/tls/node.pem", d / "node1/tls/node.key", "node1", ["127.0.0.1"])
    cfg = load_node(d / "node1" / "node.toml")
    with pytest.raises(ConfigError, match="not in the cluster's trust bundle"):
        check_node_cert(cfg.tls_cert, cfg.tls_key, cfg.cluster.ca_cert, cfg.party)


def test_mismatched_key_is_refused(tmp_path):
    init_cluster(tmp_path / "c", parties=3, tls=True)
    d = tmp_path / "c"
    (d / "node0/tls/node.key").write_bytes((d / "node1/tls/node.key").read_bytes())
    cfg = load_node(d / "node0" / "node.toml")
    with pytest.raises(ConfigError, match="does not match"):
        check_node_cert(cfg.tls_cert, cfg.tls_key, cfg.cluster.ca_cert, cfg.party)


def test_port_blocks_avoid_the_ephemeral_range():
    """Outgoing connections take local ports from the ephemeral range at random;
    a node's ports there could be busy when it restarts."""
    from misuan.cluster.init import ephemeral_port_range, find_port_block

    eph_lo, eph_hi = ephemeral_port_range()
    for _ in range(20):
        base = find_port_block(9)
        assert base + 8 < eph_lo or base > eph_hi, (base, eph_lo, eph_hi)
