"""LLaMA-family decoder in JAX, written once for plaintext and MPC.

Every layer function takes an ``ops`` object (:class:`LlamaOps`). The plaintext
defaults are :mod:`misuan.models.plain_ops`; the secure engine swaps in MPC-friendly versions of the
same six primitives and reuses everything else unchanged. All shapes are
static: the KV cache has a fixed length ``S`` and the current position ``pos``
is a (public) traced scalar, so one compiled program serves every step.

Conventions (single sequence, no batch axis):

* ``x`` hidden states ``(T, D)``; ``T`` tokens starting at absolute position ``pos``.
* KV cache :class:`KVCache` with ``k``/``v`` of shape ``(L, KV, S, hd)``; slot ``s``
  holds the key/value of absolute position ``s``. Writes use
  ``lax.dynamic_update_slice`` at ``pos`` — callers must keep ``pos + T <= S``
  (XLA clamps out-of-range starts silently).
* ``cos``/``sin`` public RoPE tables ``(T, hd)`` (rotate-half layout), ``mask``
  public ``(T, S)`` float 0/1 with 1 = may attend. Padding tokens appended after
  the real ones only write cache slots that later steps overwrite, so callers
  may pad ``T`` up to a shape bucket.
* Params follow :mod:`misuan.models.params` (every matrix pre-transposed:
  the code only ever computes ``x @ W``). Weight products go through
  ``ops.linear``, which owns the weight layout: the plaintext ops take ``W (K, N)``,
  the secure engine keeps its resident matrices as ``W.T (N, K)``.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from misuan.errors import InvalidInput
from misuan.models import plain_ops
from misuan.models.config import LlamaConfig
from misuan.models.params import Params
from misuan.models.plain_ops import Array


@dataclass(frozen=True)
class LlamaOps:
    """The primitives the model is written against; swap them for MPC.

    Members (plain callables, not methods):
        softmax(scores, mask): scores ``(..., T, S)``, mask ``(T, S)`` float 0/1
            (1 = may attend) -> probabilities ``(..., T, S)``, masked entries 0.
        silu(x): elementwise SiLU.
        rms_norm(x, weight, eps): RMSNorm over the last axis.
        rope(x, cos, sin): x ``(..., T, H, hd)`` rotate-half, cos/sin ``(T, hd)``.
        matmul(x, w): ``x @ w`` for activations (attention scores and outputs).
        linear(x, w, residual=None): ``residual + x @ W`` for a weight matrix ``W``
            held in the ops' own layout (plaintext: ``W (K, N)``).

    Frozen and hashable, so it can be a static argument of ``jax.jit``.
    """

    softmax: Callable[[Array, Array], Array] = plain_ops.softmax
    silu: Callable[[Array], Array] = plain_ops.silu
    rms_norm: Callable[[Array, Array, float], Array] = plain_ops.rms_norm
    rope: Callable[[Array, Array, Array], Array] = plain_ops.rope
    matmul: Callable[[Array, Array], Array] = plain_ops.matmul
    linear: Callable[..., Array] = plain_ops.linear


PLAIN_OPS = LlamaOps()


# --- public tables: RoPE and masks -------------------------------------------------------


class KVCache(NamedTuple):
    """Fixed-size key/value cache; slot ``s`` holds absolute position ``s``."""

    k: Array  # (L, KV, S, hd)
    v: Array  # (L, KV, S, hd)

    @property
    def max_len(self) -> int:
        """Number of slots ``S``."""
        return int(self.k.shape[2])


def init_cache(cfg: LlamaConfig, max_len: int, dtype: Any = jnp.float32) -> KVCache:
    """An all-zero cache with ``max_len`` slots."""
    shape = (cfg.n_layers, cfg.n_kv_heads, max_len, cfg.head_dim)  # (L, KV, S, hd)
    return KVCache(jnp.zeros(shape, dtype), jnp.zeros(shape, dtype))


def rope_inv_freq(cfg: LlamaConfig) -> Array:
    """``1 / theta**(2i/hd)`` for ``i < hd/2``, float32 like Hugging Face."""
    exponents = jnp.arange(0, cfg.head_dim, 2, dtype=jnp.float32) / cfg.head_dim
    return 1.0 / (jnp.float32(cfg.rope_theta) ** exponents)  # (hd/2,)


def rope_tables(cfg: LlamaConfig, positions: Array) -> tuple[Array, Array]:
    """Public ``cos, sin`` tables ``(T, hd)`` for absolute ``positions (T,)``."""
    freqs = jnp.asarray(positions, jnp.float32)[:, None] * rope_inv_freq(cfg)[None, :]  # (T, hd/2)
    emb = jnp.concatenate([freqs, freqs], axis=-1)  # (T, hd)
    return jnp.cos(emb), jnp.sin(emb)


def attention_mask(pos: Array, n_tokens: int, max_len: int) -> Array:
    """Causal mask ``(T, S)``: token ``t`` (at ``pos + t``) sees slots ``<= pos + t``."""
    q_pos = pos + jnp.arange(n_tokens)[:, None]  # (T, 1)
    k_pos = jnp.arange(max_len)[None, :]  # (1, S)
    return (k_pos <= q_pos).astype(jnp.float32)


# --- the model --------------------------------------------------------------------------


def embed(params: Params, tokens: Array) -> Array:
    """Plaintext row lookup ``(T,) -> (T, D)`` (the secure engine uses one-hot @ embed)."""
    return jnp.take(params["embed"], tokens, axis=0)


def attention(
    ops: LlamaOps,
    cfg: LlamaConfig,
    lp: dict[str, Array],
    x: Array,
    cos: Array,
    sin: Array,
    mask: Array,
    cache: KVCache,
    layer: int,
    pos: Array,
    residual: Array | None = None,
) -> tuple[Array, KVCache]:
    """Grouped-query self-attention of normed ``x (T, D)``; writes ``cache`` at ``[layer, :, pos:pos+T]``.

    Returns ``residual + attention`` (the output projection adds it: one op fewer
    under MPC). ``layer`` is a static index into the cache's first axis: to keep one
    cache per layer, pass ``KVCache(k[None], v[None])`` and ``layer=0``.
    """
    t = x.shape[0]
    h, kv, g, hd = cfg.n_heads, cfg.n_kv_heads, cfg.n_groups, cfg.head_dim
    if "wqkv" in lp:  # q|k|v concatenated along the output axis: one product
        qkv = ops.linear(x, lp["wqkv"])  # (T, (H + 2 KV) hd)
        q, k, v = jnp.split(qkv, [h * hd, (h + kv) * hd], axis=-1)
    else:
        q, k, v = ops.linear(x, lp["wq"]), ops.linear(x, lp["wk"]), ops.linear(x, lp["wv"])
    if cfg.qkv_bias:
        q, k, v = q + lp["bq"], k + lp["bk"], v + lp["bv"]
    qk = ops.rope(jnp.concatenate([q, k], axis=-1).reshape(t, h + kv, hd), cos, sin)  # (T, H+KV, hd): one op
    q, k = qk[:, :h], qk[:, h:]  # (T, H, hd), (T, KV, hd)
    v = v.reshape(t, kv, hd)  # (T, KV, hd)

    zero = jnp.zeros((), jnp.int32)
    start = (jnp.asarray(layer, jnp.int32), zero, jnp.asarray(pos, jnp.int32), zero)
    k_all = jax.lax.dynamic_update_slice(cache.k, jnp.transpose(k, (1, 0, 2))[None], start)  # (L, KV, S, hd)
    v_all = jax.lax.dynamic_update_slice(cache.v, jnp.transpose(v, (1, 0, 2))[None], start)  # (L, KV, S, hd)
    k_l, v_l = k_all[layer], v_all[layer]  # (KV, S, hd)

    q = q * (1.0 / np.sqrt(hd))
    q = jnp.transpose(q.reshape(t, kv, g, hd), (1, 2, 0, 3))  # (KV, G, T, hd)
    scores = ops.matmul(q, jnp.swapaxes(k_l, -1, -2)[:, None])  # (KV, G, T, S)
    probs = ops.softmax(scores, mask)  # (KV, G, T, S)
    out = ops.matmul(probs, v_l[:, None])  # (KV, G, T, hd)
    out = jnp.transpose(out, (2, 0, 1, 3)).reshape(t, h * hd)  # (T, H*hd), head = kv*G + g
    if cfg.o_bias:
        residual = lp["bo"] if residual is None else residual + lp["bo"]
    return ops.linear(out, lp["wo"], residual), KVCache(k_all, v_all)  # (T, D)


def mlp(ops: LlamaOps, lp: dict[str, Array], x: Array, residual: Array | None = None) -> Array:
    """``residual + SwiGLU``: ``(silu(x @ W_gate) * (x @ W_up)) @ W_down`` on normed ``x (T, D)``.

    With ``lp["w_gate_up"]`` (gate|up concatenated along the output axis) the two are one product."""
    if "w_gate_up" in lp:
        gate, up = jnp.split(ops.linear(x, lp["w_gate_up"]), 2, axis=-1)  # (T, F) each
    else:
        gate, up = ops.linear(x, lp["w_gate"]), ops.linear(x, lp["w_up"])  # (T, F) each
    return ops.linear(ops.silu(gate) * up, lp["w_down"], residual)  # (T, D)


def block(
    ops: LlamaOps,
    cfg: LlamaConfig,
    lp: dict[str, Array],
    x: Array,
    cos: Array,
    sin: Array,
    mask: Array,
    cache: KVCache,
    layer: int,
    pos: Array,
) -> tuple[Array, KVCache]:
    """One pre-norm transformer block on the residual stream ``x (T, D)``."""
    normed = ops.rms_norm(x, lp["attn_norm"], cfg.norm_eps)  # (T, D)
    x, cache = attention(ops, cfg, lp, normed, cos, sin, mask, cache, layer, pos, residual=x)
    x = mlp(ops, lp, ops.rms_norm(x, lp["mlp_norm"], cfg.norm_eps), residual=x)
    return x, cache


def forward_hidden(
    ops: LlamaOps,
    cfg: LlamaConfig,
    params: Params,
    x: Array,
    cos: Array,
    sin: Array,
    mask: Array,
    cache: KVCache,
    pos: Array,
) -> tuple[Array, KVCache]:
    """All blocks + final norm on embeddings ``x (T, D)``; returns ``(h (T, D), cache)``."""
    for i, lp in enumerate(params["layers"]):
        x, cache = block(ops, cfg, lp, x, cos, sin, mask, cache, i, pos)
    return ops.rms_norm(x, params["norm"], cfg.norm_eps), cache


def lm_head(ops: LlamaOps, params: Params, h: Array) -> Array:
    """Logits ``(T, V)`` from final hidden states ``h (T, D)``."""
    return ops.matmul(h, params["lm_head"])


def forward(
    params: Params,
    cfg: LlamaConfig,
    tokens: Array,
    cache: KVCache,
    pos: Array,
    ops: LlamaOps = PLAIN_OPS,
) -> tuple[Array, KVCache]:
    """Tokens ``(T,)`` at positions ``pos..pos+T-1`` -> ``(logits (T, V), cache)``.

    Pure and traceable; builds the public RoPE tables and mask from ``pos``.
    """
    t = tokens.shape[0]
    cos, sin = rope_tables(cfg, pos + jnp.arange(t))  # (T, hd) each
    mask = attention_mask(pos, t, cache.k.shape[2])  # (T, S)
    h, cache = forward_hidden(ops, cfg, params, embed(params, tokens), cos, sin, mask, cache, pos)
    return lm_head(ops, params, h), cache


@functools.partial(jax.jit, static_argnames=("cfg", "ops", "last_only"), donate_argnames=("cache",))
def _forward_jit(
    params: Params,
    tokens: Array,
    cache: KVCache,
    pos: Array,
    n_real: Array,
    *,
    cfg: LlamaConfig,
    ops: LlamaOps,
    last_only: bool,
) -> tuple[Array, KVCache]:
    t = tokens.shape[0]
    cos, sin = rope_tables(cfg, pos + jnp.arange(t))  # (T, hd)
    mask = attention_mask(pos, t, cache.k.shape[2])  # (T, S)
    h, cache = forward_hidden(ops, cfg, params, embed(params, tokens), cos, sin, mask, cache, pos)
    if last_only:
        h = jax.lax.dynamic_slice_in_dim(h, n_real - 1, 1, axis=0)  # (1, D)
    return lm_head(ops, params, h), cache


def prefill(
    params: Params,
    cfg: LlamaConfig,
    tokens: Array,
    cache: KVCache,
    pos: int = 0,
    ops: LlamaOps = PLAIN_OPS,
    *,
    n_real: int | None = None,
    last_only: bool = False,
) -> tuple[Array, KVCache]:
    """Run ``tokens (T,)`` (jit-compiled per ``T``) and fill the cache from ``pos``.

    ``n_real`` marks how many leading tokens are real when the caller padded
    ``tokens`` to a bucket. Returns ``(logits, cache)`` with logits ``(T, V)``,
    or ``(1, V)`` for the last real token when ``last_only``. The input cache is
    donated (do not reuse it).
    """
    tokens = jnp.asarray(tokens, jnp.int32)
    n = tokens.shape[0] if n_real is None else n_real
    if pos < 0 or pos + tokens.shape[0] > cache.k.shape[2]:
        slots = cache.k.shape[2]
        raise InvalidInput(f"sequence too long: position {pos} + {tokens.shape[0]} tokens > {slots} cache slots")
    return _forward_jit(params, tokens, cache, jnp.int32(pos), jnp.int32(n), cfg=cfg, ops=ops, last_only=last_only)


def decode_step(params: Params, cfg: LlamaConfig, token: int, cache: KVCache, pos: int, ops: LlamaOps = PLAIN_OPS) -> tuple[Array, KVCache]:
    """One token at position ``pos`` -> ``(logits (V,), cache)`` (cache donated)."""
    logits, cache = prefill(params, cfg, jnp.asarray([token], jnp.int32), cache, pos, ops)
    return logits[0], cache
