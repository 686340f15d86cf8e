"""Response objects of the chat and completions endpoints (one choice, index 0)."""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass, field

from ..inference import Usage


@dataclass(frozen=True)
class Shape:
    """What every object of one answer shares: its id, creation time, model and kind."""

    model: str
    chat: bool
    protocol: str
    id: str = field(default_factory=lambda: "chatcmpl-" + secrets.token_hex(12))
    created: int = field(default_factory=lambda: int(time.time()))

    def __post_init__(self):
        if not self.chat and self.id.startswith("chatcmpl-"):
            object.__setattr__(self, "id", "cmpl-" + self.id.removeprefix("chatcmpl-"))

    def _head(self, obj: str) -> dict:
        return {"id": self.id, "object": obj, "created": self.created, "model": self.model, "system_fingerprint": None}

    # ------------------------------------------------------------ whole answers

    def response(self, text: str, finish_reason: str, usage: Usage | None) -> dict:
        if self.chat:
            choice = {"index": 0, "message": {"role": "assistant", "content": text}, "logprobs": None, "finish_reason": finish_reason}
            out = self._head("chat.completion")
        else:
            choice = {"index": 0, "text": text, "logprobs": None, "finish_reason": finish_reason}
            out = self._head("text_completion")
        return {**out, "choices": [choice], "usage": self.usage(usage)}

    def usage(self, usage: Usage | None) -> dict | None:
        if usage is None:
            return None
        return {
            "prompt_tokens": usage.prompt_tokens,
            "completion_tokens": usage.completion_tokens,
            "total_tokens": usage.prompt_tokens + usage.completion_tokens,
            "x_misuan": self.cost(usage),
        }

    def cost(self, usage: Usage) -> dict:
        return {"bytes_sent": usage.bytes_sent, "mpc_seconds": round(usage.mpc_seconds or 0.0, 3), "protocol": self.protocol}

    def headers(self, usage: Usage | None) -> dict[str, str]:
        h = {"x-misuan-protocol": self.protocol}
        if usage is not None:
            c = self.cost(usage)
            h |= {"x-misuan-bytes-sent": str(c["bytes_sent"]), "x-misuan-mpc-seconds": str(c["mpc_seconds"])}
        return h

    # ------------------------------------------------------------ stream chunks

    def chunk(self, text: str | None = None, *, role: bool = False, finish_reason: str | None = None, usage: Usage | None = None) -> dict:
        """A stream chunk; ``usage``: the cost so far, as ``x_misuan`` (an extra field the
        ``openai`` package keeps in ``model_extra``)."""
        if self.chat:
            delta = {"role": "assistant", "content": ""} if role else ({"content": text} if text else {})
            choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}
            out = {**self._head("chat.completion.chunk"), "choices": [choice]}
        else:
            choice = {"index": 0, "text": text or "", "logprobs": None, "finish_reason": finish_reason}
            out = {**self._head("text_completion"), "choices": [choice]}
        if usage is not None:
            out["x_misuan"] = self.running(usage)
        return out

    def running(self, usage: Usage) -> dict:
        return {**self.cost(usage), "completion_tokens": usage.completion_tokens}

    def usage_chunk(self, usage: Usage | None) -> dict:
        obj = "chat.completion.chunk" if self.chat else "text_completion"
        return {**self._head(obj), "choices": [], "usage": self.usage(usage)}
