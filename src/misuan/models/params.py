"""Canonical in-memory parameter layout, and its flat named-tensor form.

Every loader (GGUF, Hugging Face) produces the same pytree, in float32, with
every matrix **pre-transposed** so the model computes ``x @ W`` (never
``x @ W.T``, which costs ~3x under MPC when ``W`` is secret)::

    {
      "embed":   (V, D)            token embedding rows
      "layers": [                  one dict per block, L of them
        {
          "attn_norm": (D,)
          "wq": (D, H*hd)   "bq": (H*hd,)    # bq/bk/bv only if cfg.qkv_bias
          "wk": (D, KV*hd)  "bk": (KV*hd,)
          "wv": (D, KV*hd)  "bv": (KV*hd,)
          "wo": (H*hd, D)   "bo": (D,)       # bo only if cfg.o_bias
          "mlp_norm": (D,)
          "w_gate": (D, F)
          "w_up":   (D, F)
          "w_down": (F, D)
        }, ...
      ],
      "norm":    (D,)              final RMSNorm weight
      "lm_head": (D, V)            for tied models a materialised copy of embed.T
    }

Q and K use the Hugging Face **rotate-half** RoPE convention: within a head,
feature ``i`` pairs with feature ``i + hd/2``. (GGUF files store LLaMA Q/K
permuted for interleaved RoPE; the GGUF loader undoes that.)

The flat form is a list of ``(name, float32 ndarray)`` pairs in a stable order
(``embed``, then ``layers.{i}.{key}`` block by block in :func:`layer_keys`
order, then ``norm``, ``lm_head``) — the hosting code secret-shares each tensor.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from misuan.errors import InvalidInput
from misuan.models.config import LlamaConfig

#: A parameter pytree: nested dicts/lists of float32 arrays (numpy or jax).
Params = dict[str, Any]


def layer_keys(cfg: LlamaConfig) -> tuple[str, ...]:
    """Keys of one block's dict, in the canonical (flattening) order."""
    keys = ["attn_norm", "wq", "wk", "wv"]
    if cfg.qkv_bias:
        keys += ["bq", "bk", "bv"]
    keys.append("wo")
    if cfg.o_bias:
        keys.append("bo")
    keys += ["mlp_norm", "w_gate", "w_up", "w_down"]
    return tuple(keys)


def layer_shapes(cfg: LlamaConfig) -> dict[str, tuple[int, ...]]:
    """Shape of every tensor in one block."""
    d, f = cfg.dim, cfg.hidden_dim
    q, kv = cfg.n_heads * cfg.head_dim, cfg.n_kv_heads * cfg.head_dim
    shapes = {
        "attn_norm": (d,),
        "wq": (d, q),
        "wk": (d, kv),
        "wv": (d, kv),
        "bq": (q,),
        "bk": (kv,),
        "bv": (kv,),
        "wo": (q, d),
        "bo": (d,),
        "mlp_norm": (d,),
        "w_gate": (d, f),
        "w_up": (d, f),
        "w_down": (f, d),
    }
    return {k: shapes[k] for k in layer_keys(cfg)}


def param_shapes(cfg: LlamaConfig) -> list[tuple[str, tuple[int, ...]]]:
    """``(name, shape)`` of every tensor, in the stable flat order."""
    out: list[tuple[str, tuple[int, ...]]] = [("embed", (cfg.vocab_size, cfg.dim))]
    per_layer = layer_shapes(cfg)
    for i in range(cfg.n_layers):
        out += [(f"layers.{i}.{k}", s) for k, s in per_layer.items()]
    out += [("norm", (cfg.dim,)), ("lm_head", (cfg.dim, cfg.vocab_size))]
    return out


def param_count(cfg: LlamaConfig) -> int:
    """Number of scalars in the params (``lm_head`` counted even when tied)."""
    return sum(int(np.prod(s)) for _, s in param_shapes(cfg))


