"""Faults on a real cluster: nodes down, killed mid-run, silent; recovery."""

import os
import signal
import threading
import time

import jax
import numpy as np
import pytest

import misuan
from misuan.cluster.local import up
from tests.conftest import FAST


def heavy(x):
    for _ in range(60):
        x = jax.nn.softmax(x @ x.T, axis=-1)
    return x


X = np.random.default_rng(0).normal(size=(48, 48)).astype(np.float32)


@pytest.fixture(scope="module")
def faulty(tmp_path_factory):
    from misuan.cluster.local import local_cluster

    with local_cluster(3, dir=tmp_path_factory.mktemp("faults"), timeouts=FAST) as lc:
        yield lc


def _pid(lc, rank):
    return int((lc.dir / f"node{rank}" / "node.pid").read_text())


def _sessions(client, ranks):
    return [len(client.nodes[r].status()["sessions"]) for r in ranks]


def _wait_free(client, ranks, timeout=15):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if _sessions(client, ranks) == [0] * len(ranks):
            return True
        time.sleep(0.2)
    return False


def _small_run_ok(client):
    x = np.arange(6, dtype=np.float32).reshape(2, 3)
    np.testing.assert_allclose(client.run(lambda a: a * 3.0, x), x * 3, atol=1e-3)


def test_node_down_then_back(faulty):
    client = faulty.client()
    os.kill(_pid(faulty, 2), signal.SIGKILL)
    time.sleep(0.5)
    t0 = time.monotonic()
    with pytest.raises(misuan.NodeUnavailable, match="node 2") as exc:
        client.run(lambda a: a + 1.0, np.zeros(2, np.float32))
    assert exc.value.party == 2
    assert time.monotonic() - t0 < FAST.http_connect_s + 5
    assert _wait_free(client, [0, 1])  # nothing left behind on the others
    up(faulty.dir)  # restarts node 2 only
    _small_run_ok(client)


def test_node_killed_mid_run(faulty):
    client = faulty.client()
    pid = _pid(faulty, 1)
    threading.Timer(3.0, os.kill, (pid, signal.SIGKILL)).start()
    t0 = time.monotonic()
    with pytest.raises(misuan.NodeError, match="node 1"):
        client.run(heavy, X)
    elapsed = time.monotonic() - t0
    assert elapsed < 3.0 + FAST.link_recv_ms / 1000 + 10, elapsed
    assert _wait_free(client, [0, 2]), "other nodes did not release the session"
    up(faulty.dir)
    _small_run_ok(client)


def test_silent_node_mid_run_is_named(faulty):
    """A node that stops answering (SIGSTOP) is named once the link times out."""
    client = faulty.client()
    pid = _pid(faulty, 2)
    workers = []

    def freeze():
        import psutil

        proc = psutil.Process(pid)
        for p in [proc, *proc.children(recursive=True)]:
            workers.append(p)
            p.suspend()

    frozen_at = []

    def freeze_when_running():
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if any(s["state"] == "running" for s in client.nodes[0].status()["sessions"]):
                time.sleep(0.5)
                freeze()
                frozen_at.append(time.monotonic())
                return
            time.sleep(0.05)

    threading.Thread(target=freeze_when_running, daemon=True).start()
    try:
        with pytest.raises(misuan.NodeError, match="node 2"):
            client.run(heavy, X)
        assert frozen_at, "the run ended before the node could be frozen"
        assert time.monotonic() - frozen_at[0] < FAST.link_recv_ms / 1000 + 15
    finally:
        import psutil

        for p in workers:
            try:
                p.resume()
            except psutil.NoSuchProcess:  # a frozen worker killed meanwhile (its session was cancelled)
                pass
    assert _wait_free(client, [0, 1])
    _small_run_ok(client)
