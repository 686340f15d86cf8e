"""RAG under MPC on a real 3-node cluster: the retrieved chunks go from the KB's
runtime into the secret prompt on the nodes; tokens equal the plaintext twin's; the
hand-over and the context window cannot be abused."""

import itertools
import json

import numpy as np
import pytest

import misuan
from misuan.inference import GenerationParams
from misuan.inference import protocol as IP
from misuan.retrieval import protocol as P
from misuan.retrieval.rag import RagModel, ask_plaintext
from tests.cli.run import misuan as run_cli
from tests.conftest import client_as

pytestmark = pytest.mark.cluster
SYSTEM = "ctx"  # short: the tiny tokenizer is near character level; the prompt stays in the 128-slot bucket
Q = [{"role": "user", "content": "France?"}]


@pytest.fixture(scope="module")
def rag(kb_owner, kb_hosted, embedder):
    return RagModel(kb_owner, "ragtiny", "notes", k=2, embedder=embedder, system=SYSTEM)


@pytest.fixture(scope="module")
def greedy_reference(kb_owner, kb_hosted, rag_model_dir, docs_dir, embedder):
    """The plaintext RAG reference (the owner's documents and weights, the programs' twin): 4 greedy tokens."""
    return ask_plaintext(
        rag_model_dir, docs_dir, kb_owner, "notes", Q, GenerationParams(max_tokens=4), k=2, embedder=embedder, system=SYSTEM
    )


def test_rag_tokens_equal_the_plaintext_twin(kb_owner, rag, rag_model_dir, docs_dir, embedder, greedy_reference):
    want, facts = greedy_reference
    assert list(rag.generate_ids(Q, GenerationParams(max_tokens=4))) == want
    assert facts["chunks"][0].startswith("geo/france.md#")
    layout, _ = rag.layout(Q, 4)
    assert (layout.T, layout.A, layout.K, layout.C) == (facts["T"], facts["A"], 2, 32)
    for i in range(3):  # both requests (the KB's and the generation's) are gone on every node
        st = kb_owner.nodes[i].status()
        assert all(r["requests"] == 0 for r in st["resident"]), st["resident"]
    # sampled (temperature + seed) too: same noise on the nodes and in the twin
    params = GenerationParams(max_tokens=3, temperature=0.8, seed=7)
    ref, _ = ask_plaintext(rag_model_dir, docs_dir, kb_owner, "notes", Q, params, k=2, embedder=embedder, system=SYSTEM)
    assert list(rag.generate_ids(Q, params)) == ref


def test_sdk_chat_with_kb_and_ask_cli(cluster3, kb_owner, rag, greedy_reference):
    want, facts = greedy_reference
    eos = set(rag.tokenizer.eos_ids)
    want = list(itertools.takewhile(lambda t: t not in eos, want))  # what a streamed answer shows
    text = "".join(kb_owner.chat("ragtiny", Q, max_tokens=4, kb="notes", k=2))
    assert text == facts["answer"] == rag.tokenizer.decode(want)
    key = str(cluster3.dir / "keys" / "librarian.key")
    args = ["--cluster", str(cluster3.cluster_file), "--key-file", key, "--system", SYSTEM, "--max-tokens", "4", "--json"]
    sec = json.loads(run_cli("ask", "France?", "--model", "ragtiny", "--kb", "notes", *args).stdout)
    assert sec["tokens"] == want and sec["answer"] == text and sec["mode"] == "mpc"


def test_rag_scope_and_search_scope(cluster3, kb_owner, kb_hosted, embedder):
    from misuan.client.assets import grant_asset
    from misuan.hosting import grant_model

    asker = client_as(cluster3, "asker")
    grant_model(kb_owner, "ragtiny", "asker")
    grant_asset(kb_owner, P.KB, "notes", "asker", P.SCOPE_SEARCH)
    with pytest.raises(misuan.PermissionDenied, match="rag"):
        list(
            RagModel(asker, "librarian/ragtiny", "librarian/notes", k=1, embedder=embedder, system=SYSTEM).generate_ids(
                Q, GenerationParams(max_tokens=1)
            )
        )
    grant_asset(kb_owner, P.KB, "notes", "asker", P.SCOPE_RAG)
    got = list(
        RagModel(asker, "librarian/ragtiny", "librarian/notes", k=1, embedder=embedder, system=SYSTEM).generate_ids(
            Q, GenerationParams(max_tokens=2)
        )
    )
    assert len(got) == 2


