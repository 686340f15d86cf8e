"""Every node checks each uploaded share frame: a secret share of the declared shape and size.

A public share is the plaintext weights (in fixed point) on a node's disk; a
frame of another shape or size would be read back as something else at load.
Each bad frame is sent to every node of a real cluster and must be refused
with a one-line ``InvalidInput`` before anything is staged.
"""

from __future__ import annotations

import struct

import numpy as np
import pytest
from spu import libspu

import misuan
from misuan.mpc import _aby3
from misuan.mpc.shares import encode_share

SHAPE = (8, 8)
W = np.random.default_rng(3).normal(size=SHAPE).astype(np.float32)
BIG = (64, 64)  # >= 4096 values: compressed (MSC1) frames, as publish sends them


@pytest.fixture()
def upload(client3):
    """An upload of model 'frames' declaring w (8, 8) and big (64, 64); aborted afterwards."""
    body = {
        "version": 1,
        "kind": "llama",
        "config": {},
        "tokenizer": "{}",
        "tensors": [{"name": "w", "shape": list(SHAPE)}, {"name": "big", "shape": list(BIG)}],
    }
    uids = client3.fanout(lambda i: client3.nodes[i].begin_upload("admin/frames", body))
    yield uids
    client3.fanout(lambda i: client3.nodes[i].abort_upload(uids[i]))


def _send(client, uids, tensor, frames):
    """Send frame i to node i; return one error per node (None if it was accepted)."""
    errors = []
    for i, node in enumerate(client.nodes):
        try:
            node.put_tensor(uids[i], tensor, frames[i])
            errors.append(None)
        except misuan.MisuanError as exc:
            errors.append(exc)
    return errors


def _refused(client, uids, tensor, frames, match):
    errors = _send(client, uids, tensor, frames)
    for rank, exc in enumerate(errors):
        assert isinstance(exc, misuan.InvalidInput), f"node {rank} accepted a bad {tensor!r} frame ({exc!r})"
        assert match in str(exc) and "\n" not in str(exc), str(exc)


def _secret(client, x):
    return [s.data for s in client.sharer.share(x)]


def _frame(meta: bytes, chunks: list[bytes]) -> bytes:
    parts = [b"MSH1", struct.pack("<I", len(meta)), meta, struct.pack("<I", len(chunks))]
    for c in chunks:
        parts += [struct.pack("<Q", len(c)), c]
    return b"".join(parts)


def test_a_public_share_is_refused(client3, upload):
    """Public 'shares' are the weights themselves: refused even when padded to a secret share's size."""
    shares = client3.sharer._io.make_shares(W, libspu.Visibility.VIS_PUBLIC)
    frames = []
    for s in shares:
        chunks = [bytes(c) for c in s.share_chunks]
        # what a node would store: the weights themselves, in fixed point
        stored = np.frombuffer(b"".join(chunks)[-8 * W.size :], np.int64).reshape(SHAPE) / (1 << 18)
        np.testing.assert_allclose(stored, W, atol=2**-17)
        frames.append(_frame(bytes(s.meta), chunks + [bytes(8 * W.size)]))  # padded to 16 bytes per value
    _refused(client3, upload, "w", frames, "not a secret")
    _refused(client3, upload, "w", [encode_share(s) for s in shares], "not a secret")
    # the same plaintext under a meta that names the cluster's share storage but says "public"
    # (or "private"): only the visibility check can tell
    secret_meta = _aby3.meta_bytes(SHAPE)
    vis = _aby3._field_varint(3, _aby3.VIS_SECRET)
    ring = np.rint(W.astype(np.float64) * (1 << 18)).astype(np.int64)
    pairs = np.stack([ring, np.zeros_like(ring)], axis=-1).tobytes()  # (x, 0): x is the weight
    for visibility in (libspu.Visibility.VIS_PUBLIC, libspu.Visibility.VIS_PRIVATE):
        meta = secret_meta.replace(vis, _aby3._field_varint(3, int(visibility)))
        assert meta != secret_meta
        _refused(client3, upload, "w", [_frame(meta, [pairs])] * 3, "not a secret")


def test_a_share_of_another_shape_is_refused(client3, upload):
    """Same number of values, other shape: only the shape check can tell."""
    _refused(client3, upload, "w", _secret(client3, W.reshape(4, 16)), "does not match the declared")
    _refused(client3, upload, "w", _secret(client3, W[:4]), "does not match the declared")


def test_a_share_of_the_wrong_size_is_refused(client3, upload):
    good = _secret(client3, W)
    _refused(client3, upload, "w", [f + bytes(8192) for f in good], "expected")
    _refused(client3, upload, "w", [f[: len(f) - 200] for f in good], "expected")
    big = np.ones(BIG, np.float32)
    parts = _aby3.CompressedSharer().parts(big)
    _refused(client3, upload, "big", [[bytes(p) for p in f] + [b"\0" * 8] for f in parts], "expected")
    parts = _aby3.CompressedSharer().parts(big)
    _refused(client3, upload, "big", [b"".join(bytes(p) for p in f)[:-8] for f in parts], "expected")


def test_junk_is_refused_and_good_frames_are_accepted(client3, upload):
    _refused(client3, upload, "w", [b"not a share at all"] * 3, "not a misuan share frame")
    _refused(client3, upload, "w", [b"MSH1" + struct.pack("<I", 100_000) + bytes(64)] * 3, "header too large")
    _refused(client3, upload, "w", [b"MSH1" + struct.pack("<I", 4) + b"\xff" * 4 + bytes(1100)] * 3, "no valid meta")
    # positive controls: the frames publish sends are accepted by every node
    assert _send(client3, upload, "w", _secret(client3, W)) == [None] * 3
    parts = _aby3.CompressedSharer().parts(np.ones(BIG, np.float32))
    assert _send(client3, upload, "big", [[bytes(p) for p in f] for f in parts]) == [None] * 3
