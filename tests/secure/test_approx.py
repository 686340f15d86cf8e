"""Polynomial approximations: plaintext fit quality of the hard-coded tables, and exp under MPC."""

import jax.numpy as jnp
import numpy as np
import pytest

from misuan.mpc.simulator import simulate
from misuan.secure import approx


def _poly(x: np.ndarray, lo: float, hi: float, coeffs) -> np.ndarray:
    z = (2 * x - lo - hi) / (hi - lo)
    return np.polynomial.polynomial.polyval(z, coeffs)


def test_exp_table_fits_exp():
    x = np.linspace(-approx.EXP_CUTOFF, 0, 100_001)
    approx_exp = _poly(x, -approx.EXP_CUTOFF, 0, approx.EXP_COEFFS)
    assert np.abs(approx_exp - np.exp(x)).max() < 2e-7


def test_silu_table_fits_g():
    t = np.linspace(0, approx.SILU_CLAMP, 100_001)
    err = np.abs(_poly(t, 0, approx.SILU_CLAMP, approx.SILU_G_COEFFS) - t / (1 + np.exp(t)))
    assert err.max() < 2e-5
    assert approx.SILU_CLAMP / (1 + np.exp(approx.SILU_CLAMP)) < 1e-4  # the clamp's tail error


def test_tables_are_reproducible_from_chebyshev_fit():
    again = approx.chebyshev_fit(np.exp, -14.0, 0.0, 15)
    np.testing.assert_allclose(again, approx.EXP_COEFFS, rtol=1e-9, atol=1e-12)
    again = approx.chebyshev_fit(lambda t: t / (1 + np.exp(t)), 0.0, 12.0, 15)
    np.testing.assert_allclose(again, approx.SILU_G_COEFFS, rtol=1e-9, atol=1e-12)


def test_horner_evaluates_polynomials():
    z = jnp.linspace(-1, 1, 11)
    np.testing.assert_allclose(approx.horner(z, (1.0, -2.0, 3.0)), 1 - 2 * z + 3 * z**2, rtol=1e-6)


@pytest.mark.parametrize("degree", [3, 4, 5, 7, 8, 12, 15, 16, 23])
def test_estrin_evaluates_polynomials_of_any_degree(degree):
    coeffs = tuple(np.random.default_rng(degree).uniform(-1, 1, degree + 1))
    z = np.linspace(-1, 1, 101)
    got = np.asarray(approx.estrin(jnp.asarray(z), coeffs))
    np.testing.assert_allclose(got, np.polynomial.polynomial.polyval(z, coeffs), atol=1e-5)


def test_estrin_block_size_minimises_rounds():
    # (coefficients, block size): degree 5 -> 4 (3 rounds), degree 12/15 -> 8 (4 rounds)
    assert [2 ** approx._estrin_block_log2(n) for n in (6, 13, 16)] == [4, 8, 8]


@pytest.mark.parametrize("protocol", ["ABY3"])
def test_exp_nonpositive_under_mpc(protocol):
    """Bound: abs <= 1e-4 on [-14, 0], rel <= 1e-3 on [-4, 0] (measured 5.2e-5 / 7.2e-4)."""
    x = np.linspace(-approx.EXP_CUTOFF, 0, 4001).astype(np.float32)
    y = simulate(approx.exp_nonpositive, x, protocol=protocol)
    ref = np.exp(x.astype(np.float64))
    assert np.abs(y - ref).max() < 1e-4
    assert (np.abs(y - ref) / ref)[x >= -4].max() < 1e-3
