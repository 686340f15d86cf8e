"""The public architecture config of a LLaMA-family model.

:class:`LlamaConfig` is everything about a model that is *not* secret: shapes,
norm epsilon, RoPE base. Nodes compile their programs from it, so it must be
JSON-serialisable (:meth:`LlamaConfig.to_dict` / :meth:`LlamaConfig.from_dict`)
and validated strictly when it comes from outside.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from misuan.errors import InvalidInput

#: Families whose blocks this package implements (all share one block layout).
SUPPORTED_FAMILIES = ("llama", "qwen2")

_INT_FIELDS = ("vocab_size", "dim", "n_layers", "n_heads", "n_kv_heads", "head_dim", "hidden_dim", "max_seq_len")
_FLOAT_FIELDS = ("norm_eps", "rope_theta")
_BOOL_FIELDS = ("tie_embeddings", "qkv_bias", "o_bias")


#: keys hosting adds to a published model's public config (not part of the architecture)
N_PARAMS = "n_params"
PUBLISHED_EXTRA_KEYS: tuple[str, ...] = (N_PARAMS,)


@dataclass(frozen=True)
class LlamaConfig:
    """Shapes and constants of a LLaMA-family decoder.

    Attributes:
        vocab_size: number of token ids ``V``.
        dim: model width ``D``.
        n_layers: number of transformer blocks ``L``.
        n_heads: query heads ``H``.
        n_kv_heads: key/value heads ``KV`` (``H % KV == 0``; ``KV < H`` is GQA).
        head_dim: per-head width ``hd`` (usually ``D // H``).
        hidden_dim: SwiGLU inner width ``F``.
        norm_eps: RMSNorm epsilon.
        rope_theta: RoPE frequency base.
        max_seq_len: context length the model was trained for.
        tie_embeddings: the source checkpoint tied the LM head to the embedding
            (informational: ``lm_head`` is always materialised in the params).
        qkv_bias: q/k/v projections have biases (Qwen2).
        o_bias: the output projection has a bias.
        family: ``"llama"`` or ``"qwen2"`` (informational; same block layout).
    """

    vocab_size: int
    dim: int
    n_layers: int
    n_heads: int
    n_kv_heads: int
    head_dim: int
    hidden_dim: int
    norm_eps: float = 1e-5
    rope_theta: float = 10000.0
    max_seq_len: int = 2048
    tie_embeddings: bool = False
    qkv_bias: bool = False
    o_bias: bool = False
    family: str = "llama"

    def __post_init__(self) -> None:
        for name in _INT_FIELDS:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise InvalidInput(f"model config: {name} must be a positive integer, got {value!r}")
        for name in _FLOAT_FIELDS:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value <= 0:
                raise InvalidInput(f"model config: {name} must be a positive number, got {value!r}")
            object.__setattr__(self, name, float(value))  # JSON may carry 10000 for 10000.0
        for name in _BOOL_FIELDS:
            if not isinstance(getattr(self, name), bool):
                raise InvalidInput(f"model config: {name} must be true or false")
        if self.n_heads % self.n_kv_heads:
            raise InvalidInput(f"model config: n_heads ({self.n_heads}) must be a multiple of n_kv_heads ({self.n_kv_heads})")
        if self.head_dim % 2:
            raise InvalidInput(f"model config: head_dim must be even for RoPE, got {self.head_dim}")
        if self.family not in SUPPORTED_FAMILIES:
            raise InvalidInput(f"model config: unsupported family {self.family!r}")

    @property
    def n_groups(self) -> int:
        """Query heads per key/value head (``G = H // KV``)."""
        return self.n_heads // self.n_kv_heads

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable dict (plain ints, floats, bools, str)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> LlamaConfig:
        """Rebuild a config from :meth:`to_dict` output, rejecting unknown keys."""
        if not isinstance(data, Mapping):
            raise InvalidInput("model config must be a JSON object")
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise InvalidInput(f"model config: unknown keys {unknown}")
        required = {f.name for f in dataclasses.fields(cls) if f.default is dataclasses.MISSING}
        missing = sorted(required - set(data))
        if missing:
            raise InvalidInput(f"model config: missing keys {missing}")
        return cls(**dict(data))

    @classmethod
    def from_public(cls, data: Mapping[str, Any]) -> LlamaConfig:
        """A published model's public config: :meth:`to_dict` plus what hosting adds
        (``PUBLISHED_EXTRA_KEYS``: the parameter count)."""
        if not isinstance(data, Mapping):
            raise InvalidInput("model config must be a JSON object")
        return cls.from_dict({k: v for k, v in data.items() if k not in PUBLISHED_EXTRA_KEYS})
