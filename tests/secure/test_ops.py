"""MPC ops vs their plaintext twins under the SPU simulator, on LLaMA-like ranges.

Each test checks the error bound stated in the op's docstring. ABY3 throughout;
softmax and rms_norm also under 2-party CHEETAH.
"""

import inspect

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from misuan.models import plain_ops as plain
from misuan.mpc.simulator import simulate
from misuan.secure import ops

RNG = np.random.default_rng(1234)
f64 = np.float64
#: one unit in the last place of FM64 with 18 fractional bits. The last product of the
#: softmax (e times the fused Newton step) is truncated like any other: an entry that is
#: 0 before it comes out as 0 or, rarely (measured ~1 call in 60), as 1 ulp.
ULP = 2.0**-18


def _scores(kind: str, shape: tuple[int, ...]) -> np.ndarray:
    if kind == "uniform30":  # attention logits spread over +-30
        return RNG.uniform(-30, 30, shape).astype(np.float32)
    if kind == "normal4":
        return RNG.normal(0, 4, shape).astype(np.float32)
    s = RNG.normal(0, 1, shape)  # "sink": one dominant key, as in trained LLaMAs
    s[..., 0] += 20
    return s.astype(np.float32)


@pytest.mark.parametrize("kind", ["uniform30", "normal4", "sink"])
def test_softmax_causal_prefill(kind):
    """Bound 2e-4 abs (measured <= 6.5e-5 ABY3); masked entries within 1 ulp of 0 (ABY3)."""
    h, t = 3, 24
    scores = _scores(kind, (h, t, t))
    mask = np.tril(np.ones((t, t), np.float32))
    p = simulate(ops.softmax, scores, mask, public_argnums=(1,))
    ref = plain.softmax(scores.astype(f64), mask.astype(f64))
    assert np.abs(p - ref).max() < 2e-4
    assert np.abs(p[:, mask == 0]).max() <= ULP
    np.testing.assert_allclose(p.sum(-1), 1.0, atol=5e-4)


def test_softmax_decode_with_cache_slots_and_empty_row():
    """One query against a fixed-size cache (future slots masked) plus a fully masked row."""
    s = 64
    scores = RNG.uniform(-30, 30, (4, 2, s)).astype(np.float32)
    mask = np.zeros((2, s), np.float32)
    mask[0, :37] = 1.0  # row 1 fully masked (e.g. a padding query)
    p = simulate(ops.softmax, scores, mask, public_argnums=(1,))
    ref = plain.softmax(scores.astype(f64), mask.astype(f64))
    assert np.abs(p - ref).max() < 2e-4
    assert np.abs(p[:, 1]).max() <= ULP and np.abs(p[:, 0, 37:]).max() <= ULP


def test_softmax_secret_mask_right_aligned_prompt():
    """The secure engine's layout: padding first, a *secret* mask, padding rows empty."""
    t, pad = 16, 5
    scores = _scores("normal4", (2, t, t))
    mask = np.tril(np.ones((t, t), np.float32))
    mask[:, :pad] = 0.0  # nobody attends to padding keys ...
    mask[:pad, :] = 0.0  # ... and padding queries attend to nothing
    p = simulate(ops.softmax, scores, mask)  # mask secret
    ref = plain.softmax(scores.astype(f64), mask)
    assert np.abs(p - ref).max() < 2e-4
    assert np.abs(p[:, mask == 0]).max() <= ULP


@pytest.mark.parametrize("n", [5, 65])
def test_max_and_cutoff_picks_one_max_on_ties(n):
    """Row max and cutoff bits, all-pairs (n = 5) and grouped (n = 65: groups of 9):
    ties at the max within a group and across groups give the max itself (exactly one
    winner, not a sum of two), and the bits are m_j >= max - cutoff."""
    m = np.round(RNG.normal(0, 4, (6, n)), 2).astype(np.float32)
    m[0, [1, 3]] = 30.0  # tie within a group
    m[1, [0, n - 1]] = 30.0  # tie across groups (n = 65)
    m[2, :] = -2.5  # all equal
    m[3, -1] = 31.0  # max in the last (padded) group
    mx, keep = simulate(lambda x: ops._max_and_cutoff(x, 14.0), m)
    ref = m.max(-1, keepdims=True)
    assert np.abs(mx - ref).max() <= 2.0**-17
    near = np.abs(m - (ref - 14.0)) < 1e-3  # at the cutoff edge either answer is right
    assert np.all((keep.astype(bool) == (m >= ref - 14.0)) | near)


