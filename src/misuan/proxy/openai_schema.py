"""Request bodies of the OpenAI API as far as misuan honours them.

Unknown fields are ignored (clients send many); fields misuan knows but cannot honour
are refused by :func:`refuse_unsupported` with a 400 naming the ``param``.
"""

from __future__ import annotations

import json
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError

from .errors import bad_request, unsupported

MAX_STOP = 4
#: roles a chat template knows; ``developer`` (OpenAI's newer name for system) is read as system
ROLES = ("system", "user", "assistant")


class _Body(BaseModel):
    model_config = ConfigDict(extra="ignore")


class ContentPart(_Body):
    type: str
    text: str | None = None


class Message(_Body):
    role: str
    content: str | list[ContentPart] | None = None


class StreamOptions(_Body):
    include_usage: bool = False


class _Generation(_Body):
    model: str
    max_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    stop: str | list[str] | None = None
    seed: int | None = None
    stream: bool | None = False
    stream_options: StreamOptions | None = None
    n: int | None = None
    logprobs: Any = None
    presence_penalty: float | None = None
    frequency_penalty: float | None = None
    logit_bias: dict | None = None
    #: misuan's own: chunks a RAG model (``M+kb:KB``) retrieves per answer (ignored by other models)
    x_misuan_k: int | None = None


class ChatRequest(_Generation):
    messages: list[Message]
    max_completion_tokens: int | None = None
    top_logprobs: int | None = None
    tools: list | None = None
    tool_choice: Any = None
    functions: list | None = None
    function_call: Any = None
    response_format: dict | None = None


class CompletionRequest(_Generation):
    prompt: str | list[str]
    echo: bool | None = None
    best_of: int | None = None
    suffix: str | None = None


class EmbeddingRequest(_Body):
    model: str
    input: str | list[str]
    encoding_format: str = "float"
    dimensions: int | None = None


def parse_body(raw: bytes, cls: type[_Body]):
    """The request body as ``cls``: malformed JSON and wrong types are 400s naming the field."""
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise bad_request("We could not parse the JSON body of your request (it is not valid JSON).") from None
    if not isinstance(data, dict):
        raise bad_request("The request body must be a JSON object.")
    try:
        return cls.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        loc = [str(x) for x in first["loc"] if not str(x).startswith(("str", "list", "function-"))]
        param = ".".join(loc) or None
        what = "missing required parameter" if first["type"] == "missing" else first["msg"]
        raise bad_request(f"{param}: {what}", param=(loc[0] if loc else None)) from None


def refuse_unsupported(req: _Generation) -> None:
    """400 for every parameter misuan cannot honour (one answer per request, no log
    probabilities, tools, schemas or penalties)."""
    checks: list[tuple[str, bool, str]] = [
        ("n", req.n not in (None, 1), "more than one choice per request"),
        ("logprobs", bool(req.logprobs), "log probabilities (the logits never leave the nodes)"),
        ("presence_penalty", bool(req.presence_penalty), "a presence penalty"),
        ("frequency_penalty", bool(req.frequency_penalty), "a frequency penalty"),
        ("logit_bias", bool(req.logit_bias), "a logit bias"),
        ("stream_options", bool(req.stream_options and not req.stream), "stream_options without stream"),
    ]
    if isinstance(req, ChatRequest):
        fmt = (req.response_format or {}).get("type", "text")
        checks += [
            ("top_logprobs", bool(req.top_logprobs), "log probabilities"),
            ("tools", bool(req.tools), "tool calls"),
            ("tool_choice", req.tool_choice not in (None, "none", "auto"), "tool calls"),
            ("functions", bool(req.functions), "function calls"),
            ("function_call", req.function_call not in (None, "none", "auto"), "function calls"),
            ("response_format", fmt != "text", f"response_format {fmt!r}"),
        ]
    if isinstance(req, CompletionRequest):
        checks += [
            ("echo", bool(req.echo), "echo"),
            ("best_of", req.best_of not in (None, 1), "best_of > 1"),
            ("suffix", bool(req.suffix), "a suffix"),
            ("prompt", isinstance(req.prompt, list) and len(req.prompt) != 1, "more than one prompt per request"),
        ]
    for param, refused, what in checks:
        if refused:
            raise unsupported(param, what)
    if req.x_misuan_k is not None and req.x_misuan_k < 1:
        raise bad_request(f"x_misuan_k: must be at least 1 (got {req.x_misuan_k})", param="x_misuan_k")
    stop = stop_strings(req.stop)
    if len(stop) > MAX_STOP:
        raise bad_request(f"stop: at most {MAX_STOP} stop strings", param="stop")


def stop_strings(stop: str | list[str] | None) -> tuple[str, ...]:
    if stop is None:
        return ()
    return tuple(s for s in ([stop] if isinstance(stop, str) else stop) if s)


def chat_messages(messages: list[Message]) -> list[dict]:
    """``[{role, content: str}]`` for the chat template: text parts are joined, any other
    part (images, audio) or role is refused."""
    if not messages:
        raise bad_request("messages: must be a non-empty list", param="messages")
    out = []
    for i, m in enumerate(messages):
        role = "system" if m.role == "developer" else m.role
        if role not in ROLES:
            raise bad_request(f"messages[{i}].role: {m.role!r} is not one of {', '.join(ROLES)}", param=f"messages[{i}].role")
        out.append({"role": role, "content": _text(m.content, i)})
    return out


def _text(content: str | list[ContentPart] | None, i: int) -> str:
    if isinstance(content, str):
        return content
    if content is None:
        raise bad_request(f"messages[{i}].content: required", param=f"messages[{i}].content")
    parts = []
    for p in content:
        if p.type != "text" or p.text is None:
            raise bad_request(f"messages[{i}].content: only text parts are supported (got {p.type!r})", param=f"messages[{i}].content")
        parts.append(p.text)
    return "\n".join(parts)
