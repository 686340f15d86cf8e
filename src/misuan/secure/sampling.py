"""Token selection inside MPC: greedy (argmax) and temperature sampling (Gumbel-max).

Both return a secret one-hot over the vocabulary, so the chosen token can be fed back
obliviously (``ops.embed_onehot``) and revealed only to the client.

Temperature sampling uses the Gumbel-max trick: argmax(logits / T + g) with g i.i.d.
standard Gumbel is an exact sample of softmax(logits / T). The *client* draws g
(``gumbel_noise``) and secret-shares it with the request, so no node ever learns the
randomness, and the result is reproducible from the client's seed.

Top-p / top-k are plaintext-mode only; MPC mode offers greedy and pure temperature
sampling (callers must reject ``top_p < 1`` and ``top_k > 0`` there). Top-p needs the
probabilities sorted and a cumulative sum over them. SPU's sort/top_k on secrets is a
secure shuffle followed by comparisons revealed on the shuffled copy; it is affordable
under ABY3 (``lax.top_k(k=64)`` over 49,152 logits: ~0.6 s, 10 MB) but not under CHEETAH
(``top_k(k=1)`` alone: 423 MB, 6x the tournament below). A feasible ABY3 follow-up is
"top-k then nucleus within the k candidates" (top_k, a k-wide softmax + cumsum,
Gumbel-max over the k, one-hot of the chosen index); it is not implemented yet.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np


def argmax_onehot(logits: jax.Array) -> jax.Array:
    """One-hot of the argmax over the last axis (ties -> lowest index), same dtype.

    A tournament: a tree of pairwise comparisons finds the max while remembering each
    match's winner (V - 1 comparisons in ceil(log2 V) rounds), then the winner bits are
    expanded back down the tree into the one-hot (V - 1 secret selects). Exactly one 1
    per row, even on ties.

    Agrees with ``jnp.argmax`` on the fixed-point logits; on the real-valued logits
    whenever the top-2 gap exceeds 2^-17 (two ulps of the encoding).
    """
    matches = []  # per level: (winner bits (..., n // 2), n)
    values = logits  # (..., n) secret
    while values.shape[-1] > 1:
        n = values.shape[-1]
        pairs = n // 2
        paired = values[..., : 2 * pairs].reshape(*values.shape[:-1], pairs, 2)  # (..., pairs, 2)
        left, right = paired[..., 0], paired[..., 1]  # (..., pairs) each
        left_wins = left >= right  # (..., pairs) secret bool
        winners = jnp.where(left_wins, left, right)  # (..., pairs)
        if n % 2:  # the odd one out gets a bye
            winners = jnp.concatenate([winners, values[..., -1:]], axis=-1)  # (..., pairs + 1)
        matches.append((left_wins, n))
        values = winners

    onehot = jnp.ones(logits.shape[:-1] + (1,), logits.dtype)  # (..., 1) the champion
    for left_wins, n in reversed(matches):
        pairs = n // 2
        reached = onehot[..., :pairs]  # (..., pairs): did the match winner go on?
        left = jnp.where(left_wins, reached, 0.0)  # (..., pairs)
        right = reached - left  # (..., pairs)
        expanded = jnp.stack([left, right], axis=-1).reshape(*reached.shape[:-1], 2 * pairs)
        # expanded: (..., 2 * pairs), interleaved left/right
        if n % 2:
            expanded = jnp.concatenate([expanded, onehot[..., pairs:]], axis=-1)  # (..., n)
        onehot = expanded
    return onehot


def gumbel_max_onehot(
    logits: jax.Array, temperature: float | jax.Array, gumbel_noise: jax.Array
) -> jax.Array:
    """Temperature sample as a one-hot: argmax_onehot(logits + temperature * gumbel_noise).

    Equivalent to argmax(logits / T + g) for T > 0 without a secret division.
    ``gumbel_noise`` has the shape of ``logits`` (secret, from the client's
    ``gumbel_noise``); ``temperature`` is public (a Python float) or a traced scalar.
    A Python temperature <= 0 means greedy (the noise is ignored).
    """
    if isinstance(temperature, (int, float)) and temperature <= 0:
        return argmax_onehot(logits)
    return argmax_onehot(logits + temperature * gumbel_noise)


def gumbel_noise(
    seed: int | np.random.SeedSequence, shape: tuple[int, ...], dtype: type = np.float32
) -> np.ndarray:
    """Client-side (plaintext) standard Gumbel noise, -log(-log(u)), reproducible from seed.

    u is drawn in [2^-53, 1) so the noise lies in about [-3.6, 36.7]: no infinities, and
    well inside the fixed-point range. Never call this on a node.
    """
    rng = np.random.default_rng(seed)
    u = rng.random(shape, dtype=np.float64)
    u = np.maximum(u, 2.0**-53)
    return (-np.log(-np.log(u))).astype(dtype)
