"""The plaintext ops: the reference model's primitives and the one set of plaintext
twins of the MPC ops in :mod:`misuan.secure` (``ops`` and ``sampling``).

Ordinary JAX, same signatures and semantics as their MPC twins, with one stated
difference: weight layout. ``linear`` takes ``W (K, N)`` as the plaintext model
stores it; the secure engine keeps its resident matrices as ``W.T (N, K)``, so
``secure.ops.linear(x, wt, r)`` is the twin of ``linear(x, wt.T, r)``.
:class:`misuan.models.llama.LlamaOps` defaults to the six model primitives here.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

Array = Any  # jax.Array, numpy array, or an MPC placeholder with the same interface


# --- the six swappable model primitives (see ``LlamaOps``) -----------------------------


def softmax(scores: Array, mask: Array) -> Array:
    """Masked softmax over the last axis: ``scores (..., T, S)``, ``mask (T, S)`` 0/1.
    Masked entries are exactly 0; a fully masked row is all zeros."""
    allowed = mask > 0
    masked = jnp.where(allowed, scores, -jnp.inf)
    row_max = jnp.max(masked, axis=-1, keepdims=True)
    row_max = jnp.where(jnp.isfinite(row_max), row_max, 0.0)  # fully masked rows
    e = jnp.exp(masked - row_max) * mask  # masked entries are exactly 0
    return e / jnp.maximum(jnp.sum(e, axis=-1, keepdims=True), jnp.finfo(e.dtype).tiny)


def silu(x: Array) -> Array:
    """SiLU / swish: ``x * sigmoid(x)``."""
    return jax.nn.silu(x)


def rms_norm(x: Array, weight: Array, eps: float) -> Array:
    """RMSNorm over the last axis: ``x / sqrt(mean(x**2) + eps) * weight``."""
    var = jnp.mean(x * x, axis=-1, keepdims=True)
    return x * jax.lax.rsqrt(var + eps) * weight


def rotate_half(x: Array) -> Array:
    """``[x1, x2] -> [-x2, x1]`` on the last axis (Hugging Face RoPE convention)."""
    half = x.shape[-1] // 2
    return jnp.concatenate([-x[..., half:], x[..., :half]], axis=-1)


def rope(x: Array, cos: Array, sin: Array) -> Array:
    """Rotate-half RoPE: ``x (..., T, H, hd)``, ``cos``/``sin`` ``(T, hd)``."""
    c = cos[:, None, :]  # (T, 1, hd) broadcast over heads
    s = sin[:, None, :]  # (T, 1, hd)
    return x * c + rotate_half(x) * s


def matmul(x: Array, w: Array) -> Array:
    """``x @ w`` (batched over leading axes like ``jnp.matmul``)."""
    return jnp.matmul(x, w)


def linear(x: Array, w: Array, residual: Array | None = None) -> Array:
    """``residual + x @ w`` for a weight matrix ``w (K, N)`` (no residual: ``x @ w``)."""
    y = x @ w
    return y if residual is None else residual + y


def llama_ops() -> dict[str, object]:
    """The six ``LlamaOps`` primitives, keyed by field name (twins of ``secure.ops.secure_llama_ops()``)."""
    return {"softmax": softmax, "silu": silu, "rms_norm": rms_norm, "rope": rope, "matmul": matmul, "linear": linear}


# --- twins of the secure engine's lookup and token selection ---------------------------


def embed_onehot(onehot: Array, table: Array) -> Array:
    """onehot (T, V) @ table (V, D) -> (T, D)."""
    return onehot @ table


def argmax_onehot(logits: Array) -> Array:
    """One-hot (same dtype as logits) of the first argmax over the last axis."""
    return jax.nn.one_hot(jnp.argmax(logits, axis=-1), logits.shape[-1], dtype=logits.dtype)


def gumbel_max_onehot(logits: Array, temperature: float | Array, gumbel_noise: Array) -> Array:
    """One-hot of argmax(logits + temperature * gumbel_noise): a sample of
    softmax(logits / temperature) when the noise is standard Gumbel."""
    return argmax_onehot(logits + temperature * gumbel_noise)
