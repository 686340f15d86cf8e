"""Encrypted inference (密态推理): secure chat and generation with a secret-shared KV cache.

The engine (jax, the client) is imported on first use, so the CLI can import
:mod:`misuan.inference.cli` without it.
"""

from importlib import import_module

_EXPORTS = {
    "GenerationParams": ".engine",
    "GenerationStats": ".engine",
    "SecureModel": ".engine",
}

__all__ = list(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(import_module(_EXPORTS[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
