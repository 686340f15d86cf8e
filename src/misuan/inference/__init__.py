"""Encrypted inference (密态推理): secure chat and generation with a secret-shared KV cache."""

from .engine import GenerationParams, GenerationStats, SecureModel

__all__ = ["GenerationParams", "GenerationStats", "SecureModel"]
