"""The node-local hand-over of secret shares between runtimes (RAG), attacked:
someone else's requests, outputs not declared exportable, inputs not declared
importable, assets of another tokenizer, unknown kinds and malformed bodies."""

import json
import shutil

import numpy as np
import pytest

import misuan
from misuan.client.assets import grant_asset
from misuan.client.runtime import ModelRuntime
from misuan.hosting import grant_model, publish_model
from misuan.inference import protocol as IP
from misuan.retrieval import protocol as P
from tests.conftest import client_as

pytestmark = pytest.mark.cluster


@pytest.fixture(scope="module")
def stage(cluster3, tmp_path_factory):
    """``victim`` hosts a model, a second model of another tokenizer and a KB; ``mallory``
    may use the first model and ask with the KB (RAG scope)."""
    from misuan.retrieval.embedder import Embedder
    from misuan.retrieval.publish import publish_kb
    from tests.models.tinymodels import make_llama, save_hf

    d = tmp_path_factory.mktemp("handover")
    model = save_hf(d / "m", make_llama(seed=3, tie=True, max_position_embeddings=256))
    other = d / "other"
    shutil.copytree(model, other)
    cfg = json.loads((other / "tokenizer_config.json").read_text())
    cfg["chat_template"] = cfg["chat_template"].replace("<|im_start|>", "<|im_start|> ")
    (other / "tokenizer_config.json").write_text(json.dumps(cfg))
    (d / "docs").mkdir()
    (d / "docs" / "a.txt").write_text("The vault code is 4711. " * 4)
    (d / "docs" / "b.txt").write_text("Lunch is at noon on Fridays. " * 4)
    victim, mallory = client_as(cluster3, "victim"), client_as(cluster3, "mallory")
    embedder = Embedder.load()
    publish_model(victim, model, "m", receipt=False)
    publish_model(victim, other, "other", receipt=False)
    publish_kb(victim, d / "docs", "vault", "m", chunk_tokens=16, embedder=embedder)
    grant_model(victim, "m", "mallory")
    grant_model(victim, "other", "mallory")
    grant_asset(victim, P.KB, "vault", "mallory", P.SCOPE_RAG)
    return victim, mallory, embedder, client_as(cluster3, "outsider")


def _retrieved(client, embedder):
    """A ``kb.retrieve`` request of ``client`` on victim/vault: (request, its reference)."""
    rt = ModelRuntime.ensure(client, "victim/vault", kind=P.KB)
    req = rt.request()
    req.put(P.QUERY, embedder.embed(["vault code"]))
    req.run(P.RETRIEVE, {P.PARAM_K: 1})
    return req, {"kind": P.KB, "name": rt.name, "version": rt.version, "runtime_id": rt.runtime_id, "request": req.id}


def _model_request(client, model="victim/m"):
    rt = ModelRuntime.ensure(client, model)
    req = rt.request()
    return req, {"kind": "model", "name": rt.name, "version": rt.version, "runtime_id": rt.runtime_id, "request": req.id}


def _hand(client, src, dst, names=(P.CTX_HI, P.CTX_LO)):
    return client.fanout(lambda i: client.nodes[i].runtime_handover(src, dst, list(names)))


def test_nobody_takes_or_plants_shares_across_principals(stage):
    victim, mallory, embedder, outsider = stage
    v_kb, v_src = _retrieved(victim, embedder)
    m_kb, m_src = _retrieved(mallory, embedder)
    v_gen, v_dst = _model_request(victim)
    m_gen, m_dst = _model_request(mallory)
    v_gen.put(IP.PROMPT_HI, np.zeros((16, 8), np.int32))  # the victim's request exists on the nodes (its id is unguessable)
    try:
        with pytest.raises(misuan.NotFound):  # the victim's retrieved chunks into mallory's prompt
            _hand(mallory, v_src, m_dst)
        with pytest.raises(misuan.NotFound):  # mallory's chunks planted in the victim's generation
            _hand(mallory, m_src, v_dst)
        with pytest.raises(misuan.NotFound):  # no grant at all: nothing exists
            _hand(outsider, v_src, v_dst)
        _hand(mallory, m_src, m_dst)  # her own, as RAG does: allowed
    finally:
        for r in (v_kb, m_kb, v_gen, m_gen):
            r.end()


def test_only_declared_exports_into_declared_imports_of_one_tokenizer(stage):
    _, mallory, embedder, _ = stage
    m_kb, m_src = _retrieved(mallory, embedder)
    m_gen, m_dst = _model_request(mallory)
    o_gen, o_dst = _model_request(mallory, "victim/other")
    try:
        for name in (P.INDEX, P.SCORES, P.TOKENS):  # outputs the policy governs: never handed over
            with pytest.raises(misuan.InvalidInput, match="hand over"):
                _hand(mallory, m_src, m_dst, [name])
        with pytest.raises(misuan.InvalidInput, match="may import"):  # a KB request imports nothing
            _hand(mallory, m_src, {**m_src, "request": "planted-request-1"})
        with pytest.raises(misuan.InvalidInput, match="tokenizer"):  # a model of another tokenizer family
            _hand(mallory, m_src, o_dst)
        with pytest.raises(misuan.NotFound):
            _hand(mallory, {**m_src, "kind": "dataset"}, m_dst)
        with pytest.raises(misuan.InvalidInput):  # malformed: a bad variable name, 4xx not 5xx
            _hand(mallory, m_src, m_dst, ["w:embed"])
        with pytest.raises(misuan.InvalidInput):
            _hand(mallory, m_src, m_dst, [IP.KEYS] * 9)
    finally:
        for r in (m_kb, m_gen, o_gen):
            r.end()
