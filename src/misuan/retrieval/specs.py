"""Secure search as SPU program specs: similarities, a secret top-k, an oblivious fetch.

Pure functions of secret inputs (no node learns the question, the scores, which
chunks were chosen or their tokens); the plaintext twins are in :mod:`.plain`.

Resident layout (built once at load by :func:`layout_spec`, a load-time program
over the stored ``hi``/``lo``, local on shares: no communication):

* ``emb (N, D)`` float, as stored: the score product ``emb @ q.T`` puts it on
  SPU's left (``secure.ops.linear``); 100k x 384 under the simulator: 0.24 s,
  against 0.80 s for ``q @ emb.T`` with it stored transposed;
* ``tok (N, m)`` int32: each chunk's ``2C`` token digits (``hi`` then ``lo``), plus
  one, packed ``FIELDS`` to an int32 in fields of ``bits`` bits (3 fields of 8 bits for
  a 49,152-token vocabulary: ``m = ceil(2C / 3)`` = 86 for C = 128). The fetch is a
  product ``(k, N) @ (N, m)``, whose cost is its ``k N m`` ring products: packing cuts
  it 3x (10k rows: 0.25 s for 256 int columns). The fields stay below 2^31, so JAX's
  int32 semantics and SPU's ring agree (no wrap-around anywhere).

The search program, per query:

1. ``scores = emb @ q.T`` (N,) secret fixed point;
2. ``jax.lax.top_k`` (SPU's QuickSelectTopk: a secret shuffle, then comparison bits
   revealed on the shuffled copy only). It returns the top-k *set*, not sorted: the
   k values are ranked by k^2 secret comparisons (ties broken by position) and
   permuted with a secret (k, k) one-hot (equal scores: top_k's tie-break is random,
   so the order among exact ties may differ from the plaintext twin's);
3. the secret indices become a (k, N) one-hot through two digits ``idx = a M + b``
   (``M = ceil(sqrt N)``): ``a``'s one-hot from ``idx >= j M`` (``N / M`` comparisons),
   ``b``'s from ``b >= j`` (``M``), and their outer product (one round of ``k N``
   integer products) -- ``k (N / M + M)`` comparisons instead of ``k N`` equality tests;
4. ``onehot @ tok`` fetches the packed digits; unpacking is a secret shift and mask.

Measured (simulator, ABY3/FM64/18 bits, 2 shared cores; party 0's bytes per query, see
``bench/results/retrieval_sim.json``): N = 10k 1.7 MB / ~200 rounds, N = 100k 20.5 MB /
~190 rounds (the rounds are mostly quick-select's, and vary with its random pivots);
a (k, N) one-hot from ``k N`` equality tests instead: 9.0 MB at 10k, 82.8 MB at 100k;
a full ``jnp.argsort``: 43.7 MB / ~1,400 rounds at 10k. Time is the two products'
local ring work (scores 100k x 384: ~0.24 s; fetch of 86 columns: ~0.25-0.65 s) and
top_k (~0.2 s at 100k) on a quiet machine.

Leaks (public by design): N, D, C, k, the vocabulary size; the shuffled
quick-select reveals comparison outcomes on a secretly permuted copy only.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

from ..node.programs import Input, ProgramSpec
from ..secure import ops as secure_ops
from ..secure.onehot import digit_base, steps_onehot
from . import protocol as P

#: the resident packed token digits (built at load from ``hi``/``lo`` by ``layout_spec``)
TOK = "tok"
#: resident weights the search program reads, in argument order
RESIDENT: tuple[str, ...] = (P.EMB, TOK)
#: revealable outputs per the owner's policy
REVEALABLE: dict[str, tuple[str, ...]] = {
    P.REVEAL_PASSAGES: (P.INDEX, P.SCORES, P.TOKENS),
    P.REVEAL_IDS: (P.INDEX, P.SCORES),
    P.REVEAL_NONE: (),
}
#: every search output, in order
OUTPUTS: tuple[str, ...] = (P.SCORES, P.INDEX, P.TOKENS, P.CTX_HI, P.CTX_LO)


def packing(vocab: int) -> tuple[int, int]:
    """``(bits, fields)``: bits per packed digit (digit + 1, so padding -1 is 0) and
    digits per int32 (all fields below 2^31)."""
    n_hi, base = digit_base(vocab)
    bits = max(n_hi, base).bit_length()
    return bits, max(1, 31 // bits)


def packed_width(C: int, vocab: int) -> int:
    """Columns ``m`` of the resident ``tok (N, m)``."""
    return -(-2 * C // packing(vocab)[1])


def weight_dtypes() -> dict[str, str]:
    """dtypes of the stored and resident tensors (``compile_spec`` must share ints as ints)."""
    return {P.EMB: "float32", P.HI: "int32", P.LO: "int32", TOK: "int32"}


def resident_shapes(N: int, D: int, C: int, vocab: int) -> dict[str, tuple[int, ...]]:
    return {P.EMB: (N, D), P.HI: (N, C), P.LO: (N, C), TOK: (N, packed_width(C, vocab))}


def pack_tokens(hi: jax.Array, lo: jax.Array, vocab: int) -> jax.Array:
    """``hi``, ``lo (N, C)`` int digits (padding -1) -> ``tok (N, m)`` int32; linear in
    the digits with public coefficients: local on shares. Digits outside
    ``[-1, 2^bits - 1)`` would spill into a neighbour field; ``context_rows`` catches
    every row that is not a token or padding."""
    bits, fields = packing(vocab)
    n = hi.shape[0]
    d = jnp.concatenate([hi, lo], axis=1) + 1  # (N, 2C) secret, padding -> 0
    m = -(-d.shape[1] // fields)
    d = jnp.concatenate([d, jnp.zeros((n, m * fields - d.shape[1]), d.dtype)], axis=1)  # (N, m fields)
    weights = jnp.asarray([1 << (bits * j) for j in range(fields)], jnp.int32)  # (fields,) public
    return jnp.sum(d.reshape(n, m, fields) * weights, axis=-1).astype(jnp.int32)  # (N, m)


def unpack_tokens(tok: jax.Array, C: int, vocab: int) -> tuple[jax.Array, jax.Array]:
    """``tok (k, m)`` -> ``hi``, ``lo (k, C)`` int digits (padding -1): a secret shift and mask."""
    bits, fields = packing(vocab)
    mask = (1 << bits) - 1
    d = jnp.stack([(tok >> (bits * j)) & mask for j in range(fields)], axis=-1)  # (k, m, fields)
    d = d.reshape(tok.shape[0], -1)[:, : 2 * C] - 1  # (k, 2C)
    return d[:, :C], d[:, C:]


def layout_spec(C: int, vocab: int) -> ProgramSpec:
    """Load-time program: stored ``hi``, ``lo`` -> resident ``tok`` (compile with
    ``weight_outputs=True`` over weights ``(hi, lo)``)."""

    def layout(hi, lo):
        return (pack_tokens(hi, lo, vocab),)

    return ProgramSpec(layout, (), (TOK,), ())


def scores(emb: jax.Array, q: jax.Array) -> jax.Array:
    """``emb (N, D)``, ``q (1, D)`` -> cosine similarities (N,), emb on SPU's left."""
    return secure_ops.linear(q, emb)[0]


