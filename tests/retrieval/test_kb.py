"""Knowledge bases on a real 3-node cluster: publish, search (secure == plaintext),
list/show/rm, grants with scopes, the owner's reveal policy, and that no node keeps
a passage or an embedding row in the clear."""

import json

import numpy as np
import pytest

import misuan
from misuan.retrieval import protocol as P
from misuan.retrieval.client import search
from misuan.retrieval.reference import search_plaintext
from tests.cli.run import misuan as run_cli
from tests.conftest import client_as
from tests.retrieval.conftest import DOCS, QUESTIONS

pytestmark = pytest.mark.cluster


def test_publish_records_public_facts_only(kb_owner, kb_hosted):
    from misuan.client.assets import list_assets, show_asset

    assert kb_hosted.documents == len(DOCS) and kb_hosted.chunks > len(DOCS)  # the long documents were chunked
    rows = list_assets(kb_owner, P.KB)
    assert [r[P.KB] for r in rows] == ["librarian/notes"]
    info = show_asset(kb_owner, P.KB, "notes")
    cfg = info["config"]
    assert cfg["n_chunks"] == kb_hosted.chunks and cfg["dim"] == P.EMBED_DIM and cfg["reveal"] == "passages"
    assert all(cid.split("#")[0] in DOCS for cid in cfg["chunk_ids"])
    assert [t["name"] for t in info["tensors"]] == list(P.TENSORS)
    assert "Paris" not in json.dumps(info)


def test_secure_search_equals_plaintext(kb_owner, kb_hosted, docs_dir, embedder):
    for q in QUESTIONS:
        sec = search(kb_owner, "notes", q, 3, embedder=embedder)
        ref = search_plaintext(kb_owner, "notes", docs_dir, q, 3, embedder=embedder)
        assert [p.id for p in sec.results] == [p.id for p in ref.results], q
        assert np.allclose([p.score for p in sec.results], [p.score for p in ref.results], atol=2e-3)
        assert [p.text for p in sec.results] == [p.text for p in ref.results]
    top = search(kb_owner, "notes", "What is the capital of France?", 1, embedder=embedder).results[0]
    assert top.id.startswith("geo/france.md#") and "Paris" in top.text


def test_cli_search_json_and_plaintext(cluster3, kb_hosted, docs_dir):
    key = str(cluster3.dir / "keys" / "librarian.key")
    args = ["--cluster", str(cluster3.cluster_file), "--key-file", key]
    sec = json.loads(run_cli("kb", "search", "notes", "What are the moons of Mars?", "-k", "2", "--json", *args).stdout)
    ref = json.loads(
        run_cli(
            "kb", "search", "notes", "What are the moons of Mars?", "-k", "2", "--json", "--plaintext", "--source", str(docs_dir), *args
        ).stdout
    )
    assert [r["id"] for r in sec["results"]] == [r["id"] for r in ref["results"]]
    assert sec["results"][0]["id"].startswith("space/mars.txt#") and "Mars" in sec["results"][0]["text"]
    listed = json.loads(run_cli("kb", "list", "--json", *args).stdout)
    assert listed[0][P.KB] == "librarian/notes"


def test_grants_with_scopes(cluster3, kb_owner, kb_hosted, embedder):
    from misuan.client.assets import grant_asset, revoke_asset

    reader = client_as(cluster3, "reader")
    with pytest.raises(misuan.NotFound):
        search(reader, "librarian/notes", "capital of France", 1, embedder=embedder)  # no grant: not even its existence
    grant_asset(kb_owner, P.KB, "notes", "reader", P.SCOPE_RAG)
    with pytest.raises(misuan.PermissionDenied, match="search"):
        search(reader, "librarian/notes", "capital of France", 1, embedder=embedder)  # RAG only
    grant_asset(kb_owner, P.KB, "notes", "reader", P.SCOPE_SEARCH)
    assert search(reader, "librarian/notes", "capital of France", 1, embedder=embedder).results[0].id.startswith("geo/france")
    with pytest.raises(misuan.InvalidInput, match="scopes"):
        grant_asset(kb_owner, P.KB, "notes", "reader", "everything")
    assert revoke_asset(kb_owner, P.KB, "notes", "reader")
    with pytest.raises(misuan.NotFound):
        search(reader, "librarian/notes", "capital of France", 1, embedder=embedder)


