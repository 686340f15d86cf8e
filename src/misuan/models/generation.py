"""Plaintext reference engine: prefill, decode and a streaming ``generate``.

:class:`PlainLlama` keeps the params on the JAX device, pads prompts to shape
buckets (few compilations) and drives :func:`misuan.models.llama.prefill` /
:func:`~misuan.models.llama.decode_step`. It is the ground truth the secure
engine is compared with, and a usable local engine for small models.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from misuan.errors import InvalidInput
from misuan.models.config import LlamaConfig
from misuan.models.llama import PLAIN_OPS, KVCache, LlamaOps, init_cache, prefill
from misuan.models.params import Params, validate_params
from misuan.models.sampling import SamplingParams, sample_token

#: Smallest prefill bucket; buckets double from here.
MIN_BUCKET = 16


def bucket_size(n: int, limit: int, minimum: int = MIN_BUCKET) -> int:
    """Smallest ``minimum * 2**k >= n``, capped at ``limit`` (and never below ``n``)."""
    size = minimum
    while size < n:
        size *= 2
    return max(n, min(size, limit))


class PlainLlama:
    """A plaintext LLaMA model ready to run.

    Args:
        cfg: architecture config.
        params: params pytree (:mod:`misuan.models.params` layout).
        ops: primitives; plaintext by default (pass others to test MPC ops in the clear).
    """

    def __init__(self, cfg: LlamaConfig, params: Params, ops: LlamaOps = PLAIN_OPS):
        validate_params(params, cfg)
        self.cfg = cfg
        self.ops = ops
        self.params = jax.device_put(params)

    def new_cache(self, max_len: int | None = None) -> KVCache:
        """An empty cache (default: the model's full context)."""
        return init_cache(self.cfg, max_len or self.cfg.max_seq_len)

    def prefill(self, tokens: Sequence[int], cache: KVCache, pos: int = 0, *, last_only: bool = False) -> tuple[np.ndarray, KVCache]:
        """Logits for ``tokens`` placed at ``pos`` (``(T, V)``, or ``(V,)`` if ``last_only``)."""
        n = len(tokens)
        if n == 0:
            raise InvalidInput("empty prompt")
        room = cache.max_len - pos
        if n > room:
            raise InvalidInput(f"sequence too long: {pos + n} tokens > {cache.max_len} cache slots")
        padded = np.zeros(bucket_size(n, room), np.int32)
        padded[:n] = tokens
        logits, cache = prefill(self.params, self.cfg, padded, cache, pos, self.ops, n_real=n, last_only=last_only)
        logits = np.asarray(logits)
        return (logits[0] if last_only else logits[:n]), cache

    def decode(self, token: int, cache: KVCache, pos: int) -> tuple[np.ndarray, KVCache]:
        """Logits ``(V,)`` for one token at ``pos``."""
        logits, cache = prefill(self.params, self.cfg, jnp.asarray([token], jnp.int32), cache, pos, self.ops)
        return np.asarray(logits[0]), cache

    def logits(self, tokens: Sequence[int]) -> np.ndarray:
        """Full-sequence logits ``(T, V)`` from an empty cache (for tests and scoring)."""
        cache = self.new_cache(bucket_size(len(tokens), self.cfg.max_seq_len))
        return self.prefill(tokens, cache)[0]

    def generate(
        self,
        prompt_ids: Sequence[int],
        sampling: SamplingParams | None = None,
        *,
        eos_ids: Iterable[int] = (),
        stop_strings: Sequence[str] = (),
        decode: Callable[[list[int]], str] | None = None,
    ) -> Generation:
        """Stream generated token ids; see :class:`Generation`."""
        sampling = sampling or SamplingParams()
        return Generation(self, list(prompt_ids), sampling, frozenset(eos_ids), tuple(stop_strings), decode)


class Generation(Iterator[int]):
    """Iterator of generated token ids.

    Stops (without yielding it) at an EOS id, after the token that completes a
    stop string (needs ``decode``; the text consumer trims the string), or at
    ``max_new_tokens`` / the end of the context. Afterwards ``finish_reason`` is
    ``"stop"`` or ``"length"`` and ``tokens`` holds everything yielded. Prompt plus
    generated tokens never exceed the model's ``max_seq_len``.
    """

    def __init__(
        self,
        engine: PlainLlama,
        prompt_ids: list[int],
        sampling: SamplingParams,
        eos_ids: frozenset[int],
        stop_strings: tuple[str, ...],
        decode: Callable[[list[int]], str] | None,
    ):
        if stop_strings and decode is None:
            raise InvalidInput("stop strings need a decode function")
        if not prompt_ids:
            raise InvalidInput("empty prompt")
        limit = engine.cfg.max_seq_len
        if len(prompt_ids) >= limit:
            raise InvalidInput(f"prompt of {len(prompt_ids)} tokens does not fit the {limit}-token context")
        self.finish_reason: str | None = None
        self.tokens: list[int] = []
        self.prompt_tokens = len(prompt_ids)
        self._steps = self._run(engine, prompt_ids, sampling, eos_ids, stop_strings, decode)

    def __next__(self) -> int:
        return next(self._steps)

    def _run(
        self,
        engine: PlainLlama,
        prompt_ids: list[int],
        sampling: SamplingParams,
        eos_ids: frozenset[int],
        stop_strings: tuple[str, ...],
        decode: Callable[[list[int]], str] | None,
    ) -> Iterator[int]:
        limit = engine.cfg.max_seq_len
        total = min(limit, len(prompt_ids) + sampling.max_new_tokens)
        cache = engine.new_cache(bucket_size(total, limit, minimum=64))
        rng = sampling.make_rng()
        logits, cache = engine.prefill(prompt_ids, cache, last_only=True)
        pos = len(prompt_ids)
        while True:
            token = sample_token(logits, sampling, rng, step=len(self.tokens))
            if token in eos_ids:
                self.finish_reason = "stop"
                return
            self.tokens.append(token)
            yield token
            if stop_strings and any(s in decode(self.tokens) for s in stop_strings):  # type: ignore[misc]
                self.finish_reason = "stop"
                return
            if len(self.tokens) >= sampling.max_new_tokens or pos + 1 >= min(limit, cache.max_len):
                self.finish_reason = "length"
                return
            logits, cache = engine.decode(token, cache, pos)
            pos += 1
