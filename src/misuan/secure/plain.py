"""Plaintext twins of the MPC ops in ``ops.py`` and ``sampling.py``: the ordinary JAX ops.

Same signatures and semantics; used as references in tests and as the plaintext path.
They should agree with the plaintext defaults in ``misuan.models.llama``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def softmax(scores: jax.Array, mask: jax.Array) -> jax.Array:
    """Masked softmax over the last axis; scores (..., T, S), mask (T, S) 0/1.
    Masked entries are 0; a fully masked row is all zeros (as in ``models.llama``)."""
    keep = mask > 0
    masked = jnp.where(keep, scores, -jnp.inf)  # (..., T, S)
    row_max = jnp.max(masked, axis=-1, keepdims=True)  # (..., T, 1)
    row_max = jnp.where(jnp.isfinite(row_max), row_max, 0.0)  # fully masked rows
    e = jnp.where(keep, jnp.exp(masked - row_max), 0.0)  # (..., T, S)
    return e / jnp.maximum(jnp.sum(e, axis=-1, keepdims=True), jnp.finfo(e.dtype).tiny)


def silu(x: jax.Array) -> jax.Array:
    """x * sigmoid(x)."""
    return jax.nn.silu(x)


def rms_norm(x: jax.Array, weight: jax.Array, eps: float) -> jax.Array:
    """x * rsqrt(mean(x^2, -1) + eps) * weight."""
    ms = jnp.mean(x * x, axis=-1, keepdims=True)  # (..., 1)
    return x * jax.lax.rsqrt(ms + eps) * weight


def rope(x: jax.Array, cos: jax.Array, sin: jax.Array) -> jax.Array:
    """Rotate-half rotary embedding; x (..., T, H, hd), cos/sin (T, hd)."""
    half = x.shape[-1] // 2
    rotated = jnp.concatenate([-x[..., half:], x[..., :half]], axis=-1)  # (..., T, H, hd)
    return x * cos[:, None, :] + rotated * sin[:, None, :]


def matmul(x: jax.Array, w: jax.Array) -> jax.Array:
    """x @ w."""
    return x @ w


def linear(x: jax.Array, wt: jax.Array, residual: jax.Array | None = None) -> jax.Array:
    """``residual + x @ wt.T`` (weight stored as wt (N, K))."""
    y = x @ wt.T
    return y if residual is None else residual + y


def embed_onehot(onehot: jax.Array, table: jax.Array) -> jax.Array:
    """onehot (T, V) @ table (V, D) -> (T, D)."""
    return onehot @ table


def argmax_onehot(logits: jax.Array) -> jax.Array:
    """One-hot (same dtype as logits) of the first argmax over the last axis."""
    return jax.nn.one_hot(jnp.argmax(logits, axis=-1), logits.shape[-1], dtype=logits.dtype)


def gumbel_max_onehot(logits: jax.Array, temperature: float | jax.Array, gumbel_noise: jax.Array) -> jax.Array:
    """One-hot of argmax(logits + temperature * gumbel_noise): a sample of
    softmax(logits / temperature) when the noise is standard Gumbel."""
    return argmax_onehot(logits + temperature * gumbel_noise)


def plain_llama_ops() -> dict[str, object]:
    """The plaintext versions of the six ``LlamaOps`` callables, keyed by field name."""
    return {"softmax": softmax, "silu": silu, "rms_norm": rms_norm, "rope": rope, "matmul": matmul, "linear": linear}
