"""The fast ABY3 sharer writes exactly what SPU's own Io would."""

import numpy as np
import pytest
from spu import api as spu_api
from spu import libspu

from misuan.mpc import _aby3
from misuan.mpc.shares import decode_share


@pytest.fixture(scope="module")
def io():
    cfg = libspu.RuntimeConfig(protocol=libspu.ProtocolKind.ABY3, field=libspu.FieldType.FM64)
    return spu_api.Io(3, cfg)


SHAPES = [(1,), (7,), (3, 5), (2, 3, 4), (513, 65)]


@pytest.mark.parametrize("shape", SHAPES)
def test_frames_match_spu(io, shape):
    x = (np.random.default_rng(0).standard_normal(shape) * 30).astype(np.float32)
    ref = io.make_shares(x, libspu.Visibility.VIS_SECRET)
    shares = [decode_share(bytes(f)) for f in _aby3.Aby3Sharer(18).frames(x)]
    assert all(bytes(s.meta) == bytes(ref[0].meta) for s in shares)
    np.testing.assert_allclose(io.reconstruct(shares), x, atol=2**-17)


@pytest.mark.parametrize("shape", SHAPES)
def test_compressed_frames_expand_to_valid_shares(io, shape):
    x = (np.random.default_rng(1).standard_normal(shape) * 30).astype(np.float32)
    parts = _aby3.CompressedSharer(18).parts(x)
    shares = []
    for p in parts:
        s = libspu.Share()
        s.meta, s.share_chunks = _aby3.expand(b"".join(bytes(q) for q in p))
        shares.append(s)
    np.testing.assert_allclose(io.reconstruct(shares), x, atol=2**-17)
    n = x.size
    sizes = [sum(len(q) for q in p) for p in parts]
    assert sizes[0] < 200 and abs(sizes[1] - 8 * n) < 200 and abs(sizes[2] - 8 * n) < 200


def test_single_shares_look_random():
    x = np.full(50_000, 3.25, np.float32)
    for f in _aby3.Aby3Sharer(18).frames(x):
        body = np.frombuffer(bytes(f)[-16 * 40_000 :], dtype=np.uint64)
        assert 0.45 < np.mean(body >> np.uint64(63)) < 0.55
        assert len(np.unique(body)) == body.size


def test_buffers_are_reused_and_fresh_randomness_each_call():
    sh = _aby3.Aby3Sharer(18)
    a = bytes(sh.frames(np.ones(10_000, np.float32))[0])
    b = bytes(sh.frames(np.ones(10_000, np.float32))[0])
    assert a != b


def test_expand_rejects_wrong_sizes():
    p = _aby3.CompressedSharer(18).parts(np.ones(100, np.float32))[1]
    frame = b"".join(bytes(q) for q in p)
    with pytest.raises(ValueError):
        _aby3.expand(frame[:-8])


def test_prg_range_continues_the_stream():
    seed = bytes(range(32))
    whole = _aby3.prg_u64(seed, 1000)
    for s, t in [(0, 10), (2, 999), (500, 1000), (998, 1000)]:
        np.testing.assert_array_equal(_aby3.prg_u64_range(seed, s, t), whole[s:t])
    with pytest.raises(ValueError):
        _aby3.prg_u64_range(seed, 3, 10)


def test_expand_streams_seeds_across_chunks(io, monkeypatch):
    # small chunks (SPU's are 128 MiB): every seeded part is generated chunk by chunk
    monkeypatch.setattr(_aby3, "CHUNK", 16 * 1000)
    x = (np.random.default_rng(2).standard_normal(4321) * 30).astype(np.float32)
    shares = []
    for p in _aby3.CompressedSharer(18).parts(x):
        s = libspu.Share()
        s.meta, s.share_chunks = _aby3.expand(b"".join(bytes(q) for q in p))
        assert len(s.share_chunks) == 5
        shares.append(s)
    np.testing.assert_allclose(io.reconstruct(shares), x, atol=2**-17)
