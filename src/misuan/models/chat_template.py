"""Render Hugging Face-style Jinja chat templates, sandboxed.

Templates come from model files, so they are untrusted code: they run in
Jinja's ``ImmutableSandboxedEnvironment`` with the same globals and options
``transformers`` provides (``raise_exception``, ``strftime_now``, ``tojson``
without ASCII escaping, ``trim_blocks``/``lstrip_blocks``, loop controls).
"""

from __future__ import annotations

import datetime
import json
from collections.abc import Mapping, Sequence
from typing import Any

import jinja2
from jinja2.sandbox import ImmutableSandboxedEnvironment

from misuan.errors import InvalidInput

Message = Mapping[str, Any]


class _TemplateRaised(Exception):
    """Raised by a template's ``raise_exception``."""


def _raise_exception(message: str) -> None:
    raise _TemplateRaised(message)


def _tojson(value: Any, ensure_ascii: bool = False, indent: int | None = None, separators: Any = None, sort_keys: bool = False) -> str:
    return json.dumps(value, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)


def _strftime_now(fmt: str) -> str:
    return datetime.datetime.now().strftime(fmt)


def compile_template(source: str) -> jinja2.Template:
    """Compile a chat template in a fresh sandboxed environment.

    Raises:
        InvalidInput: the template has a syntax error.
    """
    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=["jinja2.ext.loopcontrols"])
    env.filters["tojson"] = _tojson
    env.globals["raise_exception"] = _raise_exception
    env.globals["strftime_now"] = _strftime_now
    try:
        return env.from_string(source)
    except jinja2.TemplateError as exc:
        raise InvalidInput(f"chat template does not compile: {type(exc).__name__}: {exc}") from None


def check_messages(messages: Sequence[Message]) -> list[dict[str, Any]]:
    """Validate ``[{"role": str, "content": str}, ...]`` and copy it to plain dicts."""
    if isinstance(messages, str | bytes) or not isinstance(messages, Sequence):
        raise InvalidInput("messages must be a list of {role, content} objects")
    out = []
    for i, message in enumerate(messages):
        if not isinstance(message, Mapping):
            raise InvalidInput(f"message {i} is not an object")
        role, content = message.get("role"), message.get("content")
        if not isinstance(role, str) or not role:
            raise InvalidInput(f"message {i} has no role")
        if not isinstance(content, str):
            raise InvalidInput(f"message {i} content must be a string")
        out.append(dict(message))
    return out


def render(
    template: jinja2.Template,
    messages: Sequence[Message],
    *,
    add_generation_prompt: bool = True,
    bos_token: str | None = None,
    eos_token: str | None = None,
    **extra: Any,
) -> str:
    """Render with HF's variables: ``messages``, ``add_generation_prompt``, ``bos_token``, ``eos_token``.

    Raises:
        InvalidInput: bad messages, or the template raised / failed.
    """
    checked = check_messages(messages)
    try:
        return template.render(
            messages=checked,
            add_generation_prompt=add_generation_prompt,
            bos_token=bos_token or "",
            eos_token=eos_token or "",
            **extra,
        )
    except _TemplateRaised as exc:
        raise InvalidInput(f"chat template refused the messages: {exc}") from None
    except (jinja2.TemplateError, TypeError, ValueError, KeyError, IndexError, AttributeError) as exc:
        raise InvalidInput(f"chat template failed: {type(exc).__name__}: {exc}") from None
