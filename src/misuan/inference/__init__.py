"""Encrypted inference (密态推理): secure chat and generation with a secret-shared KV cache.

:mod:`.backend` is the interface (:class:`ChatBackend`); :mod:`.secure` the MPC engine
(client side), :mod:`.plain` the plaintext reference engine. Imported on first use, so
the CLI can import :mod:`misuan.inference.cli` without jax or the client.
"""

from importlib import import_module

_EXPORTS = {
    "ChatBackend": ".backend",
    "ChatEvent": ".backend",
    "ChatStream": ".backend",
    "GenerationParams": ".backend",
    "GenerationStats": ".backend",
    "ModelInfo": ".backend",
    "Usage": ".backend",
    "SecureModel": ".secure",
    "Prefill": ".secure",
    "stream_tokens": ".secure",
    "ProgramTwin": ".twin",
    # the resident layout of a model, for other capabilities' programs over it
    "is_stacked": ".layout",
    "llama_config": ".layout",
    "resident_weights": ".layout",
    "weight_shapes": ".specs",
}

__all__ = list(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(import_module(_EXPORTS[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
