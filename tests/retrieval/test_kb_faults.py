"""A node dying mid-search: a clear error, no hang, nothing left open on the others."""

import os
import signal
import threading
import time

import pytest

import misuan
from misuan.cluster.local import local_cluster
from tests.conftest import FAST

pytestmark = pytest.mark.cluster


def test_node_killed_mid_search(tmp_path_factory, rag_model_dir, docs_dir, embedder):
    from misuan.hosting import publish_model
    from misuan.retrieval.client import search
    from misuan.retrieval.publish import publish_kb

    with local_cluster(3, dir=tmp_path_factory.mktemp("kbfault"), timeouts=FAST) as lc:
        client = lc.client()
        publish_model(client, rag_model_dir, "m", receipt=False)
        publish_kb(client, docs_dir, "kb", "m", chunk_tokens=32, overlap=4, embedder=embedder)
        assert search(client, "kb", "volcano", 2, embedder=embedder).results  # warm: runtime resident, program compiled
        pid = int((lc.dir / "node2" / "node.pid").read_text())
        t0 = time.monotonic()
        errors = []
        threading.Timer(0.3, os.kill, (pid, signal.SIGKILL)).start()  # while searches run back to back
        for _ in range(50):
            try:
                search(client, "kb", "volcano", 2, embedder=embedder)
            except misuan.MisuanError as exc:
                errors.append(exc)
                break
        assert errors and "node 2" in str(errors[0]) and "\n" not in str(errors[0]), errors
        assert time.monotonic() - t0 < 120  # a clear error, no hang
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:  # the survivors dropped the KB's runtime and its requests
            live = [client.nodes[r].status() for r in (0, 1)]
            if all(not s["resident"] and not [x for x in s["sessions"] if x["state"] not in ("closed", "failed")] for s in live):
                break
            time.sleep(0.5)
        else:
            pytest.fail(f"state left open on the surviving nodes: {live}")