def test_reveal_policy_ids_and_none(cluster3, kb_owner, kb_hosted, docs_dir, embedder):
    from misuan.client.assets import remove_asset
    from misuan.retrieval.publish import publish_kb

    publish_kb(kb_owner, docs_dir, "ids-only", "ragtiny", chunk_tokens=32, overlap=4, reveal="ids", embedder=embedder)
    res = search(kb_owner, "ids-only", "Where did Bach work?", 2, embedder=embedder)
    assert res.results[0].id.startswith("music/bach.txt#") and all(p.text is None for p in res.results)
    assert all(set(p.to_dict()) == {"id", "score"} for p in res.results)
    publish_kb(kb_owner, docs_dir, "sealed", "ragtiny", chunk_tokens=32, overlap=4, reveal="none", embedder=embedder)
    with pytest.raises(misuan.PermissionDenied, match="reveal"):
        search(kb_owner, "sealed", "Where did Bach work?", 2, embedder=embedder)
    with pytest.raises(misuan.InvalidInput, match="reveal"):
        publish_kb(kb_owner, docs_dir, "bad", "ragtiny", reveal="everything", embedder=embedder)
    assert remove_asset(kb_owner, P.KB, "ids-only", None) == [1]
    with pytest.raises(misuan.NotFound):
        search(kb_owner, "ids-only", "Where did Bach work?", 2, embedder=embedder)


def test_k_is_clamped_or_refused_and_long_questions_truncated(kb_owner, kb_hosted, embedder):
    res = search(kb_owner, "notes", "volcano", 99, embedder=embedder)
    assert res.k == P.MAX_K and any("clamped" in n for n in res.notes) and len(res.results) == P.MAX_K
    for k in (0, -3):
        with pytest.raises(misuan.InvalidInput, match="k must be"):
            search(kb_owner, "notes", "volcano", k, embedder=embedder)
    long_q = "Which planet has the tallest volcano? " + "and more words " * 200
    res = search(kb_owner, "notes", long_q, 1, embedder=embedder)
    assert any("truncated" in n for n in res.notes) and res.results[0].id.startswith("space/mars.txt#")


def test_no_node_keeps_a_passage_or_an_embedding_row_in_the_clear(cluster3, kb_owner, kb_hosted, docs_dir, embedder):
    """After publish and searches: grep every node's state dir and logs for passage
    text and for the bytes of embedding rows (float32 and the fixed-point encoding)."""
    from misuan.models.tokenizer import Tokenizer
    from misuan.retrieval.publish import embed_chunks, prepare_chunks

    search(kb_owner, "notes", "What makes ATP in a cell?", 2, embedder=embedder)
    tok_json = kb_owner.nodes[0].model_tokenizer("librarian/notes", kind=P.KB)
    _, chunks, tok = prepare_chunks(docs_dir, tok_json, 32, 4)
    assert isinstance(tok, Tokenizer)
    emb = embed_chunks(embedder, tok, chunks[:8])
    needles = [s.encode() for s in ("Olympus Mons", "oxidative phosphorylation", "Goldberg Variations", "knead the dough")]
    needles += [row.astype("<f4").tobytes()[:32] for row in emb]
    needles += [np.rint(row.astype(np.float64) * 2**18).astype("<i8").tobytes()[:48] for row in emb]
    files = [f for f in cluster3.dir.rglob("*") if f.is_file() and "keys" not in f.parts]
    assert len(files) > 10
    for f in files:
        data = f.read_bytes()
        for needle in needles:
            assert needle not in data, f"{f} holds a plaintext passage or embedding row"


def test_cli_lifecycle_publish_show_grant_revoke_rm(cluster3, kb_hosted, tmp_path):
    key = str(cluster3.dir / "keys" / "librarian.key")
    args = ["--cluster", str(cluster3.cluster_file), "--key-file", key]
    empty = tmp_path / "empty"
    empty.mkdir()
    r = run_cli("kb", "publish", str(empty), "--name", "void", "--model", "ragtiny", *args, check=False)
    assert r.returncode != 0 and "no documents" in r.stderr
    src = tmp_path / "docs.jsonl"
    src.write_text("\n".join(json.dumps({"id": f"n{i}", "text": f"note {i}: the tide table for harbour {i}"}) for i in range(3)))
    pub = json.loads(
        run_cli("kb", "publish", str(src), "--name", "tides", "--model", "ragtiny", "--chunk-tokens", "16", "--json", *args).stdout
    )
    assert pub["name"] == "librarian/tides" and pub["documents"] == 3 and pub["chunks"] >= 3
    shown = json.loads(run_cli("kb", "show", "tides", "--json", *args).stdout)
    assert shown["config"]["chunk_tokens"] == 16 and "chunk_ids" not in shown["config"]
    run_cli("kb", "grant", "tides", "--to", "reader", "--scope", "search", *args)
    shown = json.loads(run_cli("kb", "show", "tides", "--json", *args).stdout)
    assert shown["grant_scopes"] == {"reader": "search"}
    r = run_cli("kb", "grant", "tides", "--to", "reader", "--scope", "everything", *args, check=False)
    assert r.returncode != 0 and "--scope" in r.stderr
    assert json.loads(run_cli("kb", "revoke", "tides", "--from", "reader", "--json", *args).stdout)["had_grant"]
    assert json.loads(run_cli("kb", "rm", "tides", "--json", *args).stdout)["removed_versions"] == [1]
    r = run_cli("kb", "publish", str(src), "--name", "x", "--model", "ragtiny", "--reveal", "all", *args, check=False)
    assert r.returncode != 0 and "--reveal must be one of passages, ids, none" in r.stderr
