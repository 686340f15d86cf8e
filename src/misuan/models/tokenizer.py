"""Tokenizer wrapper: encode/decode, chat template, streaming text, JSON form.

:class:`Tokenizer` wraps a ``tokenizers.Tokenizer`` (built from GGUF metadata or
loaded from ``tokenizer.json``) together with the public chat metadata a client
needs: chat template, BOS/EOS strings, end-of-generation ids, stop strings. It
round-trips through one JSON string (:meth:`Tokenizer.to_json`) so nodes can
store it in their registry and clients can fetch it.

:class:`StreamDecoder` turns a growing list of ids into text deltas that never
split a UTF-8 character and never show (a prefix of) a stop string.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import jinja2
import tokenizers

from misuan.errors import InvalidInput
from misuan.models import chat_template as _ct

JSON_FORMAT = "misuan.tokenizer/1"

#: Token texts that end a turn in common chat formats (ChatML, Llama 3, Gemma, Phi, SentencePiece).
END_OF_TURN_TOKENS = (
    "<|im_end|>",
    "<|eot_id|>",
    "<|end_of_text|>",
    "<|endoftext|>",
    "<end_of_turn>",
    "<|end|>",
    "</s>",
)


class Tokenizer:
    """A model's tokenizer and chat format.

    Args:
        backend: the ``tokenizers.Tokenizer`` (its post-processor decides whether
            ``encode(..., add_special_tokens=True)`` prepends BOS).
        chat_template: Jinja source, or None when the model has none.
        bos_token / eos_token: token strings passed to the template.
        eos_ids: ids that end generation (default: EOS plus known end-of-turn tokens).
        stop_strings: texts that end generation when they appear in the output.
    """

    def __init__(
        self,
        backend: tokenizers.Tokenizer,
        *,
        chat_template: str | None = None,
        bos_token: str | None = None,
        eos_token: str | None = None,
        eos_ids: Iterable[int] | None = None,
        stop_strings: Sequence[str] | None = None,
    ):
        self.backend = backend
        self.chat_template = chat_template
        self.bos_token = bos_token
        self.eos_token = eos_token
        if eos_ids is None:
            eos_ids = default_eos_ids(backend, eos_token)
        self.eos_ids: tuple[int, ...] = tuple(sorted({int(i) for i in eos_ids}))
        if stop_strings is None:
            stop_strings = [t for t in (backend.id_to_token(i) for i in self.eos_ids) if t]
        self.stop_strings: tuple[str, ...] = tuple(s for s in stop_strings if s)
        self._compiled: jinja2.Template | None = None

    # --- basic ---------------------------------------------------------------------------

    @property
    def vocab_size(self) -> int:
        """Number of ids including added tokens."""
        return self.backend.get_vocab_size(with_added_tokens=True)

    @property
    def bos_id(self) -> int | None:
        """Id of the BOS token, if any."""
        return self.backend.token_to_id(self.bos_token) if self.bos_token else None

    def encode(self, text: str, *, add_special_tokens: bool = True) -> list[int]:
        """Token ids of ``text``; special-token texts (``<|im_start|>``) map to their ids."""
        if not isinstance(text, str):
            raise InvalidInput("text to encode must be a string")
        return list(self.backend.encode(text, add_special_tokens=add_special_tokens).ids)

    def decode(self, ids: Sequence[int], *, skip_special_tokens: bool = True) -> str:
        """Text of ``ids`` (invalid UTF-8 becomes U+FFFD)."""
        return self.backend.decode([int(i) for i in ids], skip_special_tokens=skip_special_tokens)

    def token_to_id(self, token: str) -> int | None:
        """Id of a token string, or None."""
        return self.backend.token_to_id(token)

    # --- chat ----------------------------------------------------------------------------

    def apply_chat_template(self, messages: Sequence[Mapping[str, Any]], add_generation_prompt: bool = True, **extra: Any) -> str:
        """Render the model's chat template (HF semantics) to a prompt string.

        Raises:
            InvalidInput: the model has no chat template, or rendering failed.
        """
        if not self.chat_template:
            raise InvalidInput("this model has no chat template")
        if self._compiled is None:
            self._compiled = _ct.compile_template(self.chat_template)
        return _ct.render(
            self._compiled,
            messages,
            add_generation_prompt=add_generation_prompt,
            bos_token=self.bos_token,
            eos_token=self.eos_token,
            **extra,
        )

    def encode_chat(self, messages: Sequence[Mapping[str, Any]], add_generation_prompt: bool = True) -> list[int]:
        """Ids of the rendered chat prompt (the template supplies any BOS itself)."""
        prompt = self.apply_chat_template(messages, add_generation_prompt=add_generation_prompt)
        return self.encode(prompt, add_special_tokens=False)

    def stream_decoder(self, stop_strings: Sequence[str] | None = None) -> StreamDecoder:
        """A :class:`StreamDecoder` (default stop strings: this tokenizer's)."""
        return StreamDecoder(self, self.stop_strings if stop_strings is None else stop_strings)

    # --- JSON ----------------------------------------------------------------------------

    def to_json(self) -> str:
        """One JSON string with everything public about the tokenizer."""
        return json.dumps(
            {
                "format": JSON_FORMAT,
                "tokenizer": json.loads(self.backend.to_str()),
                "chat_template": self.chat_template,
                "bos_token": self.bos_token,
                "eos_token": self.eos_token,
                "eos_ids": list(self.eos_ids),
                "stop_strings": list(self.stop_strings),
            },
            ensure_ascii=False,
        )

    @classmethod
    def from_json(cls, text: str | bytes) -> Tokenizer:
        """Inverse of :meth:`to_json`; rejects anything malformed with :class:`InvalidInput`."""
        try:
            data = json.loads(text)
        except (ValueError, TypeError) as exc:
            raise InvalidInput(f"tokenizer JSON does not parse: {exc}") from None
        if not isinstance(data, dict) or data.get("format") != JSON_FORMAT:
            raise InvalidInput(f"tokenizer JSON is not in format {JSON_FORMAT}")
        try:
            backend = tokenizers.Tokenizer.from_str(json.dumps(data["tokenizer"]))
        except Exception as exc:  # KeyError, or the plain Exception tokenizers raises
            raise InvalidInput(f"tokenizer JSON has a bad tokenizer: {str(exc).splitlines()[0][:200]}") from None
        template = data.get("chat_template")
        eos_ids = data.get("eos_ids", [])
        stops = data.get("stop_strings", [])
        if template is not None and not isinstance(template, str):
            raise InvalidInput("tokenizer JSON: chat_template must be a string")
        if not isinstance(eos_ids, list) or not all(isinstance(i, int) and not isinstance(i, bool) for i in eos_ids):
            raise InvalidInput("tokenizer JSON: eos_ids must be a list of integers")
        if not isinstance(stops, list) or not all(isinstance(s, str) for s in stops):
            raise InvalidInput("tokenizer JSON: stop_strings must be a list of strings")
        for key in ("bos_token", "eos_token"):
            if data.get(key) is not None and not isinstance(data[key], str):
                raise InvalidInput(f"tokenizer JSON: {key} must be a string")
        return cls(
            backend,
            chat_template=template,
            bos_token=data.get("bos_token"),
            eos_token=data.get("eos_token"),
            eos_ids=eos_ids,
            stop_strings=stops,
        )


def default_eos_ids(backend: tokenizers.Tokenizer, eos_token: str | None) -> list[int]:
    """EOS id plus the ids of known end-of-turn tokens present in the vocabulary."""
    ids = []
    for token in ([eos_token] if eos_token else []) + list(END_OF_TURN_TOKENS):
        i = backend.token_to_id(token)
        if i is not None:
            ids.append(i)
    return ids


class StreamDecoder:
    """Incremental detokeniser for streaming.

    ``push(id)`` returns the text that became final with that token: complete
    UTF-8 only, and with any suffix that could start a stop string held back.
    When a stop string appears, the text before it is returned and ``stopped``
    becomes True (further pushes return ""). ``finish()`` returns what is held.
    """

    def __init__(self, tokenizer: Tokenizer, stop_strings: Sequence[str] = ()):
        self._tok = tokenizer
        self._stops = tuple(s for s in stop_strings if s)
        self._ids: list[int] = []
        self._prefix = 0  # ids[_prefix:_read] were decoded already (context for the next delta)
        self._read = 0
        self._pending = ""  # decoded but held back (possible stop-string start)
        self.text = ""  # everything returned so far
        self.stopped = False
        self.finished = False

    def push(self, token_id: int) -> str:
        """Feed one id; return the newly final text (possibly ""; always "" after stop/finish)."""
        if self.stopped or self.finished:
            return ""
        self._ids.append(int(token_id))
        self._pending += self._raw_delta()
        return self._emit(final=False)

    def finish(self) -> str:
        """End of stream: return everything still held (incomplete UTF-8 as U+FFFD)."""
        if self.stopped or self.finished:
            return ""
        self.finished = True
        before = self._tok.decode(self._ids[self._prefix : self._read])
        tail = self._tok.decode(self._ids[self._prefix :])[len(before) :]
        self._read = len(self._ids)
        self._pending += tail
        return self._emit(final=True)

    def _raw_delta(self) -> str:
        before = self._tok.decode(self._ids[self._prefix : self._read])
        after = self._tok.decode(self._ids[self._prefix :])
        if len(after) > len(before) and not after.endswith("\ufffd"):
            self._prefix, self._read = self._read, len(self._ids)
            return after[len(before) :]
        return ""

    def _emit(self, final: bool) -> str:
        pending = self._pending
        hits = [i for i in (pending.find(s) for s in self._stops) if i >= 0]
        if hits:
            out, self._pending, self.stopped = pending[: min(hits)], "", True
        elif final:
            out, self._pending = pending, ""
        else:
            hold = _held_suffix(pending, self._stops)
            out, self._pending = pending[: len(pending) - hold], pending[len(pending) - hold :]
        self.text += out
        return out


def _held_suffix(text: str, stops: Sequence[str]) -> int:
    """Length of the longest suffix of ``text`` that is a proper prefix of a stop string."""
    best = 0
    for stop in stops:
        for n in range(min(len(stop) - 1, len(text)), best, -1):
            if text.endswith(stop[:n]):
                best = n
                break
    return best
