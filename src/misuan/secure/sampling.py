"""Token selection inside MPC: greedy (argmax) and temperature sampling (Gumbel-max).

Both return a secret one-hot over the vocabulary, so the chosen token can be fed back
obliviously (``ops.embed_onehot``) and revealed only to the client.

Temperature sampling uses the Gumbel-max trick: argmax(logits / T + g) with g i.i.d.
standard Gumbel is an exact sample of softmax(logits / T). In the LLaMA programs the
*nodes* make ``T g`` themselves, as a public value, from the client's seed and the step
(:func:`misuan.models.sampling.gumbel_noise`, a SHAKE-256 PRG): a client never chooses
the noise (issue 18), and the nodes never see the logits or the token it is added to.
``gumbel_noise`` below is a generic numpy helper for tests.

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

import itertools

import jax
import jax.numpy as jnp
import numpy as np

# argmax_onehot: levels of at most this many entries play in groups of 4 (one comparison
# op for the 6 pairs of each group) instead of pairs: half the comparison rounds there,
# for 3x the compared elements (cheap on small levels). SmolLM2's 49,152 logits: 4
# pairwise levels down to 3072, then 6 levels of 4 (17 comparison ops -> 10).
_ARGMAX_QUAD_MAX_N: int = 4096


def argmax_onehot(logits: jax.Array) -> jax.Array:
    """One-hot of the argmax over the last axis (ties -> lowest index), same dtype.

    A tournament: each level compares neighbours (pairs while a level is large, groups
    of 4 once it has at most ``_ARGMAX_QUAD_MAX_N`` entries: all 6 pairs of a group in
    one comparison op, the winner by an AND of its 3 results) and remembers each
    match's winner bits; then the winner bits are expanded back down the tree into the
    one-hot (one secret select per level). Exactly one 1 per row, even on ties: within
    a match the lower index wins ties, and winners keep their index order.

    Agrees with ``jnp.argmax`` on the fixed-point logits; on the real-valued logits
    whenever the top-2 gap exceeds 2^-17 (two ulps of the encoding).
    """
    matches = []  # per level: (winner bits (..., n // g, g); for pairs the left one's (..., n // 2, 1), n, g)
    values = logits  # (..., n) secret
    while values.shape[-1] > 1:
        n = values.shape[-1]
        g = 2 if n > _ARGMAX_QUAD_MAX_N else min(4, n)
        groups = n // g
        block = values[..., : groups * g].reshape(*values.shape[:-1], groups, g)  # (..., groups, g)
        if g == 2:
            left_wins = block[..., 0] >= block[..., 1]  # (..., groups) secret bool
            winners = jnp.where(left_wins, block[..., 0], block[..., 1])  # (..., groups)
            wins = left_wins[..., None]  # (..., groups, 1): the right one wins otherwise
        else:
            wins = _group_wins(block)  # (..., groups, g) secret bool, one per group
            winners = jnp.sum(jnp.where(wins, block, 0.0), axis=-1)  # (..., groups)
        if n % g:  # the last n % g entries get a bye
            winners = jnp.concatenate([winners, values[..., groups * g :]], axis=-1)  # (..., groups + n % g)
        matches.append((wins, n, g))
        values = winners

    onehot = jnp.ones(logits.shape[:-1] + (1,), logits.dtype)  # (..., 1) the champion
    for wins, n, g in reversed(matches):
        groups = n // g
        reached = onehot[..., :groups, None]  # (..., groups, 1): did the match winner go on?
        if g == 2:  # one select on half the entries: right = reached - left
            left = jnp.where(wins, reached, 0.0)  # (..., groups, 1)
            picked = jnp.concatenate([left, reached - left], axis=-1)  # (..., groups, 2)
        else:
            picked = jnp.where(wins, reached, 0.0)  # (..., groups, g)
        expanded = picked.reshape(*reached.shape[:-2], groups * g)  # (..., groups * g)
        if n % g:
            expanded = jnp.concatenate([expanded, onehot[..., groups:]], axis=-1)  # (..., n)
        onehot = expanded
    return onehot


def _group_wins(block: jax.Array) -> jax.Array:
    """(..., groups, g) secret -> (..., groups, g) bool: the first max of each group.

    One comparison op over the g (g - 1) / 2 pairs j < k (static slices); member j wins
    iff b_j >= b_k for every later k and b_i < b_j for every earlier i."""
    g = block.shape[-1]
    diffs = [block[..., j : j + 1] - block[..., j + 1 :] for j in range(g - 1)]  # (..., groups, g-1-j) each
    ge = jnp.concatenate(diffs, axis=-1) >= 0  # (..., groups, g (g - 1) / 2) secret: b_j >= b_k, j < k
    pair = {jk: i for i, jk in enumerate(itertools.combinations(range(g), 2))}  # (j, k) -> column of ge
    members = []
    for j in range(g):
        terms = [~ge[..., pair[i, j], None] for i in range(j)] + [ge[..., pair[j, k], None] for k in range(j + 1, g)]
        members.append(jnp.concatenate(terms, axis=-1))  # (..., groups, g - 1)
    return jnp.all(jnp.stack(members, axis=-2), axis=-1)  # (..., groups, g)


def gumbel_max_onehot(logits: jax.Array, temperature: float | jax.Array, gumbel_noise: jax.Array) -> jax.Array:
    """Temperature sample as a one-hot: argmax_onehot(logits + temperature * gumbel_noise).

    Equivalent to argmax(logits / T + g) for T > 0 without a secret division.
    ``gumbel_noise`` has the shape of ``logits`` (secret, from the client's
    ``gumbel_noise``); ``temperature`` is public (a Python float) or a traced scalar.
    A Python temperature <= 0 means greedy (the noise is ignored).
    """
    if isinstance(temperature, (int, float)) and temperature <= 0:
        return argmax_onehot(logits)
    return argmax_onehot(logits + temperature * gumbel_noise)


def gumbel_noise(seed: int | np.random.SeedSequence, shape: tuple[int, ...], dtype: type = np.float32) -> np.ndarray:
    """Plaintext standard Gumbel noise, -log(-log(u)), reproducible from seed (tests only).

    u is drawn in [2^-53, 1) so the noise lies in about [-3.6, 36.7]: no infinities, and
    well inside the fixed-point range. Never call this on a node.
    """
    rng = np.random.default_rng(seed)
    u = rng.random(shape, dtype=np.float64)
    u = np.maximum(u, 2.0**-53)
    return (-np.log(-np.log(u))).astype(dtype)
