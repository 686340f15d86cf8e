"""Prompt rows the nodes can trust: one-hot by construction, checked inside MPC.

A grantee must learn tokens, not logits. If a client could feed any real-valued
row instead of a token's one-hot (two 1s, a 0.7, a scaled row), every prompt
would be a free query of the network at a point of its choice, and the revealed
token a comparison between logits. So the client does not upload one-hot rows:
it uploads each token id as two small one-hot *digits* (base ``B = ceil(sqrt V)``:
``hi = id // B`` over ``ceil(V / B)`` entries, ``lo = id % B`` over ``B``) as
secret **integers**, and the program builds the row as their outer product.

Checked in the ring Z_2^64, exactly (no fixed-point truncation, no tolerance):

* every digit entry is 0 or 1: ``d (d - 1) == 0``, which in Z_2^64 holds only
  for 0 and 1 (``d`` and ``d - 1`` are consecutive: one is odd, hence invertible);
* per row, ``sum(lo) == sum(hi) == r`` with ``r`` in {0, 1}: one digit each, or
  none (a padding row);
* the real rows (``r = 1``) are a suffix ending at slot ``T - 1``: the prompt is
  right-aligned and the attention mask built from ``r`` is the causal one;
* ``sum(row[:V]) == r``: the id is below ``V``.

Then every row is exactly a token's one-hot or zero. The checks cost
``T (B + V / B)`` equality tests (~450 per row for V = 49,152) and one round of
``T V`` integer products; the verdict is one secret bit that the nodes reveal among
themselves (nothing else): a run whose bit is 0 is refused.
"""

from __future__ import annotations

import math
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np


