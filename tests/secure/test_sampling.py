"""Token selection under MPC: one-hot argmax and Gumbel-max temperature sampling."""

import jax
import numpy as np
import pytest

from misuan.models import plain_ops as plain
from misuan.mpc.simulator import simulate
from misuan.secure import sampling

RNG = np.random.default_rng(7)


def test_argmax_onehot_plaintext_semantics():
    logits = np.array([[1.0, 3.0, 3.0, -2.0, 0.5], [9.0, 1.0, 2.0, 3.0, 9.0]], np.float32)
    out = np.asarray(sampling.argmax_onehot(logits))
    np.testing.assert_array_equal(out, [[0, 1, 0, 0, 0], [1, 0, 0, 0, 0]])  # ties -> first
    argmax_onehot = jax.jit(sampling.argmax_onehot)
    for n in (1, 2, 3, 7, 8, 33, 4097, 5001):  # pairs above 4096 entries, groups of 4 below
        x = RNG.normal(size=(4, n)).astype(np.float32)
        np.testing.assert_array_equal(argmax_onehot(x), plain.argmax_onehot(x))
    # ties inside one group of 4, across groups, and a whole row of one value
    x = np.zeros((4, 13), np.float32)
    x[0, [5, 6]] = 1.0
    x[1, [6, 7, 9]] = 1.0
    x[2, [3, 12]] = 1.0
    np.testing.assert_array_equal(np.argmax(argmax_onehot(x), -1), [5, 6, 3, 0])


def test_argmax_onehot_under_mpc_is_exact():
    """Batch axes, a non-power-of-two vocabulary, logits spread like an LM head (+-30)."""
    logits = RNG.uniform(-30, 30, (2, 3, 1000)).astype(np.float32)
    logits[0, 0, 17] = logits[0, 0, 900] = 40.0  # a tie: lowest index wins
    logits[1, 2, [41, 42, 43]] = 45.0  # a tie inside one group of 4
    out = simulate(sampling.argmax_onehot, logits)
    np.testing.assert_array_equal(out, plain.argmax_onehot(logits))
    np.testing.assert_array_equal(out.sum(-1), 1.0)
    assert out[0, 0, 17] == 1.0 and out[1, 2, 41] == 1.0


def test_gumbel_max_matches_plaintext_twin_under_mpc():
    logits = RNG.normal(0, 3, (4, 500)).astype(np.float32)
    noise = sampling.gumbel_noise(123, logits.shape)
    out = simulate(lambda lg, g: sampling.gumbel_max_onehot(lg, 0.7, g), logits, noise)
    np.testing.assert_array_equal(out, plain.gumbel_max_onehot(logits, 0.7, noise))
    # temperature as a (secret) traced scalar works too
    out_t = simulate(sampling.gumbel_max_onehot, logits, np.float32(0.7), noise)
    np.testing.assert_array_equal(out_t, out)


def test_zero_temperature_is_greedy():
    logits = RNG.normal(size=(2, 50)).astype(np.float32)
    noise = sampling.gumbel_noise(0, logits.shape)
    greedy = jax.jit(lambda lg, g: sampling.gumbel_max_onehot(lg, 0.0, g))(logits, noise)
    np.testing.assert_array_equal(greedy, plain.argmax_onehot(logits))


def test_gumbel_noise_is_reproducible_and_finite():
    a, b, c = (sampling.gumbel_noise(s, (1000,)) for s in (5, 5, 6))
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    assert a.dtype == np.float32 and np.isfinite(a).all()
    assert abs(a.mean() - np.euler_gamma) < 0.1  # Gumbel mean


@pytest.mark.parametrize("temperature", [0.5, 1.0, 2.0])
def test_gumbel_max_samples_softmax_over_temperature(temperature):
    """Plaintext statistics of the trick: frequencies match softmax(logits / T)."""
    logits = np.array([2.0, 1.0, 0.0, -1.0, 0.5], np.float32)
    n = 20_000
    noise = sampling.gumbel_noise(int(temperature * 100), (n, logits.size))
    batch = np.broadcast_to(logits, noise.shape)  # (n, 5)
    picks = np.asarray(plain.gumbel_max_onehot(batch, temperature, noise))
    freq = picks.mean(0)
    p = np.exp(logits / temperature) / np.exp(logits / temperature).sum()
    assert np.abs(freq - p).max() < 4 * np.sqrt(p * (1 - p) / n).max() + 1e-3
