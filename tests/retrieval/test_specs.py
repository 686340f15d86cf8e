"""Secure search numerics (retrieval.specs) against their plaintext twins, under the SPU simulator."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest

from misuan.mpc.simulator import run_program, runtime_config, sim_program, simulate
from misuan.retrieval import plain, specs
from misuan.retrieval import protocol as P
from misuan.secure.onehot import digit_base

N, D, C, K = 200, 32, 8, 5
VOCAB = 49_152
#: fixed-point resolution of a score: encoding plus one truncation (FM64, 18 bits)
TIE = 2e-4


def _kb(seed: int = 0, vocab: int = VOCAB):
    rng = np.random.default_rng(seed)
    emb = rng.standard_normal((N, D)).astype(np.float32)
    emb[7] = emb[3]  # an exact tie
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    ids = rng.integers(0, vocab, (N, C))
    n_hi, base = digit_base(vocab)
    hi, lo = (ids // base).astype(np.int32), (ids % base).astype(np.int32)
    lengths = rng.integers(1, C + 1, N)
    pad = np.arange(C)[None, :] >= lengths[:, None]
    hi[pad], lo[pad] = P.PAD_DIGIT, P.PAD_DIGIT
    return emb, hi, lo


def _queries(emb, n: int, seed: int = 1):
    rng = np.random.default_rng(seed)
    qs = [emb[3] + 0.05 * rng.standard_normal(D)] + [rng.standard_normal(D) for _ in range(n - 1)]
    return [(q / np.linalg.norm(q)).astype(np.float32)[None, :] for q in qs]


def _agree(secure_idx, ref: dict, emb, q) -> bool:
    """Same set, or the differing chunks score within TIE of the k-th plaintext score."""
    s = emb @ q[0]
    diff = set(secure_idx.tolist()) ^ set(ref[P.INDEX].tolist())
    return all(abs(s[i] - ref[P.SCORES][-1]) <= TIE for i in diff)


@pytest.mark.parametrize("vocab", [VOCAB, 1000])
def test_search_matches_plaintext(vocab):
    emb, hi, lo = _kb(vocab=vocab)
    tok = np.asarray(specs.pack_tokens(jnp.asarray(hi), jnp.asarray(lo), vocab))
    assert tok.shape == (N, specs.packed_width(C, vocab))
    spec = specs.search_spec(N, D, C, K, vocab, P.REVEAL_PASSAGES)
    assert spec.outputs == specs.OUTPUTS and [i.name for i in spec.inputs] == [P.QUERY]
    prog = sim_program(spec.fn, emb, tok, np.zeros((1, D), np.float32))
    cfg = runtime_config()
    _, base = digit_base(vocab)
    for q in _queries(emb, 3):
        scores, index, tokens, ctx_hi, ctx_lo = run_program(prog, emb, tok, q, config=cfg)
        ref = plain.search_plain(emb, hi, lo, q, K, vocab=vocab)
        assert _agree(index, ref, emb, q)
        assert np.all(np.diff(scores) <= TIE), "best first"
        np.testing.assert_allclose(scores, (emb @ q[0])[index], atol=TIE)
        np.testing.assert_array_equal(ctx_hi, hi[index])  # the fetch is exact
        np.testing.assert_array_equal(ctx_lo, lo[index])
        real = hi[index] >= 0
        np.testing.assert_array_equal(tokens[real], hi[index][real] * base + lo[index][real])
        assert np.all(tokens[~real] < 0) and (~real).any(), "padding is negative"


def test_reveal_policy_and_bad_params():
    assert specs.search_spec(N, D, C, K, VOCAB, P.REVEAL_IDS).revealable == (P.INDEX, P.SCORES)
    assert specs.search_spec(N, D, C, K, VOCAB, P.REVEAL_NONE).revealable == ()
    assert P.CTX_HI not in specs.search_spec(N, D, C, K, VOCAB, P.REVEAL_PASSAGES).revealable
    with pytest.raises(ValueError):
        specs.search_spec(N, D, C, K, VOCAB, "all")
    with pytest.raises(ValueError):
        specs.search_spec(N, D, C, N + 1, VOCAB, P.REVEAL_IDS)


@pytest.mark.parametrize("vocab", [VOCAB, 1000, 7])
def test_pack_roundtrip(vocab):
    _, hi, lo = _kb(vocab=max(vocab, 2))
    tok = specs.pack_tokens(jnp.asarray(hi), jnp.asarray(lo), vocab)
    assert int(jnp.min(tok)) >= 0
    h, lo2 = specs.unpack_tokens(tok, C, vocab)
    np.testing.assert_array_equal(h, hi)
    np.testing.assert_array_equal(lo2, lo)


def test_index_onehot_and_rank_sort():
    n = 203  # not a square: the last digit block is partial
    idx = np.array([0, 1, 14, 15, 202, 195, 196, 100], np.int32)
    oh = simulate(lambda i: specs.index_onehot(i, n), idx)
    np.testing.assert_array_equal(oh, np.eye(n, dtype=np.int64)[idx])
    vals = np.array([0.5, 0.9, 0.5, -0.2, 0.9], np.float32)
    sv, si = simulate(specs.rank_sort, vals, np.arange(5, dtype=np.int32) + 10)
    np.testing.assert_allclose(sv, [0.9, 0.9, 0.5, 0.5, -0.2], atol=1e-5)
    np.testing.assert_array_equal(si, [11, 14, 10, 12, 13])


def _prompt(ctx_hi, ctx_lo):
    """A client prompt of T = W + 3 slots: the window first, then 3 client tokens (right-aligned)."""
    from misuan.secure.onehot import token_digits

    W = ctx_hi.size
    return token_digits([0] * W + [17, 49_000, 5], W + 3, VOCAB), W


def _rows(ctx_hi, ctx_lo, client=None):
    from misuan.secure.onehot import context_onehot_rows

    (hi, lo), W = _prompt(ctx_hi, ctx_lo)
    hi[:W], lo[:W] = 0, 0
    if client is not None:
        client(hi, lo)
    fn = lambda h, lo_, ch, cl: context_onehot_rows(h, lo_, ch, cl, VOCAB, 0)  # noqa: E731
    sec = simulate(fn, hi, lo, ctx_hi, ctx_lo)
    ref = fn(jnp.asarray(hi), jnp.asarray(lo), jnp.asarray(ctx_hi), jnp.asarray(ctx_lo))  # the plaintext twin
    return sec, tuple(np.asarray(r) for r in ref)


def test_context_rows_match_plaintext():
    _, hi, lo = _kb()
    ctx_hi, ctx_lo = hi[[3, 9]], lo[[3, 9]]  # (2, C) with padding
    (rows, real, ok), (ref_rows, ref_real, ref_ok) = _rows(ctx_hi, ctx_lo)
    assert bool(ok) and bool(ref_ok)
    np.testing.assert_array_equal(rows, ref_rows)
    np.testing.assert_array_equal(real, ref_real)
    _, base = digit_base(VOCAB)
    ids = np.concatenate([(ctx_hi * base + ctx_lo).reshape(-1), [17, 49_000, 5]])
    np.testing.assert_array_equal(np.argmax(rows, 1)[real == 1], ids[real == 1])
    assert rows.sum() == real.sum() and (ctx_hi < 0).any()


@pytest.mark.parametrize(
    "forge",
    [
        lambda h, lo: (h, lo.__setitem__((0, 0), P.PAD_DIGIT)),  # a hi digit without a lo digit
        lambda h, lo: (h.__setitem__((1, 0), 221), lo.__setitem__((1, 0), 221)),  # id 49,283 >= V
        lambda h, lo: (h.__setitem__((0, 1), 400), lo.__setitem__((0, 1), 221)),  # clamped to 221: id >= V
    ],
)
def test_forged_rows_refused(forge):
    _, hi, lo = _kb()
    ctx_hi, ctx_lo = hi[[3, 9]].copy(), lo[[3, 9]].copy()
    ctx_hi[:, :2], ctx_lo[:, :2] = 5, 6  # real tokens in the forged slots
    forge(ctx_hi, ctx_lo)
    (rows, real, ok), (_, _, ref_ok) = _rows(ctx_hi, ctx_lo)
    assert not bool(ok) and not bool(ref_ok)
    assert set(np.unique(rows)) <= {0, 1} and np.all(rows.sum(1) <= 1)  # never more than a one-hot


def test_a_client_digit_in_the_window_is_refused():
    """The client cannot cancel (hence probe) a fetched token: any client digit inside
    the window fails the check, even one that would leave a valid one-hot."""
    _, hi, lo = _kb()
    ctx_hi, ctx_lo = hi[[3, 9]].copy(), lo[[3, 9]].copy()
    ctx_hi[0, 0], ctx_lo[0, 0] = 5, 6

    def cancel(h, lo_):  # -e_5 +e_7: the row would still be one token
        h[0, 5], h[0, 7] = -1, 1

    (_, _, ok), (_, _, ref_ok) = _rows(ctx_hi, ctx_lo, cancel)
    assert not bool(ok) and not bool(ref_ok)


def test_programs_compile_with_int_weights():
    from misuan.node.programs import compile_spec

    shapes = specs.resident_shapes(N, D, C, VOCAB)
    dtypes = specs.weight_dtypes()
    layout = compile_spec(
        "kb.layout", specs.layout_spec(C, VOCAB), shapes, (P.HI, P.LO), weight_outputs=True, who="node", weight_dtypes=dtypes
    )
    search = compile_spec(P.SEARCH, specs.search_spec(N, D, C, K, VOCAB, P.REVEAL_IDS), shapes, specs.RESIDENT, weight_dtypes=dtypes)
    assert search.client_inputs == (P.QUERY,) and search.revealable == (P.INDEX, P.SCORES)
    assert layout.program.out_shapes[0] == ((N, specs.packed_width(C, VOCAB)), "int32")
