from pathlib import Path

import pytest
import tomli_w
import tomllib

from misuan.cluster.init import init_cluster
from misuan.config import load_cluster, load_node
from misuan.errors import ConfigError


def _rewrite(path: Path, fn) -> None:
    doc = tomllib.loads(path.read_text())
    fn(doc)
    path.write_text(tomli_w.dumps(doc))


@pytest.fixture()
def cdir(tmp_path):
    init_cluster(tmp_path / "c", parties=3)
    return tmp_path / "c"


def test_roundtrip(cdir):
    cfg = load_cluster(cdir / "cluster.toml")
    assert cfg.world_size == 3 and cfg.mpc.protocol == "ABY3" and cfg.mpc.field == "FM64"
    node = load_node(cdir / "node1" / "node.toml")
    assert node.rank == 1 and node.party.id == "node1"
    assert cfg.default_identity().principal == "admin"
    assert node.admin_key == cfg.default_identity().public_key


def test_wrong_protocol_for_party_count(cdir):
    _rewrite(cdir / "cluster.toml", lambda d: d["cluster"].update(protocol="CHEETAH"))
    with pytest.raises(ConfigError, match="CHEETAH needs 2 parties"):
        load_node(cdir / "node0" / "node.toml")


def test_unknown_protocol(cdir):
    _rewrite(cdir / "cluster.toml", lambda d: d["cluster"].update(protocol="NOPE"))
    with pytest.raises(ConfigError, match="unknown protocol"):
        load_cluster(cdir / "cluster.toml")


def test_missing_party_key(cdir):
    _rewrite(cdir / "cluster.toml", lambda d: d["parties"][1].pop("link_ports"))
    with pytest.raises(ConfigError, match="missing key 'link_ports'"):
        load_cluster(cdir / "cluster.toml")


def test_tls_with_missing_cert(tmp_path):
    init_cluster(tmp_path / "t", parties=3, tls=True)
    (tmp_path / "t" / "node2" / "tls" / "node.pem").unlink()
    with pytest.raises(ConfigError, match="TLS certificate .* is missing"):
        load_node(tmp_path / "t" / "node2" / "node.toml")


def test_tls_with_missing_ca(tmp_path):
    init_cluster(tmp_path / "t", parties=3, tls=True)
    (tmp_path / "t" / "pki" / "nodes.pem").unlink()
    with pytest.raises(ConfigError, match="trust bundle .* is missing"):
        load_cluster(tmp_path / "t" / "cluster.toml")


def test_remote_hosts_need_tls(cdir):
    _rewrite(cdir / "cluster.toml", lambda d: d["parties"][0].update(link_host="10.0.0.5"))
    with pytest.raises(ConfigError, match="must use TLS"):
        load_node(cdir / "node0" / "node.toml")


def test_non_tls_node_listening_beyond_loopback_is_refused(cdir):
    """Without TLS, signed requests and shares would cross the network in clear."""
    for host in ("0.0.0.0", "10.0.0.5"):
        _rewrite(cdir / "node0" / "node.toml", lambda d, h=host: d["node"].update(listen_host=h))
        with pytest.raises(ConfigError, match="must use TLS"):
            load_node(cdir / "node0" / "node.toml")


def test_bad_admin_key(cdir):
    _rewrite(cdir / "node0" / "node.toml", lambda d: d["node"].update(admin_key="ed25519:short"))
    with pytest.raises(ConfigError, match="admin_key"):
        load_node(cdir / "node0" / "node.toml")


def test_key_file_permissions(cdir):
    (cdir / "node0" / "storage.key").chmod(0o644)
    with pytest.raises(ConfigError, match="chmod 600"):
        load_node(cdir / "node0" / "node.toml")


def test_not_toml(tmp_path):
    p = tmp_path / "bad.toml"
    p.write_text("this is = = not toml")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_cluster(p)


def test_compute_threads_auto_shares_the_host_among_its_parties(cdir):
    node = load_node(cdir / "node0" / "node.toml")
    assert node.compute_threads == 0  # auto
    # three parties on one loopback host: SPU's 4 threads each would oversubscribe
    assert node.compute_threads_or_auto(cpu_count=2) == 1
    assert node.compute_threads_or_auto(cpu_count=6) == 2
    assert node.compute_threads_or_auto(cpu_count=64) == 4  # never above SPU's own 4


def test_compute_threads_explicit_and_invalid(cdir):
    path = cdir / "node0" / "node.toml"
    _rewrite(path, lambda d: d["node"].update(compute_threads=3))
    assert load_node(path).compute_threads_or_auto(cpu_count=2) == 3
    _rewrite(path, lambda d: d["node"].update(compute_threads=-1))
    with pytest.raises(ConfigError, match="compute_threads"):
        load_node(path)
