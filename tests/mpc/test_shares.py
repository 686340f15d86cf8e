import numpy as np
import pytest

from misuan.config import MpcSettings
from misuan.errors import InvalidInput
from misuan.mpc.shares import SecretShare, Sharer, decode_share, encode_share


@pytest.mark.parametrize("protocol,n", [("ABY3", 3), ("CHEETAH", 2)])
def test_share_and_reveal(protocol, n):
    sharer = Sharer(MpcSettings(protocol=protocol), n)
    x = np.linspace(-3, 3, 24, dtype=np.float32).reshape(4, 6)
    shares = sharer.share(x)
    assert len(shares) == n
    np.testing.assert_allclose(sharer.reveal(shares), x, atol=1e-5)


def test_frame_roundtrip_and_hidden_repr():
    sharer = Sharer(MpcSettings(), 3)
    s = sharer.share(np.ones((3, 3), np.float32))[0]
    assert "HIDDEN" in repr(s) and "HIDDEN" in str(s)
    again = encode_share(decode_share(s.data))
    assert again == s.data


@pytest.mark.parametrize("cut", [3, 10, -1])
def test_truncated_frames_are_refused(cut):
    s = Sharer(MpcSettings(), 3).share(np.ones(8, np.float32))[0]
    with pytest.raises(InvalidInput):
        decode_share(s.data[:cut])


def test_garbage_is_refused():
    with pytest.raises(InvalidInput, match="bad magic"):
        decode_share(b"not a share at all")
    with pytest.raises(InvalidInput, match="trailing"):
        s = Sharer(MpcSettings(), 3).share(np.ones(2, np.float32))[0]
        decode_share(s.data + b"x")


def test_single_share_is_not_the_input():
    """One party's share carries neither the float32 bytes nor the fixed-point encoding."""
    x = np.array([1234.5, -42.25, 3.0, 7.75] * 16, np.float32)
    fxp = np.round(x.astype(np.float64) * (1 << 18)).astype(np.int64)
    for share in Sharer(MpcSettings(), 3).share(x):
        assert x.tobytes() not in share.data
        assert fxp[:4].tobytes() not in share.data
        assert fxp[:1].tobytes() not in share.data


def test_wrong_number_of_shares():
    sharer = Sharer(MpcSettings(), 3)
    shares = sharer.share(np.ones(2, np.float32))
    with pytest.raises(InvalidInput, match="need 3 shares"):
        sharer.reveal(shares[:2])
    assert isinstance(shares[0], SecretShare)
