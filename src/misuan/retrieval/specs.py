"""PLACEHOLDER (lead's wiring stub; replaced by the search helper's specs)."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from ..node.programs import Input, ProgramSpec
from ..secure.onehot import digit_base
from . import protocol as P


def revealable(reveal: str) -> tuple[str, ...]:
    return {P.REVEAL_PASSAGES: (P.INDEX, P.SCORES, P.TOKENS), P.REVEAL_IDS: (P.INDEX, P.SCORES), P.REVEAL_NONE: ()}[reveal]


def search_spec(N: int, D: int, C: int, k: int, vocab: int, reveal: str) -> ProgramSpec:
    _, base = digit_base(vocab)

    def search(emb, hi, lo, q):
        scores = emb @ q[0]  # (N,) secret
        top, idx = jax.lax.top_k(scores, k)  # (k,) secret
        onehot = (idx[:, None] == jnp.arange(N)[None, :]).astype(jnp.int32)  # (k, N) secret
        chi = onehot @ hi  # (k, C) secret
        clo = onehot @ lo
        return top, idx, chi * base + clo, chi, clo

    return ProgramSpec(search, (Input(P.QUERY, (1, D)),), (P.SCORES, P.INDEX, P.TOKENS, P.CTX_HI, P.CTX_LO), revealable(reveal))
