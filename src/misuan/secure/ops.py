"""MPC-friendly LLaMA ops under SPU fixed point, each with a plaintext twin in ``plain.py``.

The five model ops (``softmax, silu, rms_norm, rope, matmul``) have exactly the
signatures of ``misuan.models.llama.LlamaOps``; ``secure_llama_ops()`` returns them as a
dict. ``embed_onehot`` is the oblivious embedding lookup.

Error bounds are against the float64 plaintext twin on the same float32 inputs, checked
under the SPU simulator in ``tests/secure`` (FM64, 18 fractional bits). They do not
depend on ``fxp_exp_mode`` or ``sigmoid_mode``: these ops use neither SPU's exp nor its
sigmoid. Measured values are ABY3 / CHEETAH. Input ranges are part of each bound.

Fixed-point facts behind the choices (FM64, f = 18):
* resolution 2^-18 ~ 3.8e-6; public constants are encoded to the same grid, so a small
  constant like 1e-5 or 1/576 carries a large relative error;
* every product is formed at scale 2^36 in a 64-bit ring: |a * b| >= 2^27 ~ 1.3e8
  wraps silently (also for sums accumulated inside one dot product); under CHEETAH
  products above ~2^26 already come out wrong now and then;
* a 0/1 select (``jnp.where``) is exact; multiplying by a 0/1 float is a fixed-point
  product and leaves truncation noise on the "zeros" (CHEETAH: -1 ulp half the time).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

from misuan.errors import InvalidInput
from misuan.secure import approx

# Masked scores are moved this far down before the row max, and the row max is clamped
# at -MASK_FILL / 2, so masked entries always land below the exp cutoff and are removed
# by the cutoff select itself (no comparison on the mask, which may be secret). Valid for
# |scores| < MASK_FILL / 2 - EXP_CUTOFF = 4986.
MASK_FILL: float = 1e4


# rms_norm first pass: SPU's rsqrt is accurate on [~1e-3, 2^17) and returns 0 above.
# One rsqrt call on two scalings of mean(x^2) + eps covers mean(x^2) in [1e-4, 2^27]
# (2^27: |x| ~ 11585, where x^2 itself wraps); the larger result is the valid one. The
# floor (4 ulps) keeps the rsqrt input positive on zero rows: CHEETAH's truncation
# makes mean(x^2) of tiny x a few ulps negative.
_RMS_SCALES: tuple[float, float] = (2.0**4, 2.0**-10)
_RSQRT_FLOOR: float = 2.0**-16


def softmax(scores: jax.Array, mask: jax.Array) -> jax.Array:
    """Masked softmax over the last axis; masked entries get probability 0.

    scores (..., T, S) secret; mask (T, S) float 0/1 (1 = may attend), public or secret.

    PUMA recipe with a better exp: move masked scores down by MASK_FILL (one product
    with the mask: local if the mask is public, one secret product per entry if not),
    subtract the row max (clamped at -MASK_FILL/2, so fully masked rows need no special
    case), exponentiate with ``approx.exp_nonpositive`` (accurate on [-14, 0]), zero
    everything below the cutoff -14 with one select (this also removes every masked
    entry, exactly), and multiply by the reciprocal of the row sum (one reciprocal per
    row, not a division per element: 2.4x less communication). The mask is never
    compared, so a secret mask costs no extra comparisons.

    Error bound: |p - p_ref| <= 2e-4 for |scores| < 4986 (measured 6.5e-5 / 8.3e-5 on
    scores U(-30, 30), U(-100, 100), N(0, 4) and one-dominant-key rows, causal masks,
    S <= 256). Masked entries and fully masked rows are exactly 0 under ABY3 and at most
    2^-17 under CHEETAH (truncation noise). SPU's Taylor exp (the PUMA default) gives
    3e-3..5e-3 on the same inputs.
    """
    mask = mask.astype(scores.dtype)
    masked = scores * mask + (mask - 1.0) * MASK_FILL  # (..., T, S) secret
    row_max = jnp.max(masked, axis=-1, keepdims=True)  # (..., T, 1) secret
    row_max = jnp.maximum(row_max, -0.5 * MASK_FILL)  # fully masked rows: cut everything
    x = masked - row_max  # (..., T, S) secret: [-spread, 0] unmasked, < -4986 masked
    e = jnp.where(x > -approx.EXP_CUTOFF, approx.exp_nonpositive(x), 0.0)  # (..., T, S)
    total = jnp.sum(e, axis=-1, keepdims=True)  # (..., T, 1) secret, >= ~1 or exactly 0
    return e * (1.0 / total)  # (..., T, S) secret; 0 * (1/0 garbage) = 0 on empty rows


def silu(x: jax.Array) -> jax.Array:
    """x * sigmoid(x), computed as relu(x) - g(min(|x|, 12)) with g(t) = t / (1 + e^t).

    g is a degree-12 polynomial on [0, 12] (``approx.SILU_G_COEFFS``); |x| and relu share
    one comparison, the clamp is a second. No exp and no reciprocal: SPU's
    1/(1+exp(-x)) returns garbage for x < ~-18.7 (its Taylor exp wraps) and costs 2x.

    Error bound: |y - silu(x)| <= 5e-4 for |x| < 1e4 (measured 2.2e-4 / 2.4e-4 on
    N(0, 4) and [-60, 60], |x| up to 9000).
    """
    positive = x > 0  # (...) secret bool
    relu = jnp.where(positive, x, 0.0)
    t = jnp.minimum(2.0 * relu - x, approx.SILU_CLAMP)  # min(|x|, 12)
    return relu - approx.poly_on_interval(t, 0.0, approx.SILU_CLAMP, approx.SILU_G_COEFFS)


def rms_norm(x: jax.Array, weight: jax.Array, eps: float) -> jax.Array:
    """x * rsqrt(mean(x^2, -1) + eps) * weight, accurate over a wide range of scales.

    x (..., D) secret, weight (D,), eps a Python float >= 0. A single fixed-point rsqrt
    fails at both ends: mean(x^2) = 1e-4 has only ~26 significant ulps, and SPU's rsqrt
    returns 0 for inputs >= 2^17 (rms > 362). Pass 1 takes one rsqrt of mean(x^2) + eps
    at two public scalings (one call: no extra rounds) and keeps the valid result, 1/rms
    to ~1e-3. Pass 2 renormalises y = x * r1 (rms ~ 1, full precision) with a second
    rsqrt plus one Newton step; pass 1's error is one factor per row and cancels. Means
    and eps use well-encoded constants (``_mean_last``, ``_mul_public``).
    Cost vs the naive op (measured, ABY3, (64, 576)): 1.7x the communication (3.8 vs
    2.25 MB), 2.5x the rounds (150 vs 59 send actions): 2 sequential rsqrt on (..., 1)
    and 3 more elementwise products.

    Error bound, relative to the row's max |output|: 1e-4 for rms(x) in [0.1, 1000],
    1e-3 for rms(x) in [0.01, 0.1) (input encoding dominates), |x| <= 8000 (x^2 must
    not wrap; CHEETAH's limit is the lower one). Measured over 4 runs: 1.7e-5 and
    1.1e-4 (ABY3 and CHEETAH, eps 1e-5 and 1e-6); all-zero and rms ~ 1e-3 rows stay
    finite and within 1e-3. The naive op returns 0 above rms ~ 362.
    """
    if eps < 0:
        raise InvalidInput("rms_norm eps must be >= 0")
    lo, hi = _RMS_SCALES
    ms = jnp.mean(x * x, axis=-1, keepdims=True)  # (..., 1) secret, 1/D encoding ok here
    # The nonzero constant added before scaling stops XLA from folding 1/D * 2^-10 into
    # one sub-ulp constant (which SPU then applies wrongly to large sums).
    v = ms + (eps + _RSQRT_FLOOR)  # (..., 1) secret
    u = jnp.stack([v * lo, v * hi])  # (2, ..., 1) secret
    r = jax.lax.rsqrt(u)  # (2, ..., 1) secret; 0 where u >= 2^17
    r1 = jnp.maximum(r[0] * math.sqrt(lo), r[1] * math.sqrt(hi))  # (..., 1) ~ 1/rms
    y = x * r1  # (..., D) secret, rms ~ 1
    ms2 = _mean_last(y * y)  # (..., 1) secret
    if eps > 0:
        ms2 = ms2 + _mul_public(r1 * r1, eps)
    r2 = jax.lax.rsqrt(ms2)  # (..., 1), rel. error ~1.5e-4
    r2 = r2 * (1.5 - 0.5 * ms2 * r2 * r2)  # Newton step: ~1e-7
    return y * r2 * weight


def _mul_public(v: jax.Array, c: float) -> jax.Array:
    """v * c for a public constant c > 0, with c encoded to 2^-19 relative precision.

    ``v * c`` encodes c with 18 fractional bits (1e-5 becomes 1.14e-5 or 7.6e-6), and
    XLA folds chains of constant factors, so scaling c into [1, 2) and back with plain
    multiplications does not help. A dot with the public (1,) vector c * 2^k is not
    folded; the * 2^-k after it is exact up to truncation. |v * c * 2^k| < 2^27.
    """
    k = -math.floor(math.log2(c))  # c * 2^k in [1, 2)
    return (v[..., None] @ jnp.full((1,), c * 2.0**k, v.dtype)) * 2.0**-k  # v.shape


def _mean_last(v: jax.Array) -> jax.Array:
    """Mean over the last axis (keepdims) to 2^-19 relative (``jnp.mean`` multiplies by
    1/D on the 2^-18 grid: 2.4e-4 relative error for D = 576). |mean| * 2^ceil(log2 D)
    must stay below 2^27."""
    total = jnp.sum(v, axis=-1, keepdims=True)  # (..., 1)
    return _mul_public(total, 1.0 / v.shape[-1])


def rope(x: jax.Array, cos: jax.Array, sin: jax.Array) -> jax.Array:
    """Rotary embedding, rotate-half convention (Hugging Face LLaMA).

    x (..., T, H, hd) secret; cos, sin (T, hd) public: two local products per element.
    Error bound: |y - ref| <= 4e-6 * max|x| + 1e-5 (the 2^-19 encoding of cos/sin times
    |x|, plus truncation; measured 3.8e-6 * max|x|).
    """
    half = x.shape[-1] // 2
    rotated = jnp.concatenate([-x[..., half:], x[..., :half]], axis=-1)  # (..., T, H, hd)
    cos = cos[:, None, :]  # (T, 1, hd) public
    sin = sin[:, None, :]  # (T, 1, hd) public
    return x * cos + rotated * sin


def matmul(x: jax.Array, w: jax.Array) -> jax.Array:
    """x @ w (identity hook; store secret weights pre-transposed, ``x @ W.T`` costs ~3x).

    Error bound: input encoding plus one truncation,
    |y_ij - ref_ij| <= 2^-18 * (sum_k |x_ik| + sum_k |w_kj|) + 2^-17.
    Every partial sum must stay below 2^26 in magnitude (ring wrap-around; 2^27 ABY3).
    """
    return x @ w


def embed_onehot(onehot: jax.Array, table: jax.Array) -> jax.Array:
    """Oblivious embedding lookup: onehot (T, V) @ table (V, D) -> (T, D).

    With a secret one-hot (e.g. from ``sampling.argmax_onehot``) no node learns which
    rows were read. Error bound: |y - table[token]| <= 2^-17 (measured 3.7e-6 / 7.5e-6).
    """
    return onehot @ table


def secure_llama_ops() -> dict[str, object]:
    """The MPC versions of the five ``LlamaOps`` callables, keyed by field name."""
    return {
        "softmax": softmax,
        "silu": silu,
        "rms_norm": rms_norm,
        "rope": rope,
        "matmul": matmul,
    }
