"""Input handling without a peer: snapshot, CSV rules, bad input, duplicates, output files."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np
import pytest

from misuan.errors import InvalidInput
from misuan.psi import _output
from misuan.psi._prepare import DROPPED_DUPLICATE, EMPTY_KEY, prepare_input
from misuan.psi._snapshot import snapshot_input
from misuan.psi.spec import MATCH_COLUMN, PsiSpec
from tests.psi.psi_helpers import read_csv, write_csv

SECRET = "s3cr3t-customer-4711"


def _prepare(tmp_path: Path, text: str | bytes, spec: PsiSpec, name: str = "in.csv"):
    src = tmp_path / name
    src.write_bytes(text.encode("utf-8") if isinstance(text, str) else text)
    snap = snapshot_input(src, tmp_path / f"{name}.snap")
    return snap, prepare_input(snap, spec, tmp_path / f"{name}.keys")


# --- snapshot ---------------------------------------------------------------------------


def test_snapshot_copies_and_hashes(tmp_path):
    src = write_csv(tmp_path / "a.csv", ["id"], [["1"], ["2"]])
    snap = snapshot_input(src, tmp_path / "snap.csv")
    assert snap.path.read_bytes() == src.read_bytes()
    assert snap.sha256 == hashlib.sha256(src.read_bytes()).hexdigest()
    assert oct(snap.path.stat().st_mode & 0o777) == "0o600"


def test_snapshot_detects_a_file_changing_while_read(tmp_path):
    src = tmp_path / "a.csv"
    src.write_bytes(b"id\n" + b"1\n" * (3 << 20))  # several 1 MiB chunks

    done: list[bool] = []

    def append_once(_fraction: float) -> None:
        if not done:
            done.append(True)
            with open(src, "ab") as fh:
                fh.write(b"2\n")

    with pytest.raises(InvalidInput, match="changed while it was being read"):
        snapshot_input(src, tmp_path / "snap.csv", on_progress=append_once)


def test_snapshot_refuses_missing_and_non_regular_files(tmp_path):
    with pytest.raises(InvalidInput, match="does not exist"):
        snapshot_input(tmp_path / "nope.csv", tmp_path / "s1")
    with pytest.raises(InvalidInput, match="not a regular file"):
        snapshot_input(tmp_path, tmp_path / "s2")
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    fd = os.open(fifo, os.O_RDWR | os.O_NONBLOCK)  # keep open() from blocking
    try:
        with pytest.raises(InvalidInput, match="not a regular file"):
            snapshot_input(fifo, tmp_path / "s3")
    finally:
        os.close(fd)


@pytest.mark.parametrize(
    "data, plain",
    [(b"id\n1\n", True), (b"id\r\n1\r\n", True), (b'id\n"1"\n', False), (b"id\r1\r", False)],
)
def test_plain_detection(tmp_path, data, plain):
    src = tmp_path / "a.csv"
    src.write_bytes(data)
    assert snapshot_input(src, tmp_path / "snap").plain is plain


# --- bad input ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, message",
    [
        ("", "empty"),
        ("\n\n", "empty"),
        ("id,name\n", "no data rows"),
        ("id,name\r\n", "no data rows"),
        ("name,amount\nalice,1\n", "key column 'id' is not in the input header"),
        ("id,id\n1,2\n", "appears 2 times"),
        (f"id,name\n1,a\n2,b,{SECRET}\n", "line 3 has 3 fields but the header has 2"),
        (f'id,name\n1,a\n"2,b,{SECRET}\n', "not valid CSV"),
        (" ,x\n\t,y\n", "no input row has a non-empty key"),
    ],
)
def test_bad_input_is_refused_without_echoing_data(tmp_path, text, message):
    spec = PsiSpec(keys=("id",))
    if text.startswith(" ,"):
        text = "id,name\n" + text
    with pytest.raises(InvalidInput, match=message) as info:
        _prepare(tmp_path, text, spec)
    assert SECRET not in str(info.value)


def test_invalid_utf8_is_refused(tmp_path):
    for body in (b"id\n\xff\xfe\n", b'id\n"\xff"\n'):  # plain and csv-module paths
        with pytest.raises(InvalidInput, match="UTF-8"):
            _prepare(tmp_path, body, PsiSpec(keys=("id",)), name=f"u{len(body)}.csv")


def test_left_join_column_name_is_reserved(tmp_path):
    src = tmp_path / "a.csv"
    write_csv(src, ["id", MATCH_COLUMN], [["1", "x"]])
    snap = snapshot_input(src, tmp_path / "snap")
    with pytest.raises(InvalidInput, match=MATCH_COLUMN):
        prepare_input(snap, PsiSpec(keys=("id",)), tmp_path / "k", reserved_columns=(MATCH_COLUMN,))


# --- duplicates and empty keys -------------------------------------------------------------

DUPLICATED = "id,v\nA,1\nB,2\n A ,3\n,4\nA,5\nC,6\n"


def test_duplicates_refused_by_default_with_a_count(tmp_path):
    with pytest.raises(InvalidInput, match=r"^2 input rows repeat the key of an earlier row"):
        _prepare(tmp_path, DUPLICATED, PsiSpec(keys=("id",)))


def test_duplicates_first_and_all(tmp_path):
    _, first = _prepare(tmp_path, DUPLICATED, PsiSpec(keys=("id",), duplicates="first"), "f.csv")
    assert (first.input_rows, first.duplicate_rows, first.dropped_rows, first.empty_key_rows) == (6, 2, 2, 1)
    assert len(first.unique_keys) == 3
    uid = first.row_uid
    assert uid[3] == EMPTY_KEY and uid[2] == DROPPED_DUPLICATE and uid[4] == DROPPED_DUPLICATE
    _, every = _prepare(tmp_path, DUPLICATED, PsiSpec(keys=("id",), duplicates="all"), "a.csv")
    assert every.dropped_rows == 0 and every.row_uid[0] == every.row_uid[2] == every.row_uid[4]


def test_libpsi_input_has_distinct_tokens_and_one_dummy(tmp_path):
    _, prepared = _prepare(tmp_path, DUPLICATED, PsiSpec(keys=("id",), duplicates="all"))
    lines = prepared.libpsi_input.read_bytes().split(b"\n")
    assert lines[0] == b"k" and lines[-1] == b""
    tokens = lines[1:-1]
    assert len(tokens) == len(prepared.unique_keys) + 1 == len(set(tokens))
    assert all(len(t) == 20 for t in tokens)


def test_plain_and_quoted_files_read_the_same(tmp_path):
    rows = [[f"id{i}", f"v{i}"] for i in range(50)] + [["", "empty"], ["id3", "dup"]]
    plain = "id,v\n" + "".join(f"{a},{b}\n" for a, b in rows)
    quoted = "id,v\n" + "".join(f'"{a}","{b}"\n' for a, b in rows)
    spec = PsiSpec(keys=("id",), duplicates="all")
    snap_p, p = _prepare(tmp_path, plain, spec, "p.csv")
    snap_q, q = _prepare(tmp_path, quoted, spec, "q.csv")
    assert snap_p.plain and not snap_q.plain
    assert np.array_equal(p.unique_keys, q.unique_keys) and np.array_equal(p.row_uid, q.row_uid)


def test_one_column_file_blank_line_is_an_empty_key(tmp_path):
    _, prepared = _prepare(tmp_path, "id\na\n\nb\n", PsiSpec(keys=("id",)))
    assert prepared.input_rows == 3 and prepared.empty_key_rows == 1


# --- output ----------------------------------------------------------------------------------


def _states_for(prepared, matched_keys):
    index = np.searchsorted(prepared.unique_keys, np.asarray(matched_keys, dtype=prepared.unique_keys.dtype))
    return _output.row_states(prepared, index)


@pytest.mark.parametrize("quoted", [False, True])
@pytest.mark.parametrize("join", ["inner", "left", "difference"])
def test_output_joins(tmp_path, join, quoted):
    body = "id,v\nA,1\nB,2\nA,3\n,4\n"
    if quoted:
        body = body.replace("B,2", '"B","two, with comma"')
    snap, prepared = _prepare(tmp_path, body, PsiSpec(keys=("id",), duplicates="first"))
    match_a = prepared.unique_keys[prepared.row_uid[0]]
    out = tmp_path / "out.csv"
    written = _output.write_output(snap, _states_for(prepared, [match_a]), join, out)
    header, rows = read_csv(out)
    keys = [r[0] for r in rows]
    if join == "inner":
        assert header == ["id", "v"] and keys == ["A"]
    elif join == "left":
        assert header == ["id", "v", MATCH_COLUMN]
        assert [(r[0], r[-1]) for r in rows] == [("A", "1"), ("B", "0"), ("", "0")]
    else:
        assert keys == ["B", ""]
    assert written == len(rows)
    if quoted and join != "inner":
        assert [r[1] for r in rows if r[0] == "B"] == ["two, with comma"]


def test_output_is_atomic(tmp_path, monkeypatch):
    snap, prepared = _prepare(tmp_path, "id,v\nA,1\nB,2\n", PsiSpec(keys=("id",)))
    out = tmp_path / "out.csv"
    out.write_text("previous result\n")

    def boom(*_args, **_kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(_output, "_write_plain", boom)
    with pytest.raises(OSError):
        _output.write_output(snap, _states_for(prepared, []), "inner", out)
    assert out.read_text() == "previous result\n"
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".part")] == []


def test_output_path_checks(tmp_path):
    src = write_csv(tmp_path / "a.csv", ["id"], [["1"]])
    with pytest.raises(InvalidInput, match="differ from the input"):
        _output.check_output_path(src, src)
    with pytest.raises(InvalidInput, match="directory does not exist"):
        _output.check_output_path(tmp_path / "missing" / "o.csv", src)
    with pytest.raises(InvalidInput, match="is a directory"):
        _output.check_output_path(tmp_path, src)


def test_line_endings_bom_and_block_boundaries(tmp_path, monkeypatch):
    from misuan.psi import _csvio

    rows = [(f"k{i}", f"é{i}") for i in range(40)]
    lf = "id,v\n" + "".join(f"{a},{b}\n" for a, b in rows)
    variants = {
        "crlf.csv": lf.replace("\n", "\r\n"),
        "bom.csv": "\ufeff" + lf,
        "nofinal.csv": lf.rstrip("\n"),
        "blank.csv": lf.replace("k5,", "\nk5,") + "\n\n",
    }
    spec = PsiSpec(keys=("id",))
    _, ref = _prepare(tmp_path, lf, spec, "lf.csv")
    monkeypatch.setattr(_csvio, "_BLOCK_BYTES", 7)  # many blocks, lines split across them
    for name, text in variants.items():
        snap, got = _prepare(tmp_path, text, spec, name)
        assert snap.plain
        assert got.input_rows == 40 and np.array_equal(got.row_uid, ref.row_uid), name
        assert np.array_equal(got.unique_keys, ref.unique_keys), name
