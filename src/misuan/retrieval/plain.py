"""Plaintext twin of :mod:`.specs`: fp32 cosine top-k (the RAG context rows' twin is the
same function of :mod:`misuan.secure.onehot` run in the clear, as for prompt rows)."""

from __future__ import annotations

import numpy as np

from ..secure.onehot import digit_base
from . import protocol as P


def search_plain(emb: np.ndarray, hi: np.ndarray, lo: np.ndarray, q: np.ndarray, k: int, *, vocab: int) -> dict[str, np.ndarray]:
    """fp32 cosine top-k over ``emb (N, D)`` for ``q (1, D)``: the outputs of
    ``specs.search_spec`` (scores best first, ties broken by the lower index;
    padding tokens -(B + 1), as the secure program maps them)."""
    s = np.asarray(emb, np.float32) @ np.asarray(q, np.float32).reshape(-1)  # (N,)
    idx = np.argsort(-s, kind="stable")[:k]
    _, base = digit_base(vocab)
    h, lo_ = np.asarray(hi)[idx].astype(np.int64), np.asarray(lo)[idx].astype(np.int64)
    return {
        P.SCORES: s[idx],
        P.INDEX: idx.astype(np.int64),
        P.TOKENS: h * base + lo_,
        P.CTX_HI: h,
        P.CTX_LO: lo_,
    }
