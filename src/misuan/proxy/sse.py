"""Server-sent events: ``data:`` frames, ``: keepalive`` comments, the error frame."""

from __future__ import annotations

import json

KEEPALIVE = b": keepalive\n\n"
DONE = b"data: [DONE]\n\n"
HEADERS = {"cache-control": "no-cache", "x-accel-buffering": "no"}


def frame(obj: dict) -> bytes:
    return b"data: " + json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode() + b"\n\n"


def error_frame(body: dict) -> bytes:
    """A failure after the stream began: OpenAI's ``data: {"error": ...}``, then the stream ends."""
    return frame(body)
