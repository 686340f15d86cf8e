"""A plaintext BERT encoder in JAX (float32, CPU), enough for sentence embeddings.

Read like nanoGPT: :class:`BertConfig` (from a Hugging Face ``config.json``),
:class:`BertParams` (from ``model.safetensors``), and small functions composed
by :func:`encode` (jit-compiled per input shape; the layers run in a ``lax.scan``,
which compiles ~3x faster than unrolled for the same speed). Inference only: no
dropout, no pooler head, token type 0.

JAX rather than NumPy because it is faster on batches: measured on 2 cores,
32 chunks x 128 tokens take 0.52 s jitted against 1.35 s in NumPy (OpenBLAS);
the price is a compile of ~0.5-1 s per new (batch, length) shape.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from misuan.errors import InvalidInput

Array = jax.Array
#: additive attention bias of a padding key (finite, so an all-padding row stays finite)
_MASKED = -1e9


@dataclass(frozen=True)
class BertConfig:
    vocab_size: int
    dim: int  # hidden_size
    n_layers: int
    n_heads: int
    hidden_dim: int  # intermediate_size
    max_positions: int  # max_position_embeddings
    type_vocab_size: int
    eps: float  # layer_norm_eps
    pad_id: int

    @property
    def head_dim(self) -> int:
        return self.dim // self.n_heads

    @classmethod
    def from_json(cls, path: Path) -> BertConfig:
        """Read a Hugging Face BERT ``config.json``; refuse what :func:`encode` does not compute."""
        try:
            raw = json.loads(path.read_text())
            cfg = cls(
                vocab_size=int(raw["vocab_size"]),
                dim=int(raw["hidden_size"]),
                n_layers=int(raw["num_hidden_layers"]),
                n_heads=int(raw["num_attention_heads"]),
                hidden_dim=int(raw["intermediate_size"]),
                max_positions=int(raw["max_position_embeddings"]),
                type_vocab_size=int(raw.get("type_vocab_size", 2)),
                eps=float(raw.get("layer_norm_eps", 1e-12)),
                pad_id=int(raw.get("pad_token_id", 0)),
            )
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise InvalidInput(f"cannot read BERT config {path}: {type(e).__name__}: {e}") from None
        if raw.get("model_type", "bert") != "bert" or raw.get("hidden_act", "gelu") != "gelu":
            raise InvalidInput(f"{path}: only model_type 'bert' with hidden_act 'gelu' is supported")
        if raw.get("position_embedding_type", "absolute") != "absolute":
            raise InvalidInput(f"{path}: only absolute position embeddings are supported")
        if cfg.dim % cfg.n_heads:
            raise InvalidInput(f"{path}: hidden_size {cfg.dim} is not a multiple of {cfg.n_heads} heads")
        return cfg


class LayerParams(NamedTuple):
    """One layer's weights (shapes below); :attr:`BertParams.layers` stacks them: (L, ...)."""

    w_qkv: Array  # (D, 3D) query|key|value, x @ w
    b_qkv: Array  # (3D,)
    w_o: Array  # (D, D)
    b_o: Array  # (D,)
    ln1_w: Array  # (D,) after attention
    ln1_b: Array
    w_up: Array  # (D, F)
    b_up: Array  # (F,)
    w_down: Array  # (F, D)
    b_down: Array  # (D,)
    ln2_w: Array  # (D,) after the MLP
    ln2_b: Array


class BertParams(NamedTuple):
    tok_emb: Array  # (V, D)
    pos_emb: Array  # (P, D)
    type_emb: Array  # (2, D)
    ln_w: Array  # (D,)
    ln_b: Array
    layers: LayerParams  # every leaf stacked over layers: (L, ...)


def load_params(path: Path, cfg: BertConfig) -> BertParams:
    """Weights from a ``model.safetensors`` of ``BertModel`` (names with or without ``bert.``), on the CPU."""
    from safetensors import SafetensorError
    from safetensors.numpy import load_file

    try:
        raw = load_file(str(path))
    except (OSError, SafetensorError) as e:
        raise InvalidInput(f"cannot read BERT weights {path}: {e}") from None
    raw = {k.removeprefix("bert."): v for k, v in raw.items()}

    def get(name: str, shape: tuple[int, ...]) -> np.ndarray:
        if name not in raw:
            raise InvalidInput(f"{path}: tensor {name} is missing")
        t = raw[name]
        if t.shape != shape:
            raise InvalidInput(f"{path}: tensor {name} has shape {t.shape}, config says {shape}")
        return np.ascontiguousarray(t, dtype=np.float32)

    d, f = cfg.dim, cfg.hidden_dim

    def linear(name: str, n_in: int, n_out: int) -> tuple[np.ndarray, np.ndarray]:
        # torch Linear stores (out, in); we multiply x @ w, so keep (in, out)
        return np.ascontiguousarray(get(f"{name}.weight", (n_out, n_in)).T), get(f"{name}.bias", (n_out,))

    def layer(i: int) -> LayerParams:
        p = f"encoder.layer.{i}"
        qkv = [linear(f"{p}.attention.self.{n}", d, d) for n in ("query", "key", "value")]
        w_o, b_o = linear(f"{p}.attention.output.dense", d, d)
        w_up, b_up = linear(f"{p}.intermediate.dense", d, f)
        w_down, b_down = linear(f"{p}.output.dense", f, d)
        return LayerParams(
            w_qkv=np.concatenate([w for w, _ in qkv], axis=1),  # (D, 3D)
            b_qkv=np.concatenate([b for _, b in qkv]),  # (3D,)
            w_o=w_o,
            b_o=b_o,
            ln1_w=get(f"{p}.attention.output.LayerNorm.weight", (d,)),
            ln1_b=get(f"{p}.attention.output.LayerNorm.bias", (d,)),
            w_up=w_up,
            b_up=b_up,
            w_down=w_down,
            b_down=b_down,
            ln2_w=get(f"{p}.output.LayerNorm.weight", (d,)),
            ln2_b=get(f"{p}.output.LayerNorm.bias", (d,)),
        )

    params = BertParams(
        tok_emb=get("embeddings.word_embeddings.weight", (cfg.vocab_size, d)),
        pos_emb=get("embeddings.position_embeddings.weight", (cfg.max_positions, d)),
        type_emb=get("embeddings.token_type_embeddings.weight", (cfg.type_vocab_size, d)),
        ln_w=get("embeddings.LayerNorm.weight", (d,)),
        ln_b=get("embeddings.LayerNorm.bias", (d,)),
        layers=LayerParams(*(np.stack(leaves) for leaves in zip(*(layer(i) for i in range(cfg.n_layers)), strict=True))),
    )
    return jax.device_put(params, jax.devices("cpu")[0])