def test_softmax_biased_masks_large_scores_exactly():
    """The engine adds mask_bias(mask) (computed once) instead of multiplying by the mask:
    masked entries far above the allowed ones (|scores| up to 4900) still get 0 (within 1 ulp)."""
    s = 32
    scores = RNG.uniform(-4900, -4800, (3, 2, s)).astype(np.float32)
    mask = np.zeros((2, s), np.float32)
    mask[0, 10:] = 1.0
    mask[1, :] = 1.0
    scores[..., :10] = 4900.0  # masked in row 0, the largest entries in row 1
    p = simulate(lambda sc, m: ops.softmax_biased(sc, ops.mask_bias(m)), scores, mask)  # mask secret
    ref = plain.softmax(scores.astype(f64), mask.astype(f64))
    assert np.abs(p - ref).max() < 2e-4
    assert np.abs(p[:, 0, :10]).max() <= ULP
    np.testing.assert_allclose(p.sum(-1), 1.0, atol=5e-4)


def test_softmax_where_minus_1e4_trap_is_real():
    """The recipe this module replaces: where(mask, s, -1e4) + softmax is wrong under SPU."""
    t = 16
    scores = _scores("uniform30", (2, t, t))
    mask = np.tril(np.ones((t, t), np.float32))

    def naive(s, m):
        return jax.nn.softmax(jnp.where(m > 0, s, -1e4), axis=-1)

    naive = simulate(naive, scores, mask, public_argnums=(1,))
    assert np.abs(naive - plain.softmax(scores.astype(f64), mask)).max() > 0.1


