import os

import pytest

from misuan._fs import atomic_write
from misuan.errors import ConfigError, IntegrityError, InvalidInput, NotFound
from misuan.node.store import ShareStore, create_key_file


@pytest.fixture()
def store(tmp_path):
    create_key_file(tmp_path / "k")
    return ShareStore(tmp_path / "shares", tmp_path / "k")


def test_roundtrip_and_encrypted_at_rest(store):
    data = b"share bytes " * 1000
    store.write("models/m/1/w", data)
    assert store.read("models/m/1/w") == data
    raw = store.path_of("models/m/1/w").read_bytes()
    assert b"share bytes" not in raw
    assert "HIDDEN" in repr(store)


def test_key_file_is_private(tmp_path):
    create_key_file(tmp_path / "k2")
    assert (tmp_path / "k2").stat().st_mode & 0o777 == 0o600


def test_tampered_file_names_the_file(store):
    store.write("a/b", b"x" * 100)
    p = store.path_of("a/b")
    raw = bytearray(p.read_bytes())
    raw[40] ^= 1
    p.write_bytes(bytes(raw))
    with pytest.raises(IntegrityError, match=str(p)):
        store.read("a/b")


def test_truncated_file(store):
    store.write("a/c", b"x" * 100)
    p = store.path_of("a/c")
    p.write_bytes(p.read_bytes()[:50])
    with pytest.raises(IntegrityError, match="a/c"):
        store.read("a/c")
    p.write_bytes(b"MSE")
    with pytest.raises(IntegrityError, match="truncated"):
        store.read("a/c")


def test_swapped_files_fail(store):
    store.write("x/one", b"1" * 10)
    store.write("x/two", b"2" * 10)
    store.path_of("x/one").write_bytes(store.path_of("x/two").read_bytes())
    with pytest.raises(IntegrityError):
        store.read("x/one")


def test_wrong_key(tmp_path, store):
    store.write("a/d", b"secret")
    create_key_file(tmp_path / "other")
    other = ShareStore(store.root, tmp_path / "other")
    with pytest.raises(IntegrityError, match="wrong node key"):
        other.read("a/d")


def test_key_check_refuses_a_wrong_key(tmp_path, store):
    store.ensure_key_check()
    store.ensure_key_check()  # same key: fine
    create_key_file(tmp_path / "other")
    with pytest.raises(ConfigError, match="wrong node key"):
        ShareStore(store.root, tmp_path / "other").ensure_key_check()


@pytest.mark.parametrize("bad", ["", "../x", "a/../../b", "/abs", "a//b", "a/.", "bad name", "a\x00b"])
def test_bad_names(store, bad):
    with pytest.raises(InvalidInput):
        store.write(bad, b"x")


def test_missing(store):
    with pytest.raises(NotFound):
        store.read("nope/nothing")


def test_crash_mid_write_keeps_the_old_file(tmp_path, monkeypatch):
    target = tmp_path / "f"
    atomic_write(target, b"old contents")

    def boom(fd):
        raise OSError("disk on fire")

    monkeypatch.setattr(os, "fsync", boom)
    with pytest.raises(OSError, match="disk on fire"):
        atomic_write(target, b"new contents that never land")
    monkeypatch.undo()
    assert target.read_bytes() == b"old contents"
    assert [p.name for p in tmp_path.iterdir()] == ["f"]  # no temp file left behind


def test_crash_mid_store_write_keeps_old_share(store, monkeypatch):
    store.write("m/w", b"version one")
    monkeypatch.setattr(os, "replace", lambda *a: (_ for _ in ()).throw(OSError("killed")))
    with pytest.raises(OSError):
        store.write("m/w", b"version two")
    monkeypatch.undo()
    assert store.read("m/w") == b"version one"
    assert sorted(p.name for p in store.path_of("m/w").parent.iterdir()) == ["w"]


def test_stream_writer_roundtrip_and_abort(store):
    w = store.writer("m/stream", "model:m:1:t")
    for i in range(5):
        w.update(bytes([i]) * 100_000)
    sha = w.commit()
    import hashlib

    data = b"".join(bytes([i]) * 100_000 for i in range(5))
    assert sha == hashlib.sha256(data).hexdigest()
    assert store.read("m/stream", "model:m:1:t") == data
    with pytest.raises(IntegrityError):  # bound to its associated data
        store.read("m/stream", "model:m:1:other")
    w2 = store.writer("m/never", "x")
    w2.update(b"partial")
    w2.abort()
    assert not store.exists("m/never")
    assert [p.name for p in store.path_of("m/never").parent.iterdir()] == ["stream"]
