"""The baseline misuan is measured against: the PUMA recipe of SPU's examples.

As in SPU's LLaMA/GPT-2 examples: no KV cache — the whole sequence is run
through the model for every new token — weights in their stored (Hugging
Face / GGUF) orientation, so every product is ``x @ W.T``; SPU's default
approximations (``jax.nn.softmax`` with the causal mask applied by
``jnp.where(mask, s, -1e4)``, ``jax.nn.silu``, ``jax.lax.rsqrt``); a secret
one-hot embedding, the LM head and a secret ``jnp.argmax``. Used only by
``bench/secure_generation.py``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from ..models.config import LlamaConfig
from ..models.llama import rope_tables
from ..models.plain_ops import rotate_half
from ..secure.ops import dense_transpose

#: matrices stored (out, in) by HF/GGUF: the baseline keeps them that way.
MATRICES = ("wq", "wk", "wv", "wo", "w_gate", "w_up", "w_down")


def stored_names(cfg: LlamaConfig) -> list[str]:
    """Weights of the baseline, in argument order (matrices as ``hf:`` transposed copies)."""
    names = ["embed"]
    for i in range(cfg.n_layers):
        for k in ("attn_norm", *MATRICES, "mlp_norm"):
            names.append(f"hf:layers.{i}.{k}" if k in MATRICES else f"layers.{i}.{k}")
    return names + ["norm", "embed" if cfg.tie_embeddings else "hf:lm_head"]


def _rms(x, w, eps):
    return x * jax.lax.rsqrt(jnp.mean(x * x, axis=-1, keepdims=True) + eps) * w


def puma_forward(cfg: LlamaConfig, T: int):
    """One new token from a full T-token forward pass (no cache)."""
    names = stored_names(cfg)
    h_, kv, hd = cfg.n_heads, cfg.n_kv_heads, cfg.head_dim
    g = h_ // kv
    cos, sin = rope_tables(cfg, jnp.arange(T))  # (T, hd) public
    causal = np.tril(np.ones((T, T), bool))

    def fn(*args):
        w = dict(zip(names, args[: len(names)]))
        onehot = args[len(names)]  # (T, V) secret
        x = onehot @ w["embed"]  # (T, D)
        for i in range(cfg.n_layers):
            p = lambda k: w[f"hf:layers.{i}.{k}"] if k in MATRICES else w[f"layers.{i}.{k}"]  # noqa: E731
            a = _rms(x, p("attn_norm"), cfg.norm_eps)
            q = (a @ p("wq").T).reshape(T, h_, hd)  # (T, H, hd)
            k = (a @ p("wk").T).reshape(T, kv, hd)  # (T, KV, hd)
            v = (a @ p("wv").T).reshape(T, kv, hd)  # (T, KV, hd)
            q = q * cos[:, None] + rotate_half(q) * sin[:, None]
            k = k * cos[:, None] + rotate_half(k) * sin[:, None]
            k = jnp.repeat(k, g, axis=1)  # (T, H, hd)
            v = jnp.repeat(v, g, axis=1)  # (T, H, hd)
            s = jnp.einsum("thd,shd->hts", q, k) / np.sqrt(hd)  # (H, T, T)
            s = jnp.where(causal[None], s, -1e4)
            o = jnp.einsum("hts,shd->thd", jax.nn.softmax(s, axis=-1), v).reshape(T, h_ * hd)  # (T, H*hd)
            x = x + o @ p("wo").T
            m = _rms(x, p("mlp_norm"), cfg.norm_eps)
            x = x + (jax.nn.silu(m @ p("w_gate").T) * (m @ p("w_up").T)) @ p("w_down").T
        h = _rms(x[T - 1 :], w["norm"], cfg.norm_eps)  # (1, D)
        logits = h @ w[names[-1]].T  # (1, V): x @ W.T with W stored (V, D)
        return (jnp.argmax(logits, axis=-1).astype(jnp.float32),)

    return fn


def store_hf_program(cfg: LlamaConfig):
    """Load-time: ``hf:<matrix>`` = the matrix in its stored HF orientation (out, in).

    The returned function takes ``(array, transposed)`` pairs as
    ``node.programs.resident_weights`` gives them: per-layer matrices are resident
    as ``W.T`` already (a row range of a stack: dense), others get a dense copy."""
    mats = [f"layers.{i}.{k}" for i in range(cfg.n_layers) for k in MATRICES]
    if not cfg.tie_embeddings:
        mats.append("lm_head")

    def fn(*pairs):
        # dense arrays: a PUMA user holds W (out, in) as an ordinary array
        return tuple(w if transposed else dense_transpose(w) for w, transposed in pairs)

    return fn, mats
