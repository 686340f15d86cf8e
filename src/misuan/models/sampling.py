"""Next-token choice from plaintext logits: greedy, temperature, nucleus (top-p).

Sampling happens at the edge (on the client that owns the logits) or inside
the plaintext reference engine, so it is plain numpy with an explicit
``numpy.random.Generator`` — no global random state.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from misuan.errors import InvalidInput


@dataclass(frozen=True)
class SamplingParams:
    """How to pick tokens.

    Attributes:
        temperature: 0 means greedy (argmax); otherwise logits are divided by it.
        top_p: keep the smallest set of tokens whose probability mass reaches it.
        seed: seed of the sampler's random generator (ignored when greedy).
        max_new_tokens: stop after this many generated tokens.
    """

    temperature: float = 0.0
    top_p: float = 1.0
    seed: int = 0
    max_new_tokens: int = 256

    def __post_init__(self) -> None:
        if not (0.0 <= self.temperature <= 100.0):
            raise InvalidInput(f"temperature must be in [0, 100], got {self.temperature}")
        if not (0.0 < self.top_p <= 1.0):
            raise InvalidInput(f"top_p must be in (0, 1], got {self.top_p}")
        if self.max_new_tokens < 1:
            raise InvalidInput(f"max_new_tokens must be at least 1, got {self.max_new_tokens}")

    @property
    def greedy(self) -> bool:
        """True when tokens are chosen by argmax."""
        return self.temperature == 0.0

    def make_rng(self) -> np.random.Generator:
        """A fresh generator for one generation."""
        return np.random.default_rng(self.seed)


def top_p_filter(probs: np.ndarray, top_p: float) -> np.ndarray:
    """Zero all but the smallest highest-probability set with mass ``>= top_p``; renormalise."""
    if top_p >= 1.0:
        return probs
    order = np.argsort(-probs, kind="stable")
    cumulative = np.cumsum(probs[order])
    keep = int(np.searchsorted(cumulative, top_p) + 1)  # always keeps at least one token
    filtered = np.zeros_like(probs)
    filtered[order[:keep]] = probs[order[:keep]]
    return filtered / filtered.sum()


def sample_token(logits: np.ndarray, params: SamplingParams, rng: np.random.Generator | None = None) -> int:
    """Pick one token id from ``logits (V,)``.

    Greedy when ``params.temperature == 0`` (``rng`` unused); otherwise softmax
    at the temperature, nucleus filtering, and one draw from ``rng``.
    """
    logits = np.asarray(logits, dtype=np.float64).reshape(-1)
    if params.greedy:
        return int(np.argmax(logits))
    if rng is None:
        raise InvalidInput("sampling with temperature > 0 needs a random generator")
    z = logits / params.temperature
    z = z - z.max()
    probs = np.exp(z)
    probs /= probs.sum()
    probs = top_p_filter(probs, params.top_p)
    return int(rng.choice(probs.shape[0], p=probs))