def test_kb_of_another_tokenizer_is_refused(kb_owner, kb_hosted, rag_model_dir, tmp_path, embedder):
    import shutil

    from misuan.hosting import publish_model

    other = tmp_path / "other"
    shutil.copytree(rag_model_dir, other)
    cfg = json.loads((other / "tokenizer_config.json").read_text())
    cfg["chat_template"] = cfg["chat_template"].replace("<|im_start|>", "<|im_start|> ")
    (other / "tokenizer_config.json").write_text(json.dumps(cfg))
    publish_model(kb_owner, other, "other-tok", receipt=False)
    with pytest.raises(misuan.InvalidInput, match="chunked for"):
        RagModel(kb_owner, "other-tok", "notes", k=1, embedder=embedder)


def _request_pair(owner, embedder, program=P.RETRIEVE):
    """A KB request that ran ``program`` and a fresh request in the model's runtime."""
    from misuan.client.runtime import ModelRuntime

    kb_rt = ModelRuntime.ensure(owner, "notes", None, kind=P.KB)
    kb_req = kb_rt.request()
    kb_req.put(P.QUERY, embedder.embed(["France?"]))
    kb_req.run(program, {P.PARAM_K: 2})
    m_rt = ModelRuntime.ensure(owner, "ragtiny")
    m_req = m_rt.request()
    src = {"kind": P.KB, "name": kb_rt.name, "version": kb_rt.version, "runtime_id": kb_rt.runtime_id, "request": kb_req.id}
    dst = {"kind": "model", "name": m_rt.name, "version": m_rt.version, "runtime_id": m_rt.runtime_id, "request": m_req.id}
    return kb_req, m_req, src, dst


def test_handover_only_of_exported_outputs_and_only_into_declared_inputs(cluster3, kb_owner, rag, embedder):
    c = kb_owner
    kb_req, m_req, src, dst = _request_pair(c, embedder, P.SEARCH)
    try:  # a search exports nothing (its chunks may only be revealed as its policy says)
        with pytest.raises(misuan.InvalidInput, match="hand over"):
            c.fanout(lambda i: c.nodes[i].runtime_handover(src, dst, [P.CTX_HI]))
    finally:
        kb_req.end()
        m_req.end()
    kb_req, m_req, src, dst = _request_pair(c, embedder)
    try:
        with pytest.raises(misuan.InvalidInput, match="hand over"):  # not an export (e.g. decode's cache)
            c.fanout(lambda i: c.nodes[i].runtime_handover(src, dst, [IP.KEYS]))
        into_kb = {**src, "request": "another-request-1"}  # a KB request declares no imports
        with pytest.raises(misuan.InvalidInput, match="may import"):
            c.fanout(lambda i: c.nodes[i].runtime_handover(src, into_kb, [P.CTX_HI]))
        other = client_as(cluster3, "reader2")  # someone else's requests: invisible
        with pytest.raises(misuan.NotFound):
            other.fanout(lambda i: other.nodes[i].runtime_handover(src, dst, [P.CTX_HI]))
    finally:
        kb_req.end()
        m_req.end()


def test_context_window_must_be_empty_in_the_clients_upload(kb_owner, rag, embedder):
    """A client that writes into the window (to cancel, hence probe, a fetched token)
    is refused by the prefill's check, and the request is dropped."""
    c = kb_owner
    layout, _ = rag.layout(Q, 2)
    hi, lo = layout.digits(rag.model.config.vocab_size)
    hi[layout.A, 0] = 1  # a digit inside the window
    lo[layout.A, 0] = 1
    kb_req, m_req, src, dst = _request_pair(c, embedder)
    try:
        c.fanout(lambda i: c.nodes[i].runtime_handover(src, dst, [P.CTX_HI, P.CTX_LO]))
        m_req.put(IP.PROMPT_HI, hi)
        m_req.put(IP.PROMPT_LO, lo)
        with pytest.raises(misuan.InvalidInput, match="check"):
            m_req.run(IP.CONTEXT_PREFILL, layout.params, {IP.SEED: 0, IP.TEMPERATURE: 0.0})
    finally:
        kb_req.end()
        m_req.end()
    # without the hand-over the context prefill cannot run at all
    m_req = rag.model.runtime.request()
    try:
        hi, lo = layout.digits(rag.model.config.vocab_size)
        m_req.put(IP.PROMPT_HI, hi)
        m_req.put(IP.PROMPT_LO, lo)
        with pytest.raises(misuan.InvalidInput, match="ctx_hi"):
            m_req.run(IP.CONTEXT_PREFILL, layout.params, {IP.SEED: 0, IP.TEMPERATURE: 0.0})
    finally:
        m_req.end()
    assert np.asarray(hi).sum() > 0
