"""Encrypted inference (密态推理): secure chat and generation with a secret-shared KV cache.

:mod:`.backend` is the interface (:class:`ChatBackend`); :mod:`.secure` the MPC engine
(client side), :mod:`.plain` the plaintext reference engine."""

from .backend import ChatBackend, ChatEvent, ChatStream, GenerationParams, GenerationStats, ModelInfo, Usage
from .secure import SecureModel

__all__ = ["ChatBackend", "ChatEvent", "ChatStream", "GenerationParams", "GenerationStats", "ModelInfo", "SecureModel", "Usage"]
