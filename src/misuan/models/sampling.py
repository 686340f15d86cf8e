"""Next-token choice from plaintext logits: greedy, temperature, nucleus (top-p).

Sampling happens at the edge (on the client that owns the logits) or inside
the plaintext reference engine, so it is plain numpy with an explicit
``numpy.random.Generator`` — no global random state.
"""

from __future__ import annotations

import hashlib
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


#: Temperatures a sampled request may use (0 = greedy). The nodes enforce the same
#: bounds: a temperature scales the public Gumbel noise added to secret logits.
MIN_TEMPERATURE: float = 0.05
MAX_TEMPERATURE: float = 2.0
#: Seeds are 63-bit non-negative integers (a JSON number every client can send).
MAX_SEED: int = (1 << 63) - 1
GUMBEL_DOMAIN: bytes = b"misuan.gumbel.v1"


def check_temperature(temperature: float) -> float:
    """``temperature`` as a float: 0 (greedy) or in [MIN_TEMPERATURE, MAX_TEMPERATURE]."""
    if isinstance(temperature, bool) or not isinstance(temperature, (int, float)):
        raise InvalidInput("temperature must be a number")
    t = float(temperature)
    if t != 0.0 and not (MIN_TEMPERATURE <= t <= MAX_TEMPERATURE):
        raise InvalidInput(f"temperature must be 0 (greedy) or in [{MIN_TEMPERATURE}, {MAX_TEMPERATURE}], got {temperature}")
    return t


def check_seed(seed: int) -> int:
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= MAX_SEED:
        raise InvalidInput(f"seed must be an integer in [0, 2^63 - 1], got {seed!r}")
    return seed


def gumbel_noise(seed: int, step: int, n: int) -> np.ndarray:
    """Standard Gumbel noise ``(n,)`` float32 for one generation step, from a public PRG.

    The PRG is SHAKE-256 over ``GUMBEL_DOMAIN || seed (8 bytes LE) || step (8 bytes
    LE)``: 8 bytes per entry, read as little-endian uint64 ``x``; ``u = ((x >> 11) +
    0.5) * 2^-53`` lies in (0, 1), and ``g = -log(-log(u))`` in about [-3.6, 37.4]
    (no infinities, well inside the fixed-point range). The nodes and the plaintext
    engine both call this, so a seed gives the same tokens in either.
    """
    check_seed(seed)
    if not isinstance(step, int) or step < 0:
        raise InvalidInput("step must be a non-negative integer")
    xof = hashlib.shake_256(GUMBEL_DOMAIN + seed.to_bytes(8, "little") + step.to_bytes(8, "little"))
    x = np.frombuffer(xof.digest(8 * n), dtype="<u8")
    u = ((x >> np.uint64(11)).astype(np.float64) + 0.5) * 2.0**-53
    return (-np.log(-np.log(u))).astype(np.float32)


def scaled_gumbel(seed: int, step: int, n: int, temperature: float) -> np.ndarray:
    """``temperature * gumbel_noise`` in float32, zeros when greedy: what the nodes add to
    the secret logits (as a public value) and the plaintext engine to its own."""
    t = check_temperature(temperature)
    if t == 0.0:
        return np.zeros(n, np.float32)
    return np.float32(t) * gumbel_noise(seed, step, n)


def gumbel_token(logits: np.ndarray, temperature: float, seed: int, step: int) -> int:
    """Temperature sample by Gumbel-max: ``argmax(logits + T g)`` with the seeded noise
    of ``step`` (0 = the prompt's token) -- a sample of softmax(logits / T)."""
    logits = np.asarray(logits, np.float32).reshape(-1)
    return int(np.argmax(logits + scaled_gumbel(seed, step, logits.shape[0], temperature)))


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


def sample_token(logits: np.ndarray, params: SamplingParams, rng: np.random.Generator | None = None, step: int = 0) -> int:
    """Pick one token id from ``logits (V,)``.

    Greedy when ``params.temperature == 0`` (``rng`` unused). Pure temperature
    sampling (``top_p == 1``) is the secure engine's Gumbel-max with the noise of
    ``(params.seed, step)`` (``rng`` unused), token for token. With ``top_p < 1``
    (plaintext only): softmax at the temperature, nucleus filtering, one draw from ``rng``.
    """
    if params.greedy:
        return int(np.argmax(np.asarray(logits, dtype=np.float64).reshape(-1)))
    if params.top_p >= 1.0:
        return gumbel_token(logits, params.temperature, params.seed, step)
    logits = np.asarray(logits, dtype=np.float64).reshape(-1)
    if rng is None:
        raise InvalidInput("sampling with temperature > 0 needs a random generator")
    z = logits / params.temperature
    z = z - z.max()
    probs = np.exp(z)
    probs /= probs.sum()
    probs = top_p_filter(probs, params.top_p)
    return int(rng.choice(probs.shape[0], p=probs))
