"""Encrypted inference (密态推理), client side: prompts and answers stay secret.

The client tokenizes and renders the chat template here, secret-shares the
prompt as two integer digit one-hots per token (:mod:`misuan.secure.onehot`;
the nodes build and check the rows and the mask), and asks every node to run
the programs *they* compile (``llama.prefill`` once, ``llama.decode`` per
token) against the resident model runtime. The KV cache, the mask and the
sampled token stay secret-shared on the nodes between steps; only the token
ids are reconstructed, here. The sampling noise is made by the nodes from the
seed and temperature given with the prefill (a public PRG, the same one the
plaintext engine uses): a client never uploads noise.

What nodes learn: the model, the prompt's shape bucket ``T``, the cache bucket
``S``, the number of decode steps (``fixed_length`` always runs ``max_tokens``
steps to hide the answer length), the temperature and seed (so greedy or not)
and hence the noise. Not the prompt length within its bucket, not the tokens,
not the logits.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable, Iterator

import numpy as np

from .. import errors as E
from ..client.client import Client
from ..client.runtime import ModelRuntime, RuntimeRequest
from ..models.config import LlamaConfig
from ..models.tokenizer import StreamDecoder, Tokenizer
from ..secure.onehot import token_digits
from . import protocol as P
from .backend import ChatStream, GenerationParams, GenerationStats, ModelInfo
from .protocol import CACHE_BUCKETS, PROMPT_BUCKETS, bucket


@dataclass(frozen=True)
class Prefill:
    """How a request's prompt reaches the nodes: the prefill program and its
    parameters, the prompt's digit one-hots the client uploads (secret), and what
    runs first in the request (e.g. handing over a context from a knowledge base)."""

    program: str
    params: dict
    hi: np.ndarray = field(repr=False)
    lo: np.ndarray = field(repr=False)
    before: Callable[[RuntimeRequest], None] | None = None


class SecureModel:
    """A hosted model, ready for secure generation from this client."""

    def __init__(self, client: Client, name: str, version: int | None = None):
        t0 = time.perf_counter()
        self.client = client
        name = client.model_ref(name)
        self.runtime = ModelRuntime.ensure(client, name, version)
        self.ready_s = time.perf_counter() - t0
        info = client.nodes[0].show_model(name, self.runtime.version)
        self.config = LlamaConfig.from_public(info["config"])
        self.tokenizer = Tokenizer.from_json(client.nodes[0].model_tokenizer(name, self.runtime.version))
        self.name = name

    def __repr__(self) -> str:
        return f"SecureModel({self.name}@{self.runtime.version})"

    def encode_chat(self, messages: list[dict]) -> list[int]:
        _check_messages(messages)
        return self.tokenizer.encode_chat(messages, add_generation_prompt=True)

    def buckets(self, n_prompt: int, max_tokens: int) -> tuple[int, int]:
        context = self.config.max_seq_len
        if n_prompt + max_tokens > context:
            raise E.InvalidInput(f"prompt ({n_prompt} tokens) + max_tokens ({max_tokens}) exceeds the model's context of {context}")
        T = bucket(n_prompt, PROMPT_BUCKETS, "prompt length")
        S = bucket(T + max_tokens, CACHE_BUCKETS, "prompt bucket + max_tokens")
        if S > max(context, CACHE_BUCKETS[0]):
            raise E.InvalidInput(f"prompt bucket {T} + max_tokens {max_tokens} does not fit the model's context of {context}")
        return T, S

    def generate_ids(self, prompt_ids: list[int], params: GenerationParams, stats: GenerationStats | None = None) -> Iterator[int]:
        """Yield generated token ids as the nodes produce them (stops on EOS / max_tokens)."""
        params.check(secure=True)
        if not prompt_ids:
            raise E.InvalidInput("empty prompt")
        T, S = self.buckets(len(prompt_ids), params.max_tokens)
        self.check_ids(prompt_ids)
        hi, lo = token_digits(prompt_ids, T, self.config.vocab_size)
        return self.generate_from(Prefill(P.PREFILL, {P.PARAM_T: T, P.PARAM_S: S}, hi, lo), len(prompt_ids), params, stats)

    def check_ids(self, ids: list[int]) -> None:
        V = self.config.vocab_size
        if any(not isinstance(t, int) or not 0 <= t < V for t in ids):
            raise E.InvalidInput(f"prompt token ids must be integers in [0, {V})")

    def generate_from(
        self, prefill: "Prefill", n_prompt: int, params: GenerationParams, stats: GenerationStats | None = None
    ) -> Iterator[int]:
        """Run ``prefill`` in a new request, then decode: yield token ids as they come."""
        params.check(secure=True)
        stats = stats if stats is not None else GenerationStats()
        stats.runtime_ready_s = self.ready_s
        T, S = prefill.params[P.PARAM_T], prefill.params[P.PARAM_S]
        stats.prompt_tokens, stats.prompt_bucket, stats.cache_bucket = n_prompt, T, S
        sampling = {P.SEED: params.resolved_seed(), P.TEMPERATURE: float(params.temperature)}
        eos = set(self.tokenizer.eos_ids)

        with self.runtime.request() as req:
            t0 = time.perf_counter()
            if prefill.before is not None:
                prefill.before(req)
            req.put(P.PROMPT_HI, prefill.hi)
            req.put(P.PROMPT_LO, prefill.lo)
            res = req.run(prefill.program, prefill.params, sampling)
            tok = int(round(float(req.reveal(P.TOKEN_ID)[0])))
            stats.prefill_s = time.perf_counter() - t0
            stats.prefill_bytes = sum(r.get("send_bytes", 0) for r in res)
            done = False
            produced = 1
            if tok in eos:
                stats.finish_reason = "stop"
                done = True
            yield tok
            while produced < params.max_tokens and (not done or params.fixed_length):
                t1 = time.perf_counter()
                res = req.run(P.DECODE, {P.PARAM_S: S})  # token, cache, mask, RoPE row, noise: all on the nodes
                tok = int(round(float(req.reveal(P.TOKEN_ID)[0])))
                stats.decode_s.append(time.perf_counter() - t1)
                stats.decode_bytes.append(sum(r.get("send_bytes", 0) for r in res))
                stats.steps += 1
                produced += 1
                if done:
                    continue  # fixed length: keep the nodes busy, discard the output
                if tok in eos:
                    stats.finish_reason = "stop"
                    done = True
                yield tok
            if not stats.finish_reason:
                stats.finish_reason = "length"

    def prompt_ids(self, messages: list[dict], raw: bool = False) -> list[int]:
        return prompt_ids(self.tokenizer, messages, raw)

    def stream(
        self, messages: list[dict], params: GenerationParams, stats: GenerationStats | None = None, raw: bool = False
    ) -> Iterator[tuple[int, str]]:
        """Yield ``(token_id, text_piece)`` as the answer is produced."""
        return stream_text(self, self.prompt_ids(messages, raw), params, stats)

    def chat(
        self, messages: list[dict], params: GenerationParams, stats: GenerationStats | None = None, raw: bool = False
    ) -> Iterator[str]:
        """Yield text pieces of the answer as they are decoded (stop strings honoured)."""
        for _tok, piece in self.stream(messages, params, stats, raw):
            if piece:
                yield piece

    # ------------------------------------------------------------ ChatBackend

    def stream_chat(self, messages: list[dict], params: GenerationParams) -> ChatStream:
        """The answer as :class:`~misuan.inference.backend.ChatEvent` s; ``cancel()`` frees
        the request on every node."""
        params.check(secure=True)
        stats = GenerationStats()
        return ChatStream(self.stream(messages, params, stats), stats, mpc=True)

    def model_info(self) -> ModelInfo:
        return ModelInfo(name=self.name, max_context=self.config.max_seq_len, mode="mpc")


def prompt_ids(tokenizer: Tokenizer, messages: list[dict], raw: bool = False) -> list[int]:
    """Token ids of the prompt: the chat template, or ``raw`` text of the last message."""
    if raw:
        text = messages[-1].get("content", "") if isinstance(messages, list) and messages else ""
        if not isinstance(text, str) or not text:
            raise E.InvalidInput("empty prompt")
        return tokenizer.encode(text)
    _check_messages(messages)
    return tokenizer.encode_chat(messages, add_generation_prompt=True)


def stream_text(model, ids: list[int], params: GenerationParams, stats: GenerationStats | None) -> Iterator[tuple[int, str]]:
    """Token ids -> (id, text piece) with incremental UTF-8-safe decoding and stop strings."""
    return stream_tokens(model.tokenizer, model.generate_ids(ids, params, stats), params, stats)


def stream_tokens(
    tokenizer: Tokenizer, gen: Iterator[int], params: GenerationParams, stats: GenerationStats | None
) -> Iterator[tuple[int, str]]:
    """Generated ids -> (id, text piece): incremental UTF-8-safe decoding, stop strings,
    and (fixed length) the rest of the run consumed so the answer length stays hidden."""
    dec = StreamDecoder(tokenizer, stop_strings=tuple(params.stop) + tuple(tokenizer.stop_strings))
    eos = set(tokenizer.eos_ids)
    try:
        for tok in gen:
            if tok in eos:
                break
            piece = dec.push(tok)
            yield tok, piece
            if dec.stopped:
                if stats is not None:
                    stats.finish_reason = "stop"
                break
        tail = dec.finish()
        if tail:
            yield -1, tail
        if params.fixed_length:
            for _ in gen:  # keep the nodes busy to max_tokens: the answer length stays hidden
                pass
    finally:
        gen.close()


def _check_messages(messages) -> None:
    if not isinstance(messages, list) or not messages:
        raise E.InvalidInput("messages must be a non-empty list of {role, content}")
    for m in messages:
        if not isinstance(m, dict) or m.get("role") not in ("system", "user", "assistant") or not isinstance(m.get("content"), str):
            raise E.InvalidInput("each message needs a role (system/user/assistant) and a string content")
    if not any(m["content"].strip() for m in messages if m["role"] == "user"):
        raise E.InvalidInput("empty prompt")
