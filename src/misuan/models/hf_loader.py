"""Load Hugging Face model directories into the canonical layout.

A directory holds ``config.json``, ``model.safetensors`` (or shards listed in
``model.safetensors.index.json``), ``tokenizer.json`` and optionally
``tokenizer_config.json`` / ``chat_template.jinja`` / ``chat_template.json`` /
``generation_config.json``. Supported architectures: ``LlamaForCausalLM``
(LLaMA, SmolLM, TinyLlama) and ``Qwen2ForCausalLM`` (q/k/v biases); anything
else is refused. HF ``nn.Linear`` weights are ``(out, in)`` and are transposed
to ``(in, out)``; Q/K are already in rotate-half order.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import tokenizers

from misuan.errors import InvalidInput
from misuan.models.config import LlamaConfig
from misuan.models.params import Params, assemble_params
from misuan.models.safetensors_io import SafetensorsFile
from misuan.models.tokenizer import Tokenizer, default_eos_ids

#: config.json "architectures" entries accepted, with their family.
HF_ARCHITECTURES = {"LlamaForCausalLM": "llama", "Qwen2ForCausalLM": "qwen2"}


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise InvalidInput(f"{path.name}: cannot read JSON ({type(exc).__name__})") from None


def config_from_hf(raw: dict[str, Any]) -> LlamaConfig:
    """The :class:`LlamaConfig` of a ``config.json`` dict.

    Raises:
        InvalidInput: unsupported architecture or feature, or missing fields.
    """
    if not isinstance(raw, dict):
        raise InvalidInput("config.json is not an object")
    archs = raw.get("architectures") or []
    arch = archs[0] if isinstance(archs, list) and archs else raw.get("model_type", "unknown")
    if arch not in HF_ARCHITECTURES:
        raise InvalidInput(f"unsupported model architecture {arch!r} (supported: {', '.join(HF_ARCHITECTURES)})")
    family = HF_ARCHITECTURES[arch]
    if raw.get("rope_scaling") or (raw.get("rope_parameters") or {}).get("rope_type", "default") != "default":
        raise InvalidInput("models with RoPE scaling are not supported")
    if raw.get("mlp_bias"):
        raise InvalidInput("models with MLP biases are not supported")
    if raw.get("hidden_act", "silu") != "silu":
        raise InvalidInput(f"activation {raw.get('hidden_act')!r} is not supported (silu only)")
    layer_types = raw.get("layer_types") or []
    if (family == "qwen2" and raw.get("use_sliding_window")) or any(t != "full_attention" for t in layer_types):
        raise InvalidInput("models with sliding-window attention are not supported")
    try:
        dim = int(raw["hidden_size"])
        n_heads = int(raw["num_attention_heads"])
        theta = raw.get("rope_theta") or (raw.get("rope_parameters") or {}).get("rope_theta") or 10000.0
        attention_bias = bool(raw.get("attention_bias", False))
        return LlamaConfig(
            vocab_size=int(raw["vocab_size"]),
            dim=dim,
            n_layers=int(raw["num_hidden_layers"]),
            n_heads=n_heads,
            n_kv_heads=int(raw.get("num_key_value_heads") or n_heads),
            head_dim=int(raw.get("head_dim") or dim // n_heads),
            hidden_dim=int(raw["intermediate_size"]),
            norm_eps=float(raw.get("rms_norm_eps", 1e-6)),
            rope_theta=float(theta),
            max_seq_len=int(raw.get("max_position_embeddings", 2048)),
            tie_embeddings=bool(raw.get("tie_word_embeddings", False)),
            qkv_bias=family == "qwen2" or attention_bias,
            o_bias=family == "llama" and attention_bias,
            family=family,
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise InvalidInput(f"config.json: missing or bad field ({type(exc).__name__}: {exc})") from None


def _weight_files(directory: Path) -> list[Path]:
    index = directory / "model.safetensors.index.json"
    if index.is_file():
        weight_map = _read_json(index).get("weight_map")
        if not isinstance(weight_map, dict):
            raise InvalidInput("model.safetensors.index.json has no weight_map")
        names = sorted(set(weight_map.values()))
        files = [directory / n for n in names]
        for f in files:
            if f.parent != directory or not f.is_file():
                raise InvalidInput(f"weight shard {f.name} listed in the index is missing")
        return files
    single = directory / "model.safetensors"
    if single.is_file():
        return [single]
    files = sorted(directory.glob("*.safetensors"))
    if not files:
        raise InvalidInput(f"{directory.name}: no .safetensors weights found")
    return files


class _Weights:
    """Lazy access to tensors spread over several safetensors files."""

    def __init__(self, files: list[Path]):
        self._files = [SafetensorsFile(f) for f in files]
        self._where = {name: f for f in self._files for name in f.names()}

    def has(self, name: str) -> bool:
        return name in self._where

    def get(self, name: str, shape: tuple[int, ...]) -> np.ndarray:
        if name not in self._where:
            raise InvalidInput(f"weights: tensor {name} is missing")
        value = self._where[name].get(name)
        if tuple(value.shape) != shape:
            raise InvalidInput(f"weights: {name} has shape {tuple(value.shape)}, expected {shape}")
        return value

    def close(self) -> None:
        for f in self._files:
            f.close()


def _load_params(directory: Path, cfg: LlamaConfig) -> Params:
    w = _Weights(_weight_files(directory))
    try:
        d, f, v = cfg.dim, cfg.hidden_dim, cfg.vocab_size
        q, kv = cfg.n_heads * cfg.head_dim, cfg.n_kv_heads * cfg.head_dim
        layers = []
        for i in range(cfg.n_layers):
            p = f"model.layers.{i}."
            a = p + "self_attn."
            layer = {
                "attn_norm": w.get(p + "input_layernorm.weight", (d,)),
                "wq": w.get(a + "q_proj.weight", (q, d)).T,
                "wk": w.get(a + "k_proj.weight", (kv, d)).T,
                "wv": w.get(a + "v_proj.weight", (kv, d)).T,
                "wo": w.get(a + "o_proj.weight", (d, q)).T,
                "mlp_norm": w.get(p + "post_attention_layernorm.weight", (d,)),
                "w_gate": w.get(p + "mlp.gate_proj.weight", (f, d)).T,
                "w_up": w.get(p + "mlp.up_proj.weight", (f, d)).T,
                "w_down": w.get(p + "mlp.down_proj.weight", (d, f)).T,
            }
            if cfg.qkv_bias:
                layer["bq"] = w.get(a + "q_proj.bias", (q,))
                layer["bk"] = w.get(a + "k_proj.bias", (kv,))
                layer["bv"] = w.get(a + "v_proj.bias", (kv,))
            if cfg.o_bias:
                layer["bo"] = w.get(a + "o_proj.bias", (d,))
            layers.append(layer)
        embed = w.get("model.embed_tokens.weight", (v, d))
        head = None if cfg.tie_embeddings else w.get("lm_head.weight", (v, d)).T
        return assemble_params(cfg, embed, layers, w.get("model.norm.weight", (d,)), head)
    finally:
        w.close()


def _token_text(value: Any) -> str | None:
    if isinstance(value, dict):
        value = value.get("content")
    return value if isinstance(value, str) else None


def _chat_template(directory: Path, tok_cfg: dict[str, Any]) -> str | None:
    jinja = directory / "chat_template.jinja"
    if jinja.is_file():
        return jinja.read_text(encoding="utf-8")
    template: Any = tok_cfg.get("chat_template")
    side = directory / "chat_template.json"
    if template is None and side.is_file():
        template = _read_json(side).get("chat_template")
    if isinstance(template, list):  # [{"name": "default", "template": ...}, ...]
        named = {t.get("name"): t.get("template") for t in template if isinstance(t, dict)}
        template = named.get("default")
    return template if isinstance(template, str) else None


def load_hf_tokenizer(directory: str | Path) -> Tokenizer:
    """The tokenizer of an HF directory (``tokenizer.json`` + optional configs)."""
    directory = Path(directory)
    path = directory / "tokenizer.json"
    if not path.is_file():
        raise InvalidInput(f"{directory.name}: tokenizer.json is missing")
    try:
        backend = tokenizers.Tokenizer.from_file(str(path))
    except Exception as exc:  # tokenizers raises plain Exception
        raise InvalidInput(f"tokenizer.json does not load: {str(exc).splitlines()[0][:160]}") from None
    tok_cfg_path = directory / "tokenizer_config.json"
    tok_cfg = _read_json(tok_cfg_path) if tok_cfg_path.is_file() else {}
    special_path = directory / "special_tokens_map.json"
    special = _read_json(special_path) if special_path.is_file() else {}
    bos = _token_text(tok_cfg.get("bos_token")) or _token_text(special.get("bos_token"))
    eos = _token_text(tok_cfg.get("eos_token")) or _token_text(special.get("eos_token"))
    eos_ids = set(default_eos_ids(backend, eos))
    for name in ("generation_config.json", "config.json"):
        cfg_path = directory / name
        if cfg_path.is_file():
            value = _read_json(cfg_path).get("eos_token_id")
            for i in value if isinstance(value, list) else [value]:
                if isinstance(i, int) and not isinstance(i, bool):
                    eos_ids.add(i)
    return Tokenizer(backend, chat_template=_chat_template(directory, tok_cfg), bos_token=bos, eos_token=eos, eos_ids=eos_ids)


def load_hf_config(directory: str | Path) -> LlamaConfig:
    """Only the config of an HF directory (cheap; no weights read)."""
    directory = Path(directory)
    path = directory / "config.json"
    if not path.is_file():
        raise InvalidInput(f"{directory.name}: config.json is missing")
    return config_from_hf(_read_json(path))


def load_hf_dir(directory: str | Path) -> tuple[LlamaConfig, Params, Tokenizer]:
    """Config, float32 params (canonical layout) and tokenizer of an HF directory.

    Raises:
        InvalidInput: missing files, unsupported architecture, bad weights.
    """
    directory = Path(directory)
    cfg = load_hf_config(directory)
    tokenizer = load_hf_tokenizer(directory)
    return cfg, _load_params(directory, cfg), tokenizer
