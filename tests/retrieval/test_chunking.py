"""The owner-side reading and chunking of documents (no cluster)."""

import json

import pytest

import misuan
from misuan.retrieval.chunking import chunk_documents, chunk_tokens, read_documents


def test_long_document_is_chunked_not_truncated():
    ids = list(range(300))
    windows = chunk_tokens(ids, 128, 16)
    assert [len(w) for w in windows] == [128, 128, 76]
    assert windows[1][:16] == windows[0][-16:]  # the overlap
    assert sorted(set(t for w in windows for t in w)) == ids  # every token kept
    assert chunk_tokens(list(range(10)), 128, 16) == [list(range(10))]


def test_chunk_ids_are_doc_and_index(tmp_path):
    (tmp_path / "a.txt").write_text("x" * 50)
    (tmp_path / "b.md").write_text("y" * 10)
    docs = read_documents(tmp_path)
    chunks = chunk_documents(docs, lambda t: [ord(c) for c in t], 20, 5)
    assert [c.id for c in chunks] == ["a.txt#0", "a.txt#1", "a.txt#2", "b.md#0"]
    assert "HIDDEN" in repr(chunks[0]) and "120" not in repr(chunks[0])


def test_empty_folder_and_empty_jsonl_refused(tmp_path):
    with pytest.raises(misuan.InvalidInput, match="no documents"):
        read_documents(tmp_path)
    (tmp_path / "blank.txt").write_text("   \n")
    warnings = []
    with pytest.raises(misuan.InvalidInput, match="no documents"):
        read_documents(tmp_path, warnings.append)
    assert warnings == ["skipped blank.txt: empty document"]
    f = tmp_path / "empty.jsonl"
    f.write_text("")
    with pytest.raises(misuan.InvalidInput, match="no documents"):
        read_documents(f)
    with pytest.raises(misuan.InvalidInput, match="no such"):
        read_documents(tmp_path / "missing")


def test_non_utf8_file_skipped_with_a_warning_naming_it(tmp_path):
    (tmp_path / "good.txt").write_text("fine text", encoding="utf-8")
    (tmp_path / "latin1.txt").write_bytes("café crème".encode("latin-1"))
    (tmp_path / "image.png").write_bytes(b"\x89PNG")  # not a .txt/.md: ignored silently
    warnings = []
    docs = read_documents(tmp_path, warnings.append)
    assert [d.id for d in docs] == ["good.txt"]
    assert warnings == ["skipped latin1.txt: not UTF-8"]


def test_duplicate_ids_refused_with_the_ids(tmp_path):
    f = tmp_path / "docs.jsonl"
    rows = [
        {"id": "a", "text": "1"},
        {"id": "b", "text": "2"},
        {"id": "a", "text": "3"},
        {"id": "c", "text": "4"},
        {"id": "c", "text": "5"},
    ]
    f.write_text("\n".join(json.dumps(r) for r in rows))
    with pytest.raises(misuan.InvalidInput, match="duplicate document ids: a, c"):
        read_documents(f)


def test_bad_jsonl_lines_named(tmp_path):
    f = tmp_path / "docs.jsonl"
    f.write_text('{"id": "a", "text": "ok"}\nnot json\n')
    with pytest.raises(misuan.InvalidInput, match=":2: not a JSON object"):
        read_documents(f)
    f.write_text('{"id": "a", "body": "ok"}\n')
    with pytest.raises(misuan.InvalidInput, match=":1: each line"):
        read_documents(f)
