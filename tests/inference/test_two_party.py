"""2-party CHEETAH: the same secure engine, the same greedy tokens as plaintext."""

import dataclasses

from misuan.cluster.local import local_cluster
from misuan.hosting import publish_model
from misuan.inference import GenerationParams, GenerationStats
from tests.conftest import FAST


def test_cheetah_greedy_equals_plaintext(tmp_path, tiny_model_dir, plain_tiny):
    timeouts = dataclasses.replace(FAST, link_recv_ms=60_000)  # CHEETAH steps are slower
    with local_cluster(2, dir=tmp_path / "c2", timeouts=timeouts) as lc:
        client = lc.client()
        assert client.cluster.mpc.protocol == "CHEETAH"
        publish_model(client, tiny_model_dir, "duo", receipt=False)
        ids = [5, 17, 99, 3, 42]
        stats = GenerationStats()
        secure = list(client.model("duo").generate_ids(ids, GenerationParams(max_tokens=3), stats))
        assert secure == list(plain_tiny.generate_ids(ids, GenerationParams(max_tokens=3)))
        assert stats.steps == 2
