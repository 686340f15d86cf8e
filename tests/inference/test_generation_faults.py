"""A node dying mid-generation: clear error, state freed on the others, cluster usable."""

import os
import signal
import threading
import time

import pytest

import misuan
from misuan.cluster.local import local_cluster, up
from misuan.inference import GenerationParams
from tests.conftest import FAST


@pytest.fixture(scope="module")
def gen_cluster(tmp_path_factory, tiny_model_dir):
    from misuan.hosting import publish_model

    with local_cluster(3, dir=tmp_path_factory.mktemp("genfault"), timeouts=FAST) as lc:
        publish_model(lc.client(), tiny_model_dir, "victim", receipt=False)
        yield lc


def test_node_killed_mid_generation(gen_cluster, plain_tiny):
    client = gen_cluster.client()
    model = client.model("victim")
    ids = [1, 2, 3, 4]
    list(model.generate_ids(ids, GenerationParams(max_tokens=2)))  # warm: programs compiled
    pid = int((gen_cluster.dir / "node1" / "node.pid").read_text())
    got = []
    t0 = time.monotonic()
    with pytest.raises(misuan.NodeError, match="node 1"):
        for tok in model.generate_ids(ids, GenerationParams(max_tokens=60)):
            got.append(tok)
            if len(got) == 3:
                threading.Timer(0.2, os.kill, (pid, signal.SIGKILL)).start()
    assert time.monotonic() - t0 < 3 * 60  # a clear error, no hang
    # the other nodes dropped the runtime (weights and the request's KV cache)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        live = [client.nodes[r].status()["resident"] for r in (0, 2)]
        if all(not any(x["model"] == "admin/victim" for x in rows) for rows in live):
            break
        time.sleep(0.5)
    else:
        pytest.fail("runtime not released on the surviving nodes")
    up(gen_cluster.dir)  # bring node 1 back; the next use rebuilds the runtime
    fresh = misuan.connect(gen_cluster.cluster_file)
    out = list(fresh.model("victim").generate_ids(ids, GenerationParams(max_tokens=4)))
    assert out == list(plain_tiny.generate_ids(ids, GenerationParams(max_tokens=4)))  # the rebuilt runtime computes the same answer
    fresh.close()


def test_runtime_gone_on_one_node_is_rebuilt_not_stuck(gen_cluster, plain_tiny):
    """A node restarted while the runtime sat idle: the others still hold a 'ready'
    runtime whose peer is gone. A new runtime replaces it only because that peer
    answers that it no longer holds it (finding 7: never on a grantee's word)."""
    client = gen_cluster.client()
    ids = [1, 2, 3, 4]
    want = list(plain_tiny.generate_ids(ids, GenerationParams(max_tokens=2)))
    assert list(client.model("victim").generate_ids(ids, GenerationParams(max_tokens=2))) == want
    old = {client.nodes[r].runtime_state("admin/victim", None)["runtime_id"] for r in range(3)}
    assert len(old) == 1 and None not in old
    pid = int((gen_cluster.dir / "node2" / "node.pid").read_text())
    os.kill(pid, signal.SIGKILL)
    time.sleep(1.0)  # `up` sees the dead (or zombie) process and starts node 2 again
    up(gen_cluster.dir)
    fresh = misuan.connect(gen_cluster.cluster_file)
    try:
        assert list(fresh.model("victim").generate_ids(ids, GenerationParams(max_tokens=2))) == want
        new = {fresh.nodes[r].runtime_state("admin/victim", None)["runtime_id"] for r in range(3)}
        assert len(new) == 1 and new.isdisjoint(old)
    finally:
        fresh.close()