def layer_norm(x: Array, w: Array, b: Array, eps: float) -> Array:
    mu = x.mean(-1, keepdims=True)  # (B, T, 1)
    xc = x - mu  # (B, T, D)
    var = (xc * xc).mean(-1, keepdims=True)  # (B, T, 1)
    return xc * jax.lax.rsqrt(var + eps) * w + b  # (B, T, D)


def embed_tokens(p: BertParams, ids: Array) -> Array:
    t = ids.shape[1]
    return p.tok_emb[ids] + p.pos_emb[:t] + p.type_emb[0]  # (B, T, D)


def attention(cfg: BertConfig, lp: LayerParams, x: Array, bias: Array) -> Array:
    b, t, d = x.shape
    h, hd = cfg.n_heads, cfg.head_dim
    qkv = x @ lp.w_qkv + lp.b_qkv  # (B, T, 3D)
    qkv = qkv.reshape(b, t, 3, h, hd).transpose(2, 0, 3, 1, 4)  # (3, B, H, T, hd)
    q, k, v = qkv[0], qkv[1], qkv[2]  # (B, H, T, hd)
    att = (q @ k.transpose(0, 1, 3, 2)) * (1.0 / np.sqrt(hd))  # (B, H, T, T)
    att = jax.nn.softmax(att + bias, axis=-1)  # bias (B, 1, 1, T): padding keys get _MASKED
    y = (att @ v).transpose(0, 2, 1, 3).reshape(b, t, d)  # (B, H, T, hd) -> (B, T, D)
    return y @ lp.w_o + lp.b_o  # (B, T, D)


def mlp(lp: LayerParams, x: Array) -> Array:
    up = jax.nn.gelu(x @ lp.w_up + lp.b_up, approximate=False)  # (B, T, F): BERT's exact erf GELU
    return up @ lp.w_down + lp.b_down  # (B, T, D)


def block(cfg: BertConfig, lp: LayerParams, x: Array, bias: Array) -> Array:
    """One post-LN encoder layer."""
    x = layer_norm(x + attention(cfg, lp, x, bias), lp.ln1_w, lp.ln1_b, cfg.eps)  # (B, T, D)
    return layer_norm(x + mlp(lp, x), lp.ln2_w, lp.ln2_b, cfg.eps)  # (B, T, D)


def encode(cfg: BertConfig, p: BertParams, ids: Array, mask: Array) -> Array:
    """Last hidden states ``(B, T, D)`` of token ids ``(B, T)`` with attention mask ``(B, T)`` (1 = token)."""
    bias = jnp.where(mask[:, None, None, :] > 0, 0.0, _MASKED).astype(jnp.float32)  # (B, 1, 1, T)
    x = layer_norm(embed_tokens(p, ids), p.ln_w, p.ln_b, cfg.eps)  # (B, T, D)
    x, _ = jax.lax.scan(lambda x, lp: (block(cfg, lp, x, bias), None), x, p.layers)  # (B, T, D)
    return x


def mean_pool_normalize(hidden: Array, mask: Array) -> Array:
    """sentence-transformers' mean pooling over the mask, then L2 normalisation: ``(B, D)``."""
    m = mask[:, :, None].astype(jnp.float32)  # (B, T, 1)
    pooled = (hidden * m).sum(1) / jnp.maximum(m.sum(1), 1e-9)  # (B, D)
    norm = jnp.linalg.norm(pooled, axis=-1, keepdims=True)  # (B, 1)
    return pooled / jnp.maximum(norm, 1e-12)  # (B, D)


@partial(jax.jit, static_argnums=0)
def sentence_embeddings(cfg: BertConfig, p: BertParams, ids: Array, mask: Array) -> Array:
    """Unit-norm sentence embeddings ``(B, D)`` of padded ids/mask ``(B, T)``."""
    return mean_pool_normalize(encode(cfg, p, ids, mask), mask)
