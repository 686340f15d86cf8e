"""MPC-friendly ops for SPU fixed point, each with a plaintext twin (in ``misuan.models.plain_ops``) and a
stated, tested error bound. See ``ops`` (LLaMA primitives), ``sampling`` (token
selection) and ``approx`` (polynomial building blocks)."""

from misuan.secure.ops import (
    embed_onehot,
    matmul,
    rms_norm,
    rope,
    secure_llama_ops,
    silu,
    softmax,
)
from misuan.secure.sampling import argmax_onehot, gumbel_max_onehot, gumbel_noise

__all__ = [
    "argmax_onehot",
    "embed_onehot",
    "gumbel_max_onehot",
    "gumbel_noise",
    "matmul",
    "rms_norm",
    "rope",
    "secure_llama_ops",
    "silu",
    "softmax",
]
