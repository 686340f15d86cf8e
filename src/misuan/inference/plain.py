"""``--plaintext``: the reference engine on the owner's own weights, same interface."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Iterator

from .. import errors as E
from ..models.generation import PlainLlama
from ..models.loader import load_model
from ..models.sampling import SamplingParams
from .backend import ChatStream, GenerationParams, GenerationStats, ModelInfo
from .secure import prompt_ids, stream_text


class PlainModel:
    """Local plaintext generation for owners who hold the weights."""

    def __init__(self, path: str | Path, name: str | None = None):
        t0 = time.perf_counter()
        self.name = name or Path(path).name
        self.config, params, self.tokenizer = load_model(path)
        self.engine = PlainLlama(self.config, params)
        self.ready_s = time.perf_counter() - t0

    def generate_ids(self, prompt_ids: list[int], params: GenerationParams, stats: GenerationStats | None = None) -> Iterator[int]:
        params.check(secure=False)
        if not prompt_ids:
            raise E.InvalidInput("empty prompt")
        if len(prompt_ids) + params.max_tokens > self.config.max_seq_len:
            raise E.InvalidInput(f"prompt ({len(prompt_ids)} tokens) + max_tokens exceeds the model's context of {self.config.max_seq_len}")
        stats = stats if stats is not None else GenerationStats()
        stats.prompt_tokens = len(prompt_ids)
        sampling = SamplingParams(
            temperature=params.temperature, top_p=params.top_p, seed=params.resolved_seed(), max_new_tokens=params.max_tokens
        )
        gen = self.engine.generate(prompt_ids, sampling, eos_ids=self.tokenizer.eos_ids)
        t = time.perf_counter()
        first = True
        for tok in gen:
            now = time.perf_counter()
            if first:
                stats.prefill_s, first = now - t, False
            else:
                stats.decode_s.append(now - t)
                stats.steps += 1
            t = now
            yield tok
        stats.finish_reason = gen.finish_reason

    def stream(self, messages: list[dict], params: GenerationParams, stats: GenerationStats | None = None, raw: bool = False):
        return stream_text(self, prompt_ids(self.tokenizer, messages, raw), params, stats)

    def chat(
        self, messages: list[dict], params: GenerationParams, stats: GenerationStats | None = None, raw: bool = False
    ) -> Iterator[str]:
        for _tok, piece in self.stream(messages, params, stats, raw):
            if piece:
                yield piece

    # ------------------------------------------------------------ ChatBackend

    def stream_chat(self, messages: list[dict], params: GenerationParams) -> ChatStream:
        """The answer as :class:`~misuan.inference.backend.ChatEvent` s."""
        params.check(secure=False)
        stats = GenerationStats()
        return ChatStream(self.stream(messages, params, stats), stats, mpc=False)

    def model_info(self) -> ModelInfo:
        return ModelInfo(name=self.name, max_context=self.config.max_seq_len, mode="plaintext")
