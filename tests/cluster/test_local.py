"""Local cluster tooling on real processes: up/down idempotence, ports, refusals."""

import socket
import subprocess
import sys

import numpy as np
import psutil
import pytest

from misuan.cluster.init import init_cluster
from misuan.cluster.local import down, local_cluster, status, up
from misuan.config import load_cluster
from misuan.errors import ClusterError
from tests.conftest import FAST


def _pids(d):
    return sorted(int(p.read_text()) for p in d.glob("node*/node.pid"))


def _alive_descendants(pids):
    out = []
    for pid in pids:
        try:
            proc = psutil.Process(pid)
            out += [proc, *proc.children(recursive=True)]
        except psutil.NoSuchProcess:
            pass
    return [p for p in out if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]


def test_up_twice_down_twice(tmp_path):
    d = tmp_path / "c"
    first = up(d, timeouts=FAST)
    assert all(s.healthy and s.started_now for s in first)
    pids = _pids(d)
    tree = _alive_descendants(pids)
    assert len(tree) >= 6  # 3 nodes + their worker zygotes
    second = up(d)
    assert not any(s.started_now for s in second) and _pids(d) == pids
    rows = status(d)
    assert all(r["healthy"] for r in rows) and {r["protocol"] for r in rows} == {"ABY3"}
    down(d)
    psutil.wait_procs(tree, timeout=10)
    assert _alive_descendants(pids) == []  # no process left behind
    again = down(d)
    assert all(s.note == "was not running" for s in again)


def test_port_in_use_is_moved(tmp_path):
    d = tmp_path / "c"
    init_cluster(d, parties=3, timeouts=FAST)
    cfg = load_cluster(d / "cluster.toml")
    busy = cfg.party(1).control_port
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", busy))
        s.listen()
        try:
            states = up(d)
            assert f"port {busy} was in use" in states[1].note
            assert load_cluster(d / "cluster.toml").party(1).control_port != busy
        finally:
            down(d)


def _serve(node_toml):
    return subprocess.run(
        [sys.executable, "-m", "misuan", "node", "serve", "--config", str(node_toml)],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_node_refuses_bad_configs(tmp_path):
    d = tmp_path / "c"
    init_cluster(d, parties=3, tls=True)
    # wrong protocol for the party count
    text = (d / "cluster.toml").read_text()
    (d / "cluster.toml").write_text(text.replace('protocol = "ABY3"', 'protocol = "CHEETAH"'))
    r = _serve(d / "node0" / "node.toml")
    assert r.returncode != 0 and "refuses to start" in r.stderr and "CHEETAH needs 2 parties" in r.stderr
    (d / "cluster.toml").write_text(text)
    # a missing certificate
    (d / "node1" / "tls" / "node.pem").rename(d / "node1" / "tls" / "moved.pem")
    r = _serve(d / "node1" / "node.toml")
    assert r.returncode != 0 and "TLS certificate" in r.stderr and "missing" in r.stderr
    # a wrong storage key after the store was created
    from misuan.node.store import ShareStore, create_key_file

    ShareStore(d / "node2" / "shares", d / "node2" / "storage.key").ensure_key_check()
    (d / "node2" / "storage.key").unlink()
    create_key_file(d / "node2" / "storage.key")
    r = _serve(d / "node2" / "node.toml")
    assert r.returncode != 0 and "wrong node key" in r.stderr
    assert "Traceback" not in r.stderr


def test_up_reports_a_node_that_cannot_start(tmp_path):
    d = tmp_path / "c"
    init_cluster(d, parties=3)
    (d / "node1" / "storage.key").chmod(0o644)
    with pytest.raises(ClusterError, match="node 1 failed to start.*chmod 600"):
        up(d)
    assert _pids(d) == []


def test_cheetah_two_parties(tmp_path):
    with local_cluster(2, dir=tmp_path / "c2", timeouts=FAST) as lc:
        client = lc.client()
        assert client.cluster.mpc.protocol == "CHEETAH"
        rng = np.random.default_rng(3)
        x = rng.normal(size=(4, 8)).astype(np.float32)
        w = rng.normal(size=(8, 4)).astype(np.float32)
        y = client.run(lambda a, b: a @ b, x, w)
        np.testing.assert_allclose(y, x @ w, atol=1e-3)


def test_tls_cluster(tmp_path):
    d = tmp_path / "tls"
    with local_cluster(3, dir=d, tls=True, timeouts=FAST) as lc:
        cfg = lc.config
        assert cfg.tls and all(p.control_url.startswith("https://") for p in cfg.parties)
        x = np.arange(12, dtype=np.float32).reshape(3, 4)
        y = lc.client().run(lambda a: a.T @ a, x)
        np.testing.assert_allclose(y, x.T @ x, atol=1e-2)