def _get(params: Params, name: str) -> Any:
    parts = name.split(".")
    if parts[0] == "layers":
        return params["layers"][int(parts[1])][parts[2]]
    return params[parts[0]]


def flatten_params(params: Params, cfg: LlamaConfig) -> list[tuple[str, np.ndarray]]:
    """The params as ``(name, float32 array)`` pairs in the stable order.

    Raises:
        InvalidInput: a tensor is missing or has the wrong shape.
    """
    out = []
    for name, shape in param_shapes(cfg):
        try:
            value = np.asarray(_get(params, name), dtype=np.float32)
        except (KeyError, IndexError, TypeError) as exc:
            raise InvalidInput(f"params: missing tensor {name}") from exc
        if value.shape != shape:
            raise InvalidInput(f"params: {name} has shape {value.shape}, expected {shape}")
        out.append((name, value))
    return out


def unflatten_params(named: Iterable[tuple[str, Any]] | dict[str, Any], cfg: LlamaConfig) -> Params:
    """Rebuild the pytree from named tensors (the inverse of :func:`flatten_params`).

    Accepts pairs in any order (or a dict); values keep their array type (numpy,
    jax, or anything with ``.shape``) so the secure engine can pass placeholders.

    Raises:
        InvalidInput: a tensor is missing, unknown, duplicated or mis-shaped.
    """
    items = list(named.items()) if isinstance(named, dict) else list(named)
    by_name: dict[str, Any] = {}
    for name, value in items:
        if name in by_name:
            raise InvalidInput(f"params: duplicate tensor {name}")
        by_name[name] = value
    expected = param_shapes(cfg)
    unknown = sorted(set(by_name) - {n for n, _ in expected})
    if unknown:
        raise InvalidInput(f"params: unknown tensors {unknown[:5]}")
    for name, shape in expected:
        if name not in by_name:
            raise InvalidInput(f"params: missing tensor {name}")
        got = tuple(getattr(by_name[name], "shape", ()))
        if got != shape:
            raise InvalidInput(f"params: {name} has shape {got}, expected {shape}")
    keys = layer_keys(cfg)
    return {
        "embed": by_name["embed"],
        "layers": [{k: by_name[f"layers.{i}.{k}"] for k in keys} for i in range(cfg.n_layers)],
        "norm": by_name["norm"],
        "lm_head": by_name["lm_head"],
    }


def validate_params(params: Params, cfg: LlamaConfig) -> None:
    """Raise :class:`InvalidInput` unless ``params`` matches ``cfg`` exactly."""
    flat = flatten_params(params, cfg)
    extra_layers = len(params.get("layers", [])) - cfg.n_layers
    if extra_layers:
        raise InvalidInput(f"params: {len(params['layers'])} layers, expected {cfg.n_layers}")
    keys = set(layer_keys(cfg))
    for i, layer in enumerate(params["layers"]):
        if set(layer) != keys:
            raise InvalidInput(f"params: layer {i} has keys {sorted(layer)}, expected {sorted(keys)}")
    for name, value in flat:
        if not np.all(np.isfinite(value)):
            raise InvalidInput(f"params: {name} has non-finite values")


def assemble_params(
    cfg: LlamaConfig,
    embed: np.ndarray,
    layers: Sequence[dict[str, np.ndarray]],
    norm: np.ndarray,
    lm_head: np.ndarray | None,
) -> Params:
    """Build a contiguous float32 pytree; ``lm_head=None`` ties it to ``embed.T``."""
    f32 = lambda a: np.ascontiguousarray(np.asarray(a, dtype=np.float32))  # noqa: E731
    embed = f32(embed)
    head = f32(embed.T) if lm_head is None else f32(lm_head)
    params = {
        "embed": embed,
        "layers": [{k: f32(layer[k]) for k in layer_keys(cfg)} for layer in layers],
        "norm": f32(norm),
        "lm_head": head,
    }
    validate_params(params, cfg)
    return params
