"""MPC-friendly LLaMA ops under SPU fixed point, each with a plaintext twin in ``misuan.models.plain_ops``.

The six model ops (``softmax, silu, rms_norm, rope, matmul, linear``) have exactly the
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
import numpy as np

from misuan.errors import InvalidInput
from misuan.secure import approx

# Masked scores are moved this far down before the row max, and the row max is clamped
# at -MASK_FILL / 2, so masked entries always land below the exp cutoff and are removed
# by the cutoff select itself (no comparison on the mask, which may be secret). Valid for
# |scores| < MASK_FILL / 2 - EXP_CUTOFF = 4986.
MASK_FILL: float = 1e4


# rms_norm buckets u = mean(x^2) + eps by comparisons against public thresholds
# 2^(k/m), k/m in [_U_EXP_LO, _U_EXP_HI]: the bucket's public scale r0 puts
# r0^2 * u within 2^(+-1/(2m)) of 1, and a Taylor step does the rest (no SPU rsqrt).
# Many rows (prefill): m = 16 and a degree-2 step. Few rows (decode, at most
# _RMS_FINE_MAX_ROWS): m = 32 and a degree-1 step, one sequential product fewer
# (2x the compared elements: cheap for a few rows).
# Thresholds from 2^_U_EXP_WIDE up are compared against the wide mean(x^2) / 64
# (the plain sum of squares wraps the ring for rms > ~475 at D = 576).
_U_STEPS_PER_OCTAVE: int = 16
_U_FINE_STEPS_PER_OCTAVE: int = 32
_RMS_FINE_MAX_ROWS: int = 64
_U_EXP_LO: int = -17  # below: the lowest bucket (eps-dominated rows: eps = 1e-5 ~ 2^-16.6)
_U_EXP_HI: int = 23  # above: the highest bucket (rms ~ 2900)
_U_EXP_WIDE: int = 12  # thresholds >= 4096 (rms > 64) use the wide mean
_RMS_WIDE: float = 64.0  # the wide sum of squares is sum(x * x / 64)


def _rms_buckets(eps: float, d: int, steps: int = _U_STEPS_PER_OCTAVE) -> tuple[np.ndarray, np.ndarray, int]:
    """Public tables for ``rms_norm``: thresholds (n,) on the compared values (the first
    ``n_narrow`` on mean + eps, the rest on mean / 64) and, per bucket (n + 1: below
    the first threshold, between, above the last), the columns [r0, 64 r0, eps r0^2 d]
    with r0 = 1 / sqrt(the bucket's geometric middle); r0 is 0 in the buckets above
    2^_U_EXP_WIDE and 64 r0 is 0 below (there x / 64 is scaled by 64 r0: r0 itself would
    be as small as 128 ulps)."""
    exps = np.arange(_U_EXP_LO * steps, _U_EXP_HI * steps + 1) / steps
    thresholds = 2.0**exps  # (n,) on u
    compared = np.where(exps >= _U_EXP_WIDE, thresholds / _RMS_WIDE, thresholds)  # wide ones on mean / 64
    half_step = 0.5 / steps
    mids = 2.0 ** np.concatenate([[exps[0] - half_step], exps + half_step])  # (n + 1,) bucket middles
    r0 = mids**-0.5
    wide = mids > 2.0**_U_EXP_WIDE  # (n + 1,) bool
    table = np.stack([np.where(wide, 0.0, r0), np.where(wide, _RMS_WIDE * r0, 0.0), eps * r0**2 * d], axis=1)  # (n + 1, 3)
    return compared, table, int(np.sum(exps < _U_EXP_WIDE))


def softmax(scores: jax.Array, mask: jax.Array) -> jax.Array:
    """Masked softmax over the last axis; masked entries get probability 0.

    scores (..., T, S) secret; mask (T, S) float 0/1 (1 = may attend), public or secret.

    PUMA recipe with a better exp: move masked scores down by MASK_FILL (an additive
    bias, ``mask_bias``: one public-constant product per program, then local),
    subtract the row max (``row_max``, over the row plus one public -MASK_FILL/2 entry,
    so fully masked rows need no special case and no extra comparison), exponentiate
    with ``approx.exp_nonpositive`` (accurate on [-14, 0]), zero everything below the
    cutoff -14 with one select (this also removes every masked entry, exactly; the
    cutoff bits come from the max's own last comparison op, ``_max_and_cutoff``), and
    divide by the row sum (``divide_in_range``: one reciprocal per row, its last Newton
    step fused into the product by e; the sum lies in [1, S] because the max entry
    contributes exp(0) = 1). The mask is never compared, so a secret mask costs no extra
    comparisons.

    Error bound: |p - p_ref| <= 2e-4 for |scores| < 4986 (measured 6.5e-5 / 8.3e-5 on
    scores U(-30, 30), U(-100, 100), N(0, 4) and one-dominant-key rows, causal masks,
    S <= 256). Masked entries and fully masked rows are 0 within 1 ulp (3.8e-6) under ABY3
    (the truncation of the last product rarely leaves 1 ulp: measured once in 60 calls of
    a 3x24x24 causal softmax) and at most 3 ulps (1.2e-5) under CHEETAH (truncation noise
    of the last two products). SPU's
    Taylor exp (the PUMA default) gives 3e-3..5e-3 on the same inputs.
    """
    return softmax_biased(scores, mask_bias(mask.astype(scores.dtype)))


def mask_bias(mask: jax.Array) -> jax.Array:
    """(T, S) 0/1 mask -> additive bias: 0 where allowed, -MASK_FILL where masked.

    One product with a public constant (1-2 send actions under ABY3 for a secret mask):
    a program computes it once and every layer adds it (``softmax_biased``) instead of
    multiplying its scores by a secret mask (3 send actions per layer)."""
    return (mask - 1.0) * MASK_FILL  # (T, S)


def softmax_biased(scores: jax.Array, bias: jax.Array) -> jax.Array:
    """``softmax`` with the mask given as ``mask_bias(mask)``: masked scores are moved down
    by MASK_FILL (a local addition), which puts them below the -MASK_FILL / 2 floor for
    |scores| < 4986. Same error bound as ``softmax``."""
    masked = scores + bias  # (..., T, S) secret: masked entries < -MASK_FILL / 2 - 14
    floor = jnp.full(masked.shape[:-1] + (1,), -0.5 * MASK_FILL, masked.dtype)  # public
    row_max, keep = _max_and_cutoff(jnp.concatenate([masked, floor], axis=-1), approx.EXP_CUTOFF)
    # row_max (..., T, 1) secret; keep (..., T, S + 1) secret bool: entry > row_max - cutoff
    x = masked - row_max  # (..., T, S) secret: [-spread, 0] unmasked, < -4986 masked
    e = jnp.where(keep[..., :-1], approx.exp_nonpositive(x), 0.0)  # (..., T, S)
    total = jnp.sum(e, axis=-1, keepdims=True)  # (..., T, 1) secret, in [~1, S] or exactly 0
    return divide_in_range(e, total, e.shape[-1])  # (..., T, S); 0 * garbage = 0 on empty rows


# _max_and_cutoff: all-pairs comparisons are used while rows * n * group stays below this
# (beyond it the comparisons' computation costs more than the rounds they save: one
# compared element ~2.3 us, one comparison round ~12 ms, 3 processes on 2 cores).
# Decode over 64 or 128 cache slots stays below it; a 32-token prefill uses the tree.
_PAIRWISE_BUDGET: int = 1 << 14


def _max_and_cutoff(m: jax.Array, cutoff: float) -> tuple[jax.Array, jax.Array]:
    """Row max over the last axis (keepdims) and the bits m_j >= max - cutoff (..., n).

    ``jnp.max`` is a tree: ceil(log2 n) sequential comparisons (~11 send actions each
    under ABY3). Here the row is cut into groups of ~sqrt(n); within a group every pair
    is compared at once (one comparison op), the winner is found with an AND over its
    row of results (cheap boolean rounds) and picked by a select; then the same over
    the group winners. Ties go to the lowest index (a strict comparison against
    earlier entries), so exactly one entry wins. The last comparison op also compares every entry against
    every candidate for the max (the group winners, or the whole row when it is
    short): m_j >= max - cutoff iff m_j >= w - cutoff for every candidate w. This
    saves softmax the separate cutoff comparison (8 send actions under ABY3) for
    n * groups more compared elements. Beyond the pairwise budget: a tree max and one
    comparison.
    """
    n = m.shape[-1]
    rows = max(1, m.size // max(n, 1))
    group = max(2, math.isqrt(n - 1) + 1) if n > 16 else n
    if n <= 1 or rows * n * group > _PAIRWISE_BUDGET:
        row_max = jnp.max(m, axis=-1, keepdims=True)  # (..., 1)
        return row_max, m - row_max >= -cutoff
    cands = m  # (..., k) candidates for the max
    if group < n:
        n_groups = -(-n // group)
        padded = jnp.concatenate([m, jnp.repeat(m[..., :1], n_groups * group - n, axis=-1)], axis=-1)
        grouped = padded.reshape(*m.shape[:-1], n_groups, group)  # (..., n_groups, group)
        cands = _pairwise_max(grouped)[..., 0]  # (..., n_groups) group winners
    k = cands.shape[-1]
    idx = np.arange(k)
    strict = np.where(idx[None, :] < idx[:, None], -(2.0**-18), 0.0).astype(np.float32)  # lowest index wins
    d_max = cands[..., :, None] - cands[..., None, :] + strict  # (..., k, k) secret
    d_cut = m[..., :, None] - cands[..., None, :] + cutoff  # (..., n, k) secret
    bits = jnp.all(jnp.concatenate([d_max, d_cut], axis=-2) >= 0, axis=-1)  # (..., k + n) one comparison op
    row_max = jnp.sum(jnp.where(bits[..., :k], cands, 0.0), axis=-1, keepdims=True)  # (..., 1)
    return row_max, bits[..., k:]


def _pairwise_max(m: jax.Array) -> jax.Array:
    """Max over the last axis (keepdims) with one all-pairs comparison op."""
    n = m.shape[-1]
    idx = np.arange(n)
    # m_j wins against m_k if m_j > m_k (k < j) or m_j >= m_k (k > j): lowest index wins
    strict = np.where(idx[None, :] < idx[:, None], -(2.0**-18), 0.0).astype(np.float32)
    diff = m[..., :, None] - m[..., None, :]  # (..., n, n) secret: m_j - m_k
    wins = jnp.all(diff + strict >= 0, axis=-1)  # (..., n) secret bool, exactly one
    return jnp.sum(jnp.where(wins, m, 0.0), axis=-1, keepdims=True)  # (..., 1)


# reciprocal_in_range: buckets per octave of t and Newton steps. Many rows (prefill):
# 16 buckets per octave (start within 2.2% of 1/t) and two Newton steps. Few rows
# (decode): 64 per octave (start within 0.55%) and one step: 2 sequential products
# (4 send actions under ABY3) fewer per call, for 4x the compared elements (cheap for a
# few rows, 0.19 s per prefill layer at 288 rows).
_RECIP_STEPS_PER_OCTAVE: int = 16
_RECIP_FINE_STEPS_PER_OCTAVE: int = 64
_RECIP_FINE_MAX_ROWS: int = 64


def reciprocal_in_range(t: jax.Array, hi: float) -> jax.Array:
    """1/t for secret t in [1, hi] (public hi), in ~a third of the rounds of SPU's reciprocal.

    SPU's reciprocal normalises t with a 64-bit bit decomposition (~51 send actions
    under ABY3). With a known range one comparison op against 2^(j/m) up to
    2^K (K = ceil(log2 hi)) finds t's bucket [a, b) as a one-hot; y0 = 2 / (a + b)
    is a public dot with it (|1 - t y0| <= (2^(1/m) - 1) / (2^(1/m) + 1)), and Newton
    steps y (2 - t y) square that error: m = 16 and two steps (2.2e-7) for many rows,
    m = 64 and one step (2.9e-5) for at most ``_RECIP_FINE_MAX_ROWS`` rows (decode:
    ~12 send actions in all against 50 for SPU's 1/t).

    Error bound: |y - 1/t| <= 2^-17 + 1e-6 / t for t in [1, hi] with many rows,
    2^-17 + 3e-5 / t with few (the 2^-18 grid dominates the first). t below 1 (e.g.
    exactly 0 on an empty softmax row) gives a finite meaningless value, at most 4.
    """
    y, newton = _reciprocal_start(t, hi)
    for _ in range(newton):
        y = y * (2.0 - t * y)  # Newton: error e -> e^2
    return y


def divide_in_range(e: jax.Array, t: jax.Array, hi: float) -> jax.Array:
    """e / t for e (..., n) and secret t (..., 1) in [1, hi]: ``e * reciprocal_in_range(t, hi)``
    with the last Newton step fused into the product by e, one sequential product fewer:
    e y' = (e y) (2 - t y), with [e | t] * y as one product op. Error bound for e in
    [0, 1]: |y - e/t| <= 2^-16 + r e/t with r = 1e-6 for many rows, 3e-5 for few
    (``reciprocal_in_range``'s relative terms); e = 0 stays 0 for any t (empty rows)."""
    y, newton = _reciprocal_start(t, hi)
    for _ in range(newton - 1):
        y = y * (2.0 - t * y)  # Newton: error e -> e^2
    both = jnp.concatenate([e, t], axis=-1) * y  # (..., n + 1) secret: e y, t y (one product op)
    return both[..., :-1] * (2.0 - both[..., -1:])  # (..., n): e y (2 - t y)


def _reciprocal_start(t: jax.Array, hi: float) -> tuple[jax.Array, int]:
    """``reciprocal_in_range``'s start y0 (..., 1) from t's bucket, and its Newton step count."""
    fine = t.size <= _RECIP_FINE_MAX_ROWS
    steps = _RECIP_FINE_STEPS_PER_OCTAVE if fine else _RECIP_STEPS_PER_OCTAVE
    k = max(1, math.ceil(math.log2(max(hi, 2.0))))
    edges = 2.0 ** (np.arange(k * steps + 1) / steps)  # 1 .. 2^K
    bits = t >= jnp.asarray(edges[1:-1], t.dtype)  # (..., n - 1) secret bool: one comparison op
    start = 2.0 / (edges[:-1] + edges[1:])  # (n,) public: 2 / (a + b) per bucket
    y = _bucket_onehot(bits).astype(t.dtype) @ jnp.asarray(start[:, None], t.dtype)  # (..., 1)
    return y, 1 if fine else 2


def _bucket_onehot(bits: jax.Array) -> jax.Array:
    """(..., n) monotone step bits (value >= threshold_j) -> (..., n + 1) one-hot of the
    bucket (below the first threshold, between neighbours, above the last). Local: an
    XOR of neighbouring bits on boolean shares."""
    edge = jnp.ones(bits.shape[:-1] + (1,), bool)  # (..., 1) public
    steps = jnp.concatenate([edge, bits, ~edge], axis=-1)  # (..., n + 2): 1, bits, 0
    return steps[..., :-1] ^ steps[..., 1:]  # (..., n + 1) secret bool


# silu: for at most this many rows (decode) the relu and both halves of min(|x|, 12)
# come from one select op (one op fewer, 3n instead of 2n selected elements); more
# rows (prefill) select relu and the clamp separately (fewer elements).
_SILU_ONE_SELECT_MAX_ROWS: int = 8


def silu(x: jax.Array) -> jax.Array:
    """x * sigmoid(x), computed as relu(x) - g(min(|x|, 12)) with g(t) = t / (1 + e^t).

    g is a degree-15 polynomial on [0, 12] (``approx.SILU_G_COEFFS``, Estrin form: 4
    rounds of products). The three comparisons x > 0, x < 12, x > -12 run as one op.
    For at most ``_SILU_ONE_SELECT_MAX_ROWS`` rows one AND op gives the ranges
    0 < x < 12 and -12 < x <= 0, and ONE select op picks x - 12, -x - 12 (there) and x
    (where x > 0): t = 12 + both, relu the third. For more rows relu and the clamp are
    two selects. No exp and no reciprocal: SPU's 1/(1+exp(-x)) returns garbage for
    x < ~-18.7 (its Taylor exp wraps) and costs 2x.

    Error bound: |y - silu(x)| <= 5e-4 for |x| < 1e4 (measured 2.2e-4 / 2.4e-4 on
    N(0, 4) and [-60, 60], |x| up to 9000).
    """
    c = approx.SILU_CLAMP
    signs = jnp.stack([-x, x - c, -x - c]) < 0  # (3, ...) secret bool: x>0, x<c, x>-c
    pos, below, above = signs[0], signs[1], signs[2]
    if x.size // max(x.shape[-1], 1) <= _SILU_ONE_SELECT_MAX_ROWS:
        ranges = jnp.stack([pos, ~pos]) & jnp.stack([below, above])  # (2, ...): 0<x<c, -c<x<=0 (one op)
        picked = jnp.where(jnp.concatenate([ranges, pos[None]]), jnp.stack([x - c, -x - c, x]), 0.0)  # (3, ...)
        t, relu = c + picked[0] + picked[1], picked[2]  # min(|x|, c), relu(x)
    else:
        relu = jnp.where(pos, x, 0.0)
        t = jnp.where(below & above, relu + relu - x, c)  # min(|x|, 12); relu + relu: no product
    return relu - approx.poly_on_interval(t, 0.0, c, approx.SILU_G_COEFFS)


def rms_norm(x: jax.Array, weight: jax.Array, eps: float) -> jax.Array:
    """x * rsqrt(mean(x^2, -1) + eps) * weight, accurate over a wide range of scales.

    x (..., D) secret, weight (D,), eps a Python float >= 0. No SPU rsqrt (~46 send
    actions on ABY3, accurate only on [~1e-3, 2^17)); instead:
    1. one product op gives sum(x * x) (precise down to rms ~ 0.01) and sum(x * x / 64)
       (no ring wrap up to |x| ~ 9e4; x * x alone wraps for |x| > 11585, and
       SmolLM2's residual stream reaches |x| = 24885);
    2. one comparison op of the sums against public thresholds times D (16 per
       octave of u = mean + eps, 641 in all; 32 per octave for at most
       ``_RMS_FINE_MAX_ROWS`` rows; the upper ones on the wide mean) gives u's bucket
       as a one-hot (XOR of neighbouring bits: local); a public table gives the
       bucket's scale r0 (r0^2 u within 2^(+-1/(2m)) of 1 for m per octave) and
       eps r0^2;
    3. y = x * r0 has rms ~ 1 (above u = 4096: (x / 64) * (64 r0), so that r0's
       encoding keeps >= 4096 ulps); one product op gives y^2 (summed locally: one
       truncation per element, at most D ulps on a sum of ~D) and y * weight;
       m = mean(y^2) + eps r0^2 is formed from the actual y, and a Taylor step of
       m^-1/2 at 1 finishes: degree 2 (|m - 1| < 0.022: < 3e-5) for many rows,
       degree 1 for few (|m - 1| < 0.011: < 4.5e-5; one sequential product and the
       division by D fewer); the output is (y * weight) * that. (Scaling r0 up and
       y back down lost precision: XLA moves the constant factor onto the later
       product's small operand.)
    Cost (ABY3, 3 processes): one decode row of 576, 25-27 send actions at party 0
    (31-34 with the degree-2 step; SPU's counter varies by +-3 between runs of one
    program); with SPU's rsqrt (the earlier version) a decode layer's two norms cost
    112 more than the degree-2 version. 32 rows: 0.23 s.

    Error bound, relative to the row's max |output|: 1e-4 for rms(x) in [0.1, 2000],
    1e-3 for rms(x) in [0.01, 0.1) (input encoding dominates); needs
    D * rms^2 < 2^32 and |x| < 9e4 (ABY3; CHEETAH's product limit is 2x lower).
    All-zero rows stay finite.
    """
    if eps < 0:
        raise InvalidInput("rms_norm eps must be >= 0")
    d = x.shape[-1]
    fine = x.size // max(d, 1) <= _RMS_FINE_MAX_ROWS
    compared, table, n_narrow = _rms_buckets(eps, d, _U_FINE_STEPS_PER_OCTAVE if fine else _U_STEPS_PER_OCTAVE)
    # Both sums in one product op; compared against d * threshold (no division by d).
    pair = jnp.stack([x, x * (1.0 / _RMS_WIDE)], axis=-2)  # (..., 2, D) secret
    sums = _row_dot(pair, x)  # (..., 2) secret: sum x^2, sum x^2 / 64
    values = jnp.concatenate(
        [
            jnp.broadcast_to(sums[..., :1] + eps * d, sums.shape[:-1] + (n_narrow,)),
            jnp.broadcast_to(sums[..., 1:], sums.shape[:-1] + (compared.size - n_narrow,)),
        ],
        axis=-1,
    )  # (..., n) secret
    compared = compared * d  # (n,) public, on the sums
    bits = values >= jnp.asarray(compared, x.dtype)  # (..., n) secret bool: u >= threshold
    # The narrow mean wraps for large rows: above the first wide threshold, all narrow bits are 1.
    bits = jnp.concatenate([bits[..., :n_narrow] | bits[..., n_narrow : n_narrow + 1], bits[..., n_narrow:]], axis=-1)
    onehot = _bucket_onehot(bits).astype(x.dtype)  # (..., n + 1) secret 0/1: u's bucket
    scale = onehot @ jnp.asarray(table, x.dtype)  # (..., 3) secret: [r0 | 0, 0 | 64 r0, eps r0^2 d]
    y = jnp.sum(pair * scale[..., :2, None], axis=-2)  # (..., D) secret: x r0 or (x / 64)(64 r0); rms 2^(+-1/2m)
    w = jnp.broadcast_to(weight, y.shape).astype(y.dtype)  # (..., D)
    both = jnp.stack([y, w], axis=-2) * y[..., None, :]  # (..., 2, D) secret: y^2, y * weight (one product op)
    y2, yw = both[..., 0, :], both[..., 1, :]
    if fine:
        # m - 1 = (sum y^2 + eps r0^2 d - d) / d, |m - 1| < 0.011: m^-1/2 ~ 1 - (m - 1) / 2 to 4.5e-5
        excess = jnp.sum(y2, axis=-1, keepdims=True) + scale[..., 2:] - float(d)  # (..., 1) secret
        correction = 1.0 + excess @ jnp.asarray([[-0.5 / d]], x.dtype)  # (..., 1): one public dot
        return yw * correction
    m = _mul_public(jnp.sum(y2, axis=-1, keepdims=True) + scale[..., 2:], 1.0 / d)  # (..., 1): r0^2 u, |m - 1| < 0.022
    dev = m - 1.0
    powers = jnp.concatenate([dev, dev * dev], axis=-1)  # (..., 2) secret
    correction = 1.0 + powers @ jnp.asarray([[-0.5], [0.375]], x.dtype)  # (..., 1): m^-1/2 to O(dev^3), below 3e-5
    return yw * correction


def _row_dot(a: jax.Array, b: jax.Array) -> jax.Array:
    """sum(a * b[..., None, :], -1) for a (..., n, D), b (..., D) -> (..., n).

    One row of b (decode): one (n, D) @ (D, 1) dot, a single truncation. Several rows
    (prefill): an elementwise product and a local sum, one truncation per element
    (the sum is off by at most D ulps, 2.2e-3 at D = 576). Row dots through
    ``matmul``'s block-diagonal form cost a 32-token prefill 0.53 s per norm against
    0.24 s (building the (T, T*D) block matrix dominated), and an einsum runs as T
    separate SPU dots (335 send actions in a layer's four).
    """
    lead, (n, d) = b.shape[:-1], a.shape[-2:]
    if math.prod(lead) > 1:
        return jnp.sum(a * b[..., None, :], axis=-1)  # (..., n)
    return (a.reshape(n, d) @ b.reshape(d, 1)).reshape(lead + (n,))  # (..., n)


def _mul_public(v: jax.Array, c: float | tuple[float, ...]) -> jax.Array:
    """v * c for a public constant c > 0, with c encoded to 2^-19 relative precision;
    with a tuple c, sum_i v[..., i] * c[i] (keepdims), the largest c_i that precise.

    ``v * c`` encodes c with 18 fractional bits (1e-5 becomes 1.14e-5 or 7.6e-6), and
    XLA folds chains of constant factors, so scaling c into [1, 2) and back with plain
    multiplications does not help. A dot with the public vector c * 2^k is not
    folded; the * 2^-k after it is exact up to truncation. |v * c * 2^k| < 2^27.
    """
    consts = (c,) if isinstance(c, (int, float)) else tuple(c)
    k = -math.floor(math.log2(max(consts)))  # max(c) * 2^k in [1, 2)
    vec = jnp.asarray([ci * 2.0**k for ci in consts], v.dtype)  # (n,) public
    if isinstance(c, (int, float)):
        return (v[..., None] @ vec) * 2.0**-k  # v.shape
    return (v @ vec)[..., None] * 2.0**-k  # (..., 1)


def rope(x: jax.Array, cos: jax.Array, sin: jax.Array) -> jax.Array:
    """Rotary embedding, rotate-half convention (Hugging Face LLaMA).

    x (..., T, H, hd) secret; cos, sin (T, hd) public or secret: both products in one op
    (one round of products when the tables are secret, as in decode).
    Error bound: |y - ref| <= 8e-6 * max|x| + 1e-5 (the 2^-19 encodings of cos and sin times
    |x|, plus truncation; measured up to 4.3e-6 * max|x|).
    """
    half = x.shape[-1] // 2
    rotated = jnp.concatenate([-x[..., half:], x[..., :half]], axis=-1)  # (..., T, H, hd)
    tables = jnp.stack([cos, sin])[:, :, None, :]  # (2, T, 1, hd)
    both = jnp.stack([x, rotated]) * tables.reshape((2,) + (1,) * (x.ndim - 3) + tables.shape[1:])  # (2, ..., T, H, hd)
    return both[0] + both[1]


# matmul: batched products go through one 2-D dot while the block-diagonal left operand
# stays below this many elements (beyond it the B-fold wasted products cost more time
# than the rounds saved).
_BLOCK_DOT_BUDGET: int = 1 << 21


def matmul(x: jax.Array, w: jax.Array) -> jax.Array:
    """x @ w for secret activations (attention); weight matrices go through ``linear``.

    2-D products are one SPU dot. Batched products (attention: (..., M, K) @ (..., K, N),
    batch dims broadcast) are rewritten as one 2-D dot: the left operands become one
    block-diagonal (B*M, B*K) matrix (a local rearrangement; the zeros are public)
    and the right operands are stacked to (B*K, N). SPU runs a batched dot_general as
    one product per batch entry with its own rounds: a SmolLM2 prefill of 32 tokens
    spent 10.9k send actions in them (60 per call), the 2-D form takes ~2.

    Error bound: input encoding plus one truncation,
    |y_ij - ref_ij| <= 2^-18 * (sum_k |x_ik| + sum_k |w_kj|) + 2^-17.
    Every partial sum must stay below 2^26 in magnitude (ring wrap-around; 2^27 ABY3).
    """
    if x.ndim < 3 and w.ndim < 3:
        return x @ w
    batch = jnp.broadcast_shapes(x.shape[:-2], w.shape[:-2])
    m, k, n = x.shape[-2], x.shape[-1], w.shape[-1]
    b = math.prod(batch)
    if b * m * b * k > _BLOCK_DOT_BUDGET:
        return x @ w
    xs = jnp.broadcast_to(x, batch + (m, k)).reshape(b, m, k)  # (B, M, K)
    ws = jnp.broadcast_to(w, batch + (k, n)).reshape(b * k, n)  # (B*K, N) stacked
    zeros = jnp.zeros((m, k), x.dtype)
    rows = [jnp.concatenate([xs[i] if j == i else zeros for j in range(b)], axis=1) for i in range(b)]
    block = jnp.concatenate(rows, axis=0)  # (B*M, B*K) block-diagonal
    return (block @ ws).reshape(batch + (m, n))  # (..., M, N)


def dense_transpose(w: jax.Array) -> jax.Array:
    """``w.T`` laid out densely, for weights stored at load time.

    SPU's transpose is a strided view; a product with such a view runs on SPU's
    element-by-element path: 1x576 @ (49152x576).T took 14.8 s against 0.57 s with
    a dense copy (3 processes, 2 cores). Flattening forces the copy, and the
    reshape back is free. Exact (no arithmetic).
    """
    wt = jnp.transpose(w)  # (N, M) view
    return wt.reshape(-1).reshape(wt.shape)  # (N, M) dense


def linear(x: jax.Array, wt: jax.Array, residual: jax.Array | None = None) -> jax.Array:
    """``residual + x @ wt.T`` for rows x (T, K) and a secret weight stored as wt (N, K).

    The weight is SPU's *left* operand: ABY3's product adds the two shares of its
    right operand element by element through a strided view, slow for a big right
    operand (~23 ns per element, 3 processes on 2 cores). Measured, one row: 576 ->
    3072 0.022 s against 0.034 s as ``x @ w`` with w (K, N); a 49152x576 head 0.15 s
    against 0.58 s. For T > 1 the product is ``wt @ x.T`` (N, T) and must not be
    followed directly by a transpose: XLA rewrites transpose(dot(a, b)) into
    dot(b.T, a.T), the big operand on the right as a strided view (32 rows, 576 ->
    3072: 0.42 s against 0.22 s). A slice in between keeps it (fused q|k|v and
    gate|up are always split); with a ``residual`` the sum is formed in (N, T) and
    transposed after. Error bound: as ``matmul``.
    """
    y = wt @ x.T  # (N, T) secret; for one row the transposes are reshapes
    if residual is not None:
        y = jnp.broadcast_to(residual, (x.shape[0], wt.shape[0])).T + y  # (N, T)
    return y.T  # (T, N)


def embed_onehot(onehot: jax.Array, table: jax.Array) -> jax.Array:
    """Oblivious embedding lookup: onehot (T, V) @ table (V, D) -> (T, D).

    With a secret one-hot (e.g. from ``sampling.argmax_onehot``) no node learns which
    rows were read. Error bound: |y - table[token]| <= 2^-17 (measured 3.7e-6 / 7.5e-6).
    """
    return onehot @ table


# embed_onehot_t: rows of the transposed table per product (see there).
_EMBED_BLOCK_ROWS: int = 192


def embed_onehot_t(onehot: jax.Array, table_t: jax.Array) -> jax.Array:
    """``embed_onehot`` with the table stored transposed and dense, table_t (D, V).

    The table is SPU's *left* operand (see ``linear``): ABY3 then adds the two shares
    of the small one-hot (V, T) instead of the table's (V, D) into a fresh array. For
    T > 1 the product runs in blocks of ``_EMBED_BLOCK_ROWS`` table rows: SPU copies
    each share of a left operand out of its interleaved layout for a matrix-matrix
    product, a 0.45 GB transient per node for SmolLM2's whole table (0.15 GB per block).
    32 rows, 3 processes on 2 cores: 2.1 s in blocks of 192, 2.9 s in blocks of 64,
    2.0-2.2 s unblocked, 2.3-2.4 s as ``onehot @ table``.
    A zero row is appended to the one-hot and sliced off again: the product must not
    be followed directly by a transpose (``linear``), and a trivial slice would be
    folded away. Error bound: as ``embed_onehot``.
    """
    t = onehot.shape[0]
    if t == 1:
        return linear(onehot, table_t)  # (1, D): a matrix-vector product, no copy
    padded = jnp.concatenate([onehot, jnp.zeros((1, onehot.shape[1]), onehot.dtype)], axis=0)  # (T + 1, V)
    right = padded.T  # (V, T + 1) secret
    d, b = table_t.shape[0], _EMBED_BLOCK_ROWS
    y = jnp.concatenate([table_t[i : i + b] @ right for i in range(0, d, b)], axis=0)  # (D, T + 1) secret
    return y[:, :t].T  # (T, D)


def secure_llama_ops() -> dict[str, object]:
    """The MPC versions of the six ``LlamaOps`` callables, keyed by field name."""
    return {
        "softmax": softmax,
        "silu": silu,
        "rms_norm": rms_norm,
        "rope": rope,
        "matmul": matmul,
        "linear": linear,
    }
