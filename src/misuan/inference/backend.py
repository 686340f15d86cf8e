"""The chat interface every text-generation engine offers: :class:`ChatBackend`.

The OpenAI-compatible proxy, retrieval (RAG) and pipelines depend on this module
only, never on an engine: the secure engine (:class:`misuan.inference.secure.SecureModel`,
prompt and answer secret-shared on the nodes) and the plaintext reference engine
(:class:`misuan.inference.plain.PlainModel`) both implement it.

A stream yields one :class:`ChatEvent` per generated token (its text delta, which
may be empty while a multi-byte character is incomplete), possibly a last text
piece, then one final event with ``finish_reason`` (``"stop"``, ``"length"`` or
``"cancelled"``) and :class:`Usage`. :meth:`ChatStream.cancel` ends a stream and
frees what the engine holds for it (the secure engine: the request's KV cache on
every node). Invalid input raises :class:`misuan.InvalidInput` when the stream is
made or at its first event.
"""

from __future__ import annotations

import math
import secrets
import statistics
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from .. import errors as E
from ..models.sampling import MAX_TEMPERATURE, MIN_TEMPERATURE, check_seed


@dataclass(frozen=True)
class GenerationParams:
    max_tokens: int = 128
    temperature: float = 0.0
    top_p: float = 1.0
    seed: int | None = None
    fixed_length: bool = False
    stop: tuple[str, ...] = ()

    def check(self, secure: bool = True) -> None:
        if not isinstance(self.max_tokens, int) or self.max_tokens <= 0:
            raise E.InvalidInput("max_tokens must be a positive integer")
        t = self.temperature
        if (
            isinstance(t, bool)
            or not (isinstance(t, (int, float)) and math.isfinite(t))
            or not (t == 0 or MIN_TEMPERATURE <= t <= MAX_TEMPERATURE)
        ):
            raise E.InvalidInput(f"temperature must be 0 (greedy) or in [{MIN_TEMPERATURE}, {MAX_TEMPERATURE}]")
        if self.seed is not None:
            check_seed(self.seed)
        if not 0 < self.top_p <= 1:
            raise E.InvalidInput("top_p must be in (0, 1]")
        if secure and self.top_p < 1:
            raise E.InvalidInput("top-p sampling runs only with --plaintext; under MPC use greedy or --temperature")

    def resolved_seed(self) -> int:
        """The seed of the sampling noise: the given one, or a fresh random one."""
        return self.seed if self.seed is not None else secrets.randbits(63)


@dataclass
class GenerationStats:
    prompt_tokens: int = 0
    prompt_bucket: int = 0
    cache_bucket: int = 0
    prefill_s: float = 0.0
    decode_s: list[float] = field(default_factory=list)
    decode_bytes: list[int] = field(default_factory=list)
    prefill_bytes: int = 0
    runtime_ready_s: float = 0.0
    steps: int = 0
    finish_reason: str = ""

    @property
    def decode_s_per_token(self) -> float:
        return statistics.median(self.decode_s) if self.decode_s else 0.0

    @property
    def bytes_per_token(self) -> float:
        return statistics.median(self.decode_bytes) if self.decode_bytes else 0.0

    def to_dict(self) -> dict:
        return {
            "prompt_tokens": self.prompt_tokens,
            "prompt_bucket": self.prompt_bucket,
            "cache_bucket": self.cache_bucket,
            "prefill_s": round(self.prefill_s, 3),
            "decode_s_per_token": round(self.decode_s_per_token, 3),
            "decode_steps": self.steps,
            "bytes_per_token": int(self.bytes_per_token),
            "prefill_bytes": self.prefill_bytes,
            "runtime_ready_s": round(self.runtime_ready_s, 2),
            "finish_reason": self.finish_reason,
        }


@dataclass(frozen=True)
class Usage:
    """What one answer cost."""

    prompt_tokens: int
    completion_tokens: int
    #: bytes the nodes sent each other for it (0 for the plaintext engine)
    bytes_sent: int = 0
    #: wall seconds of the MPC steps, as the client saw them (None for the plaintext engine)
    mpc_seconds: float | None = None


@dataclass(frozen=True)
class ChatEvent:
    """A text delta (``finish_reason`` None) or the final event (``finish_reason`` and ``usage`` set).
    A consumer may attach the running cost to a delta (``usage`` of :meth:`ChatStream.usage`)."""

    text: str = ""
    #: the generated token this delta decodes (None for a last text piece and the final event)
    token_id: int | None = None
    finish_reason: str | None = None
    usage: Usage | None = None

    @property
    def final(self) -> bool:
        return self.finish_reason is not None


@dataclass(frozen=True)
class ModelInfo:
    name: str
    #: the model's context in tokens (prompt + answer)
    max_context: int
    #: "mpc" or "plaintext"
    mode: str


class ChatStream(Iterator[ChatEvent]):
    """One answer as events, with :meth:`cancel`.

    Built by an engine from its ``(token_id, text_piece)`` stream (token id -1 for a
    last text piece) and the :class:`GenerationStats` that stream fills in."""

    def __init__(self, pieces: Iterator[tuple[int, str]], stats: GenerationStats, *, mpc: bool):
        self._pieces = pieces
        self.stats = stats
        self._mpc = mpc
        self._cancelled = threading.Event()
        self._busy = threading.Lock()  # held while the engine computes the next piece
        self._done = False
        self._completion = 0

    def __iter__(self) -> ChatStream:
        return self

    def __next__(self) -> ChatEvent:
        with self._busy:
            if self._done:
                raise StopIteration
            if self._cancelled.is_set():
                return self._finish("cancelled")
            try:
                tok, piece = next(self._pieces)
            except StopIteration:
                return self._finish(self.stats.finish_reason or "length")
            except BaseException:
                self._done = True
                self._pieces.close()
                raise
        if tok < 0:
            return ChatEvent(text=piece)
        self._completion += 1
        return ChatEvent(text=piece, token_id=tok)

    def cancel(self) -> None:
        """End the stream: its next event is the final one (``"cancelled"``). From the
        thread that iterates, or whenever no event is being computed, the engine's state
        is freed at once; otherwise as soon as the token being computed arrives."""
        self._cancelled.set()
        if self._busy.acquire(blocking=False):
            try:
                self._pieces.close()
            finally:
                self._busy.release()

    def close(self) -> None:
        """Stop without a final event and free the engine's state."""
        with self._busy:
            self._done = True
            self._pieces.close()

    def usage(self) -> Usage:
        """What the answer cost so far (the final event carries the total)."""
        s = self.stats
        return Usage(
            prompt_tokens=s.prompt_tokens,
            completion_tokens=self._completion,
            bytes_sent=s.prefill_bytes + sum(s.decode_bytes) if self._mpc else 0,
            mpc_seconds=s.prefill_s + sum(s.decode_s) if self._mpc else None,
        )

    def _finish(self, reason: str) -> ChatEvent:
        self._done = True
        self._pieces.close()
        return ChatEvent(finish_reason=reason, usage=self.usage())


@runtime_checkable
class ChatBackend(Protocol):
    """A chat model: stream an answer to ``messages`` (``[{role, content}]``)."""

    def stream_chat(self, messages: list[dict], params: GenerationParams) -> ChatStream:
        """The answer as events; cancel it with the stream's :meth:`ChatStream.cancel`."""
        ...

    def model_info(self) -> ModelInfo: ...
