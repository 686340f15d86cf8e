"""Plaintext model layer: LLaMA-family weights, tokenizer and reference engine.

Main entry points (imported lazily, so ``import misuan.models`` stays cheap):

* :func:`load_model` (GGUF file or Hugging Face dir) -> ``(LlamaConfig, params, Tokenizer)``;
  :func:`load_public` -> ``(LlamaConfig, Tokenizer)`` without decoding weights
* :class:`LlamaConfig`; params layout and ``flatten_params`` / ``unflatten_params``
  in :mod:`misuan.models.params`
* :class:`LlamaOps`, ``prefill``, ``decode_step``, ``forward_hidden`` in
  :mod:`misuan.models.llama`; :class:`PlainLlama` (``generate``) in
  :mod:`misuan.models.generation`
* :class:`Tokenizer`, :class:`StreamDecoder`; :func:`smollm2_gguf_path`
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "LlamaConfig": "misuan.models.config",
    "Params": "misuan.models.params",
    "flatten_params": "misuan.models.params",
    "unflatten_params": "misuan.models.params",
    "param_shapes": "misuan.models.params",
    "LlamaOps": "misuan.models.llama",
    "PLAIN_OPS": "misuan.models.llama",
    "KVCache": "misuan.models.llama",
    "init_cache": "misuan.models.llama",
    "prefill": "misuan.models.llama",
    "decode_step": "misuan.models.llama",
    "PlainLlama": "misuan.models.generation",
    "SamplingParams": "misuan.models.sampling",
    "sample_token": "misuan.models.sampling",
    "Tokenizer": "misuan.models.tokenizer",
    "StreamDecoder": "misuan.models.tokenizer",
    "LoadedModel": "misuan.models.loader",
    "load_model": "misuan.models.loader",
    "load_public": "misuan.models.loader",
    "smollm2_gguf_path": "misuan.models.assets",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'misuan.models' has no attribute {name!r}")
