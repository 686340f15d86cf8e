"""Client.run on a real 3-party ABY3 cluster (separate node processes, SPU brpc links)."""

import jax
import jax.numpy as jnp
import numpy as np
import psutil
import pytest

import misuan
from misuan.errors import InvalidInput, NotFound


def softmax_matmul(x, w):
    return jax.nn.softmax(x @ w, axis=-1)


def test_run_matches_plaintext(client3):
    rng = np.random.default_rng(1)
    x = rng.normal(size=(8, 32)).astype(np.float32)
    w = (rng.normal(size=(32, 16)) / 6).astype(np.float32)
    y, stats = client3.run_with_stats(softmax_matmul, x, w)
    ref = np.asarray(softmax_matmul(x, w))
    assert y.shape == (8, 16)
    np.testing.assert_allclose(y, ref, atol=5e-3)
    assert stats.send_bytes > 0 and stats.rounds > 0


def test_nodes_are_separate_processes(client3):
    pids = [s["pid"] for s in client3.status()]
    assert len(set(pids)) == 3
    assert all(psutil.pid_exists(p) for p in pids)
    import os

    assert os.getpid() not in pids


def test_pytrees_and_several_outputs(client3):
    def f(params, x):
        h = x @ params["w"] + params["b"]
        return {"relu": jnp.maximum(h, 0), "sum": jnp.sum(h)}

    rng = np.random.default_rng(2)
    params = {"w": rng.normal(size=(4, 3)).astype(np.float32), "b": np.ones(3, np.float32)}
    x = rng.normal(size=(5, 4)).astype(np.float32)
    out = client3.run(f, params, x)
    ref = f(params, x)
    np.testing.assert_allclose(out["relu"], ref["relu"], atol=1e-3)
    np.testing.assert_allclose(out["sum"], ref["sum"], atol=1e-2)


def test_bad_function_is_a_clear_error(client3):
    with pytest.raises(InvalidInput, match="cannot compile"):
        client3.run(lambda a, b: a @ b, np.ones((2, 3)), np.ones((2, 3)))


def test_unknown_variable_is_404(client3):
    with client3.session() as s:
        with pytest.raises(NotFound, match="unknown variable"):
            s.get("never_set")


def test_unknown_session_is_404(client3):
    with pytest.raises(NotFound):
        client3.nodes[0].get_var("abcdefghijkl", "out0")


def test_node0_never_sees_the_input(client3, cluster3):
    """What node 0 receives and stores for a known input is not that input."""
    x = np.array([[1234.5, -42.25, 3.0, 7.75]] * 16, np.float32)
    fxp = np.round(x.astype(np.float64) * (1 << 18)).astype(np.int64)
    sent: list[bytes] = []
    http = client3.nodes[0]._http
    http.event_hooks["request"].append(lambda req: sent.append(req.read()))
    try:
        y = client3.run(lambda a: a * 2.0, x)
    finally:
        http.event_hooks["request"].clear()
    np.testing.assert_allclose(y, x * 2, atol=1e-3)
    body = b"".join(sent)
    assert len(body) > x.nbytes  # node 0 did receive its share
    for needle in (x.tobytes(), x[0].tobytes(), fxp[0].tobytes(), np.float16(1234.5).tobytes() * 2):
        assert needle not in body
    for f in (cluster3.dir / "node0").rglob("*"):
        if f.is_file():
            raw = f.read_bytes()
            assert x[0].tobytes() not in raw and fxp[0].tobytes() not in raw, f


def test_status_and_audit(client3, cluster3):
    from misuan.node.audit import verify_chain

    client3.run(lambda a: a + 1.0, np.zeros(3, np.float32))
    for st in client3.status():
        assert st["protocol"] == "ABY3" and st["uptime_s"] >= 0 and st["rss_bytes"] > 0
        assert [s for s in st["sessions"] if s["kind"] == "run"] == []  # every client session was freed
    for rank in range(3):
        rep = verify_chain(cluster3.dir / f"node{rank}" / "state.db")
        assert rep.ok and rep.rows > 0
    rows = client3.audit(5)[0]
    assert rows[-1]["op"] == "session.close" and rows[-1]["bytes_in"] > 0


def test_connect_from_cluster_file(cluster3):
    with misuan.connect(cluster3.cluster_file) as c:
        assert c.run(lambda a: a - 1.0, np.array([3.0], np.float32))[0] == pytest.approx(2.0, abs=1e-3)
