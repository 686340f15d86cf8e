"""Encrypted inference at the edge: functions over a :class:`~misuan.client.Client`."""

from __future__ import annotations

from typing import Iterator

from ..client.client import Client


def model(client: Client, name: str, version: int | None = None, cache: dict | None = None):
    """A hosted model ready for secure generation (its runtime is loaded on first use)."""
    from .secure import SecureModel

    if cache is None:
        return SecureModel(client, name, version)
    key = (name, version)
    if key not in cache:
        cache[key] = SecureModel(client, name, version)
    return cache[key]


def chat(
    secure_model,
    messages: list[dict],
    *,
    max_tokens: int = 128,
    temperature: float = 0.0,
    top_p: float = 1.0,
    seed: int | None = None,
    fixed_length: bool = False,
    stop: tuple[str, ...] = (),
    stats=None,
) -> Iterator[str]:
    """Yield the answer's text pieces as the nodes produce them (prompt and answer stay secret)."""
    from .backend import GenerationParams

    params = GenerationParams(max_tokens, temperature, top_p, seed, fixed_length, tuple(stop))
    params.check(secure=True)
    yield from secure_model.chat(messages, params, stats)
