"""Plaintext twins of :mod:`.specs`: fp32 cosine top-k and the context one-hot rows."""

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


def context_rows_plain(ctx_hi: np.ndarray, ctx_lo: np.ndarray, vocab: int) -> tuple[np.ndarray, np.ndarray, bool]:
    """Twin of ``specs.context_rows``: (rows (kC, V), real (kC,), ok)."""
    n_hi, base = digit_base(vocab)
    h = np.clip(np.asarray(ctx_hi).reshape(-1), -1, n_hi - 1)  # out-of-range digits clamp, as in MPC
    lo = np.clip(np.asarray(ctx_lo).reshape(-1), -1, base - 1)
    hi_oh = (h[:, None] == np.arange(n_hi)[None, :]).astype(np.int64)
    lo_oh = (lo[:, None] == np.arange(base)[None, :]).astype(np.int64)
    rows = (hi_oh[:, :, None] * lo_oh[:, None, :]).reshape(h.shape[0], -1)[:, :vocab]
    real = hi_oh.sum(-1)
    ok = bool(np.all(lo_oh.sum(-1) == real) and np.all(rows.sum(-1) == real))
    return rows, real, ok