@pytest.mark.parametrize("rows", [1, 16])
def test_silu_llama_mlp_range(rows):
    """Bound 5e-4 abs for |x| <= 1e4 (measured 2.2e-4); one row (decode: one select op)
    and many (relu and the clamp as two), including exactly 0 and +-12."""
    x = np.concatenate([[-9000.0, -100.0, -12.0, 0.0, 12.0, 100.0, 9000.0], RNG.normal(0, 4, 2000), np.linspace(-40, 40, 801)]).astype(
        np.float32
    )
    x = x[: x.size // rows * rows].reshape(rows, -1)  # (rows, n)
    assert (rows <= ops._SILU_ONE_SELECT_MAX_ROWS) == (rows == 1)
    y = simulate(ops.silu, x)
    assert np.abs(y - jax.nn.silu(x.astype(f64))).max() < 5e-4


def _residual_rows(d: int, rms: np.ndarray) -> np.ndarray:
    """Rows with given rms and three outlier channels 20x the rest (LLaMA-like)."""
    x = RNG.normal(0, 1, (rms.size, d))
    x[:, :3] *= 20
    x = x / np.sqrt((x**2).mean(-1, keepdims=True)) * rms[:, None]
    return np.clip(x, -8000, 8000).astype(np.float32)  # the op's domain: |x| <= 8000


def _rms_rel_err(y: np.ndarray, x: np.ndarray, w: np.ndarray, eps: float) -> np.ndarray:
    ref = np.asarray(plain.rms_norm(x.astype(f64), w.astype(f64), eps))
    return np.abs(y - ref).max(-1) / np.abs(ref).max(-1)  # per row, relative to the row max


@pytest.mark.parametrize("copies", [1, 6])
def test_rms_norm_from_embeddings_to_deep_residuals(copies):
    """Bound, relative to the row's max |output|: 1e-4 for rms >= 0.1, 1e-3 for rms in
    [0.01, 0.1). Includes rows with a 24885 element (SmolLM2's residual stream reaches
    that: x * x alone would wrap), rms 2000 and rms at the narrow/wide switch (64).
    13 rows take the few-rows path (32 buckets per octave, linear step), 78 the
    many-rows path (16 per octave, quadratic step)."""
    rms = np.append(np.logspace(-2, 3, 11), [1044.0, 2000.0])
    x = _residual_rows(96, rms)
    x[-2, 5] = 24885.0
    x[3] *= 64.0 / np.sqrt(np.mean(x[3].astype(f64) ** 2))  # u = 4096 (+ noise): the switch
    x, rms = np.tile(x, (copies, 1)), np.tile(rms, copies)
    w = RNG.uniform(0.5, 2.0, 96).astype(np.float32)
    y = simulate(lambda a, b: ops.rms_norm(a, b, 1e-5), x, w)
    err = _rms_rel_err(y, x, w, 1e-5)
    assert err[rms >= 0.1].max() < 1e-4
    assert err.max() < 1e-3


def test_rms_norm_naive_single_rsqrt_fails_at_large_scale():
    """Why not SPU's rsqrt on mean + eps: it returns 0 for inputs >= 2^17 (rms > ~362)."""
    x = _residual_rows(64, np.array([1.0, 600.0]))
    w = np.ones(64, np.float32)
    naive = simulate(lambda a, b: plain.rms_norm(a, b, 1e-5), x, w)
    assert _rms_rel_err(naive, x, w, 1e-5)[1] > 0.5


def test_rope_matches_twin():
    """Bound: 8e-6 * max|x| + 1e-5 abs (public cos/sin encoding; measured up to 4.3e-6 * max|x|)."""
    x = RNG.normal(0, 30, (2, 5, 3, 16)).astype(np.float32)  # (B, T, H, hd)
    angles = RNG.uniform(0, 500, (5, 16))
    cos, sin = np.cos(angles).astype(np.float32), np.sin(angles).astype(np.float32)
    y = simulate(ops.rope, x, cos, sin, public_argnums=(1, 2))
    ref = plain.rope(x.astype(f64), cos.astype(f64), sin.astype(f64))
    assert np.abs(y - ref).max() < 8e-6 * np.abs(x).max() + 1e-5


def test_matmul_and_embed_onehot():
    """matmul: input encoding + one truncation; embed_onehot: exact up to 2^-17."""
    a = RNG.normal(0, 3, (6, 48)).astype(np.float32)
    w = RNG.normal(0, 0.05, (48, 20)).astype(np.float32)
    table = RNG.normal(0, 1, (300, 16)).astype(np.float32)
    tokens = RNG.integers(0, 300, 5)
    onehot = np.eye(300, dtype=np.float32)[tokens]

    def both(a, w, o, t):
        return ops.matmul(a, w), ops.embed_onehot(o, t)

    y, e = simulate(both, a, w, onehot, table)
    bound = 2.0**-18 * (np.abs(a).sum(1, keepdims=True) + np.abs(w).sum(0)) + 2.0**-17  # (6, 20)
    assert np.all(np.abs(y - a.astype(f64) @ w.astype(f64)) <= bound)
    assert np.abs(e - table[tokens]).max() <= 2.0**-17


@pytest.mark.parametrize("rows", [1, 5])
def test_linear_and_dense_transpose(rows):
    """linear(x, wt, r) = r + x @ wt.T with matmul's bound (one row and several: two
    code paths); dense_transpose is exact, and a one-hot row through
    linear(onehot, dense_transpose(table)) is embed_onehot."""
    x = RNG.normal(0, 3, (rows, 48)).astype(np.float32)
    wt = RNG.normal(0, 0.05, (20, 48)).astype(np.float32)
    r = RNG.normal(0, 10, (rows, 20)).astype(np.float32)
    table = RNG.normal(0, 1, (300, 16)).astype(np.float32)
    onehot = np.eye(300, dtype=np.float32)[[7]]

    def both(x, wt, r, o, t):
        tt = ops.dense_transpose(t)  # (16, 300)
        return ops.linear(x, wt), ops.linear(x, wt, r), tt, ops.linear(o, tt)

    y, yr, tt, e = simulate(both, x, wt, r, onehot, table)
    ref = x.astype(f64) @ wt.T.astype(f64)  # (rows, 20)
    bound = 2.0**-18 * (np.abs(x).sum(1, keepdims=True) + np.abs(wt).sum(1)) + 2.0**-17  # (rows, 20)
    assert y.shape == yr.shape == (rows, 20)
    assert np.all(np.abs(y - ref) <= bound)
    assert np.all(np.abs(yr - (r + ref)) <= bound + 2.0**-18)
    assert tt.shape == (16, 300) and np.abs(tt - table.T).max() <= 2.0**-18
    assert np.abs(e - table[[7]]).max() <= 2.0**-17


@pytest.mark.parametrize("rows", [1, 5])
def test_embed_onehot_t_reads_the_transposed_table(rows):
    """embed_onehot_t(onehot, table.T dense) = table[tokens] up to 2^-17, one row (the
    ``linear`` path) and several (the padded product in blocks of 192 table rows, the
    last one short: D = 200); repeated tokens included."""
    table = RNG.normal(0, 1, (300, 200)).astype(np.float32)
    tokens = RNG.integers(0, 300, rows)
    if rows > 1:
        tokens[-1] = tokens[0]
    onehot = np.eye(300, dtype=np.float32)[tokens]

    def lookup(o, t):
        return ops.embed_onehot_t(o, ops.dense_transpose(t))

    e = simulate(lookup, onehot, table)
    assert e.shape == (rows, 200)
    assert np.abs(e - table[tokens]).max() <= 2.0**-17


@pytest.mark.parametrize("shape", [(3, 3, 4, 16, 8), (3, 3, 1, 16, 64)])
def test_batched_matmul_as_one_block_dot(shape):
    """GQA attention shapes, (KV, G, T, K) @ (KV, 1, K, N) broadcast over G: same bound as
    the 2-D product, through the block-diagonal rewrite (both shapes are under budget)."""
    kv, g, t, k, n = shape
    a = RNG.normal(0, 3, (kv, g, t, k)).astype(np.float32)
    w = RNG.normal(0, 1, (kv, 1, k, n)).astype(np.float32)
    y = simulate(ops.matmul, a, w)
    ref = a.astype(f64) @ w.astype(f64)  # (KV, G, T, N)
    bound = 2.0**-18 * (np.abs(a).sum(-1, keepdims=True) + np.abs(w).sum(-2, keepdims=True)) + 2.0**-17
    assert y.shape == ref.shape
    assert np.all(np.abs(y - ref) <= bound)


@pytest.mark.parametrize("op", ["softmax", "rms_norm"])
def test_cheetah_two_party(op):
    """Same bounds under 2-party CHEETAH (noisier truncation; measured 8e-5 / 3e-5)."""
    if op == "softmax":
        t = 12
        scores = _scores("uniform30", (2, t, t))
        mask = np.tril(np.ones((t, t), np.float32))
        mask[:2] = 0.0  # two empty rows
        p = simulate(ops.softmax, scores, mask, public_argnums=(1,), protocol="CHEETAH")
        assert np.abs(p - plain.softmax(scores.astype(f64), mask)).max() < 2e-4
        assert np.abs(p[:, mask == 0]).max() <= 3 * 2.0**-18  # CHEETAH truncation noise only (3 ulps)
    else:
        rms = np.array([0.3, 3.0, 30.0, 300.0])
        x = np.concatenate([_residual_rows(32, rms), np.zeros((1, 32), np.float32)])  # + a zero row
        w = RNG.uniform(0.5, 2.0, 32).astype(np.float32)
        y = simulate(lambda a, b: ops.rms_norm(a, b, 1e-5), x, w, protocol="CHEETAH")
        assert _rms_rel_err(y[:4], x[:4], w, 1e-5).max() < 1e-4
        assert np.abs(y[4]).max() < 1e-3  # CHEETAH's truncation makes x*x of zeros negative


def _twin_args(name: str) -> tuple[tuple, tuple, tuple]:
    """(MPC args, twin args, public argnums) for one LlamaOps primitive on LLaMA-like inputs."""
    x = RNG.normal(0, 2, (4, 32)).astype(np.float32)
    if name == "softmax":
        scores, mask = _scores("normal4", (2, 4, 6)), np.tril(np.ones((4, 6), np.float32), 2)
        return (scores, mask), (scores, mask), (1,)
    if name == "silu":
        return (x,), (x,), ()
    if name == "rms_norm":
        w = RNG.uniform(0.5, 2.0, 32).astype(np.float32)
        return (x, w, 1e-5), (x, w, 1e-5), (2,)
    if name == "rope":
        xr = RNG.normal(0, 3, (4, 2, 16)).astype(np.float32)  # (T, H, hd)
        ang = RNG.uniform(0, 50, (4, 16))
        cos, sin = np.cos(ang).astype(np.float32), np.sin(ang).astype(np.float32)
        return (xr, cos, sin), (xr, cos, sin), (1, 2)
    w = RNG.normal(0, 0.1, (32, 8)).astype(np.float32)  # (K, N)
    if name == "matmul":
        return (x, w), (x, w), ()
    r = RNG.normal(0, 1, (4, 8)).astype(np.float32)
    return (x, np.ascontiguousarray(w.T), r), (x, w, r), ()  # linear: the MPC op holds W.T (N, K)


@pytest.mark.parametrize("name", ["softmax", "silu", "rms_norm", "rope", "matmul", "linear"])
def test_every_llama_op_matches_its_twin(name):
    """Each MPC primitive under the simulator against its twin in ``models.plain_ops``
    (the ops the plaintext model runs), on the same inputs; ``linear`` with the
    weight in each side's layout."""
    mpc_args, twin_args, public = _twin_args(name)
    fn = ops.secure_llama_ops()[name]
    if name == "rms_norm":
        y = simulate(lambda a, b: fn(a, b, 1e-5), *mpc_args[:2])
    else:
        y = simulate(fn, *mpc_args, public_argnums=public)
    ref = np.asarray(plain.llama_ops()[name](*twin_args))
    assert y.shape == ref.shape
    assert np.abs(y - ref).max() < 1e-3 * max(1.0, np.abs(ref).max())


def test_embed_onehot_matches_its_twin():
    table = RNG.normal(0, 1, (50, 16)).astype(np.float32)
    onehot = np.eye(50, dtype=np.float32)[[3, 49, 3]]
    y = simulate(ops.embed_onehot, onehot, table)
    assert np.abs(y - np.asarray(plain.embed_onehot(onehot, table))).max() <= 2.0**-17


def test_secure_llama_ops_match_the_plain_interface():
    secure = ops.secure_llama_ops()
    twins = plain.llama_ops()
    assert list(secure) == ["softmax", "silu", "rms_norm", "rope", "matmul", "linear"] == list(twins)
    for name, fn in secure.items():
        params = list(inspect.signature(fn).parameters)
        twin = list(inspect.signature(twins[name]).parameters)
        # linear's weight layout differs, and its name says so: wt (N, K) against w (K, N)
        assert params == (["x", "wt", "residual"] if name == "linear" else twin), name
    assert twin == ["x", "w", "residual"]


def test_reciprocal_in_range_covers_the_softmax_denominator():
    """Bound: |y - 1/t| <= 2^-17 + 1e-6 / t on [1, hi]; 0 (empty rows) stays finite."""
    t = np.concatenate([np.linspace(1.0, 2.0, 50), np.logspace(0, np.log10(2048), 200), [0.0]])
    t = t.astype(np.float32).reshape(-1, 1)
    y = simulate(lambda a: ops.reciprocal_in_range(a, 2048), t)
    ref = 1.0 / t[:-1].astype(f64)
    assert np.all(np.abs(y[:-1] - ref) <= 2.0**-17 + 1e-6 * ref)
    assert np.isfinite(y[-1]).all() and abs(float(y[-1, 0])) <= 4


@pytest.mark.parametrize("rows", [9, 288])
def test_divide_in_range_fuses_the_last_newton_step(rows):
    """e / t within |e| times reciprocal_in_range's bound (few rows: one Newton step,
    many: two); e = 0 stays 0 (within 1 ulp), also for t = 0 (an empty softmax row)."""
    hi = 65.0
    t = RNG.uniform(1, hi, (rows, 1)).astype(np.float32)
    t[:3, 0] = [1.0, hi, 0.0]
    e = RNG.uniform(0, 1, (rows, 40)).astype(np.float32)
    e[2] = 0.0  # the t = 0 row
    e[3] = 0.0
    y = simulate(lambda a, b: ops.divide_in_range(a, b, hi), e, t)
    ref = e[3:].astype(f64) / t[3:]
    rel = 3e-5 if rows <= ops._RECIP_FINE_MAX_ROWS else 1e-6
    assert np.all(np.abs(y[3:] - ref) <= 2.0**-16 + rel * ref)
    assert np.abs(y[2:4]).max() <= ULP
    assert np.abs(y[:2] - e[:2] / t[:2]).max() <= 2.0**-16 + 3e-5


def test_reciprocal_in_range_for_few_rows():
    """Few rows (decode): finer buckets, one Newton step. Bound: 2^-17 + 3e-5 / t."""
    assert ops._RECIP_FINE_MAX_ROWS == 64
    t = np.concatenate([np.linspace(1.0, 1.1, 20), np.logspace(0, np.log10(128), 43), [0.0]])
    t = t.astype(np.float32).reshape(-1, 1)  # 64 rows: the fine path
    y = simulate(lambda a: ops.reciprocal_in_range(a, 128), t)
    ref = 1.0 / t[:-1].astype(f64)
    err = np.abs(y[:-1] - ref)
    assert np.all(err <= 2.0**-17 + 3e-5 * ref)
    assert err.max() > 2.0**-17 + 1e-6  # the single Newton step is visible: this is the fine path
    assert np.isfinite(y[-1]).all() and abs(float(y[-1, 0])) <= 4