def digit_base(vocab: int) -> tuple[int, int]:
    """``(n_hi, B)``: the sizes of the two digit one-hots of a token id."""
    base = math.isqrt(vocab - 1) + 1 if vocab > 1 else 1
    return -(-vocab // base), base


def token_digits(ids: Sequence[int], T: int, vocab: int) -> tuple[np.ndarray, np.ndarray]:
    """Client side: right-aligned ``hi (T, n_hi)`` and ``lo (T, B)`` int32 one-hots;
    zero rows for padding."""
    n_hi, base = digit_base(vocab)
    hi = np.zeros((T, n_hi), np.int32)
    lo = np.zeros((T, base), np.int32)
    for i, tok in enumerate(ids):
        hi[T - len(ids) + i, tok // base] = 1
        lo[T - len(ids) + i, tok % base] = 1
    return hi, lo


def onehot_rows(hi: jax.Array, lo: jax.Array, vocab: int) -> tuple[jax.Array, jax.Array, jax.Array]:
    """``hi (T, n_hi)``, ``lo (T, B)`` secret ints -> ``(rows (T, V) int, real (T,) int, ok () bool)``.

    ``ok`` is true exactly when every row is a token's one-hot (``real = 1``) or zero
    (``real = 0``) and the real rows are a suffix ending at the last slot."""
    T = hi.shape[0]
    real = jnp.sum(lo, axis=-1)  # (T,) secret
    rows = (hi[:, :, None] * lo[:, None, :]).reshape(T, -1)[:, :vocab]  # (T, V) secret, exact in the ring
    zero = [
        (hi * (hi - 1)).reshape(-1),  # (T n_hi,) binary digits
        (lo * (lo - 1)).reshape(-1),  # (T B,)
        jnp.sum(hi, axis=-1) - real,  # (T,) one hi digit iff one lo digit
        real * (real - 1),  # (T,) at most one
        real[:-1] * (1 - real[1:]),  # (T - 1,) real rows are a suffix
        real[-1:] - 1,  # (1,) ... that ends at slot T - 1
        jnp.sum(rows, axis=-1) - real,  # (T,) the id is below V
    ]
    ok = jnp.all(jnp.concatenate(zero) == 0)  # () secret bool
    return rows, real, ok


def prefill_mask(real: jax.Array) -> jax.Array:
    """``real (T,)`` 0/1 -> the (T, T) float mask: real rows see real slots up to
    themselves, padding rows only themselves (products with public 0/1: local)."""
    T = real.shape[0]
    below = jnp.tril(jnp.ones((T, T), real.dtype), -1)  # (T, T) public, strictly lower
    return (below * real[None, :] + jnp.eye(T, dtype=real.dtype)).astype(jnp.float32)  # (T, T) secret


def rows_plain(hi: np.ndarray, lo: np.ndarray, vocab: int) -> tuple[np.ndarray, np.ndarray, bool]:
    """Plaintext twin of :func:`onehot_rows` (int64 arithmetic; the ring only matters
    for values no honest client sends)."""
    rows, real, ok = onehot_rows(jnp.asarray(hi, jnp.int32), jnp.asarray(lo, jnp.int32), vocab)
    return np.asarray(rows), np.asarray(real), bool(ok)


def steps_onehot(x: jax.Array, n: int, step: int) -> tuple[jax.Array, jax.Array]:
    """``x (k,)`` secret ints in ``[0, n step)`` -> (one-hot of ``x // step`` (k, n) int,
    ``x // step`` (k,)), from ``n - 1`` comparisons ``x >= j step`` differenced in the
    arithmetic domain (exactly one 1 per row; values outside the range clamp to the
    first or last column). Arithmetic 0/1 from the start: a one-hot straight from
    equality tests is boolean-shared, and a product of two such (an outer product
    of digits) cost 1.26 GB against 54 MB for 2 x 64 tokens."""
    if n == 1:
        return jnp.ones((x.shape[0], 1), jnp.int32), jnp.zeros_like(x)
    thresholds = jnp.arange(1, n, dtype=jnp.int32) * step  # (n - 1,) public
    ge = (x[:, None] >= thresholds[None, :]).astype(jnp.int32)  # (k, n - 1) secret
    onehot = jnp.concatenate([1 - ge[:, :1], ge[:, :-1] - ge[:, 1:], ge[:, -1:]], axis=1)  # (k, n)
    return onehot, jnp.sum(ge, axis=1)


def digit_onehots(hi_ids: jax.Array, lo_ids: jax.Array, n_hi: int, base: int) -> tuple[jax.Array, jax.Array]:
    """Secret integer digits ``(W,)`` -> their one-hots ``(W, n_hi)``, ``(W, B)``:
    ``n_hi + B`` comparisons per token (~450 for V = 49,152, against V = 49,152
    equality tests for the id itself). The padding digit -1 gives a zero row (its
    column is dropped); digits above the range clamp to the last column (a row the
    ``id < V`` check of :func:`context_onehot_rows` then refuses, if it is one)."""
    hi = steps_onehot(hi_ids + 1, n_hi + 1, 1)[0][:, 1:]  # (W, n_hi) secret 0/1
    lo = steps_onehot(lo_ids + 1, base + 1, 1)[0][:, 1:]  # (W, B) secret 0/1
    return hi, lo


def context_onehot_rows(
    hi: jax.Array, lo: jax.Array, ctx_hi: jax.Array, ctx_lo: jax.Array, vocab: int, start: int
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """A prompt with a context window filled on the nodes (retrieval-augmented generation).

    ``hi (T, n_hi)``, ``lo (T, B)``: the client's digit one-hots, right-aligned, with
    the ``W`` rows of the window ``[start, start + W)`` left zero; ``ctx_hi``,
    ``ctx_lo`` (any shape, ``W`` entries): secret integer digits fetched from a
    knowledge base (the padding digit where a chunk is shorter). Returns the rows
    ``(T, V)``, ``real (T,)`` and ``ok``: true exactly when the client's rows pass
    :func:`onehot_rows`' checks with the window counted as real, the client's window
    rows are all zero (a client cannot cancel, hence probe, a fetched token), and
    every window row is a token one-hot below ``V`` or zero. Window rows that are zero
    (padding) are masked like any padding slot."""
    n_hi, base = hi.shape[1], lo.shape[1]
    W = ctx_hi.size
    end = start + W
    ch, cl = digit_onehots(ctx_hi.reshape(-1), ctx_lo.reshape(-1), n_hi, base)  # (W, n_hi), (W, B) secret

    def fill(x, window):  # x with rows [start, end) replaced: slices and a concatenation, local (no scatter)
        return jnp.concatenate([x[:start], window, x[end:]], axis=0)

    client_real = jnp.sum(lo, axis=-1)  # (T,) secret
    seen = fill(client_real, jnp.ones((W,), client_real.dtype))  # (T,) the window counts as real for the suffix check
    all_hi = fill(hi, hi[start:end] + ch)  # (T, n_hi) secret
    all_lo = fill(lo, lo[start:end] + cl)  # (T, B) secret
    real = jnp.sum(all_lo, axis=-1)  # (T,) secret
    rows = (all_hi[:, :, None] * all_lo[:, None, :]).reshape(hi.shape[0], -1)[:, :vocab]  # (T, V) secret, exact in the ring
    zero = [
        (hi * (hi - 1)).reshape(-1),  # client digits are binary (so non-negative)...
        (lo * (lo - 1)).reshape(-1),
        jnp.sum(hi[start:end]).reshape(1) + jnp.sum(lo[start:end]).reshape(1),  # ... and zero in the window
        jnp.sum(all_hi, axis=-1) - real,  # one hi digit iff one lo digit, every row
        client_real * (client_real - 1),  # at most one per client row
        seen[:-1] * (1 - seen[1:]),  # client rows + window are a suffix
        seen[-1:] - 1,  # ... that ends at slot T - 1
        jnp.sum(rows, axis=-1) - real,  # every id below V
    ]
    ok = jnp.all(jnp.concatenate(zero) == 0)  # () secret bool
    return rows, real, ok


def context_digits(ids, width: int, vocab: int, pad: int = -1) -> tuple[np.ndarray, np.ndarray]:
    """Owner/reference side: token ids -> ``(hi, lo)`` int32 digits of ``width`` slots,
    ``pad`` in unused slots (the plaintext of what a knowledge base stores per chunk)."""
    _, base = digit_base(vocab)
    ids = np.asarray(list(ids)[:width], np.int64)
    hi = np.full((width,), pad, np.int32)
    lo = np.full((width,), pad, np.int32)
    hi[: len(ids)], lo[: len(ids)] = ids // base, ids % base
    return hi, lo