def rank_sort(vals: jax.Array, idx: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Sort k secret (value, index) pairs best first: ranks from k^2 comparisons (ties:
    the earlier position first), then a secret (k, k) permutation one-hot."""
    k = vals.shape[0]
    gt = (vals[:, None] > vals[None, :]).astype(jnp.int32)  # (k, k) gt[i, j] = v_i > v_j
    before = jnp.triu(jnp.ones((k, k), jnp.int32), 1)  # (k, k) public, i < j
    after = jnp.tril(jnp.ones((k, k), jnp.int32), -1)  # (k, k) public, i > j
    rank = jnp.sum(before * (1 - gt.T) + after * gt, axis=0)  # (k,) how many precede j
    perm = (rank[None, :] == jnp.arange(k, dtype=jnp.int32)[:, None]).astype(jnp.int32)  # (k, k) secret
    return perm.astype(vals.dtype) @ vals, perm @ idx.astype(jnp.int32)


def index_onehot(idx: jax.Array, n: int) -> jax.Array:
    """``idx (k,)`` secret ints in ``[0, n)`` -> (k, n) int one-hot, via two digits."""
    base = math.isqrt(n - 1) + 1 if n > 1 else 1
    n_a = -(-n // base)
    a_oh, a = steps_onehot(idx, n_a, base)  # (k, n_a)
    b_oh, _ = steps_onehot(idx - a * base, base, 1)  # (k, base)
    return (a_oh[:, :, None] * b_oh[:, None, :]).reshape(idx.shape[0], -1)[:, :n]  # (k, n)


def search(emb: jax.Array, tok: jax.Array, q: jax.Array, *, k: int, C: int, vocab: int) -> tuple:
    """The search program body: ``(scores (k,), index (k,), tokens (k, C), hi, lo (k, C))``."""
    s = scores(emb, q)  # (N,) secret
    vals, idx = jax.lax.top_k(s, k)  # the top-k set, unsorted
    vals, idx = rank_sort(vals, idx)  # (k,) best first
    fetched = index_onehot(idx, emb.shape[0]) @ tok  # (k, m) secret packed digits
    hi, lo = unpack_tokens(fetched, C, vocab)  # (k, C) each, padding -1
    _, base = digit_base(vocab)
    return vals, idx, hi * base + lo, hi, lo  # padding tokens: -(base + 1)


def search_spec(N: int, D: int, C: int, k: int, vocab: int, reveal: str) -> ProgramSpec:
    """Secure top-k search over resident ``(emb, tok)`` (``RESIDENT``) for one query."""
    if reveal not in REVEALABLE:
        raise ValueError(f"reveal must be one of {list(REVEALABLE)}, got {reveal!r}")
    if not 1 <= k <= N:
        raise ValueError(f"k must be in 1..{N}, got {k}")

    def program(emb, tok, q):
        return search(emb, tok, q, k=k, C=C, vocab=vocab)

    return ProgramSpec(program, (Input(P.QUERY, (1, D)),), OUTPUTS, REVEALABLE[reveal])
