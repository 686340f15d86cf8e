"""Load LLaMA-family GGUF files (llama.cpp format) into the canonical layout.

* Architectures: ``general.architecture`` ``llama`` (LLaMA 1-3, SmolLM, Mistral
  without sliding window) and ``qwen2`` (q/k/v biases). Anything else is refused.
* Tensor types: F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0 and the K-quants
  Q2_K..Q6_K, dequantised to float32 with ``gguf.quants.dequantize``.
* llama.cpp's converter permutes LLaMA Q/K rows (and biases) for interleaved
  RoPE: within each head, rows ``[0..hd/2)`` and ``[hd/2..hd)`` are interleaved.
  :func:`unpermute_qk` restores Hugging Face's rotate-half order. Qwen2 uses
  NEOX (rotate-half) RoPE in llama.cpp and is stored unpermuted.
* GGUF tensors read as numpy ``(out, in)`` (Hugging Face orientation); the
  loader transposes them to ``(in, out)`` for ``x @ W``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from misuan.errors import InvalidInput
from misuan.models.config import LlamaConfig
from misuan.models.params import Params, assemble_params
from misuan.models.tokenizer import Tokenizer

#: GGUF architectures this loader accepts, and whether their Q/K are permuted.
GGUF_ARCHITECTURES = {"llama": True, "qwen2": False}

_TYPE_NAMES = ("F32", "F16", "BF16", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0", "Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K")
GGUF_MAGIC = b"GGUF"


def is_gguf_file(path: Path) -> bool:
    """True when ``path`` is a file starting with the GGUF magic."""
    try:
        with open(path, "rb") as fh:
            return fh.read(4) == GGUF_MAGIC
    except OSError:
        return False


def permute_qk(w: np.ndarray, n_heads: int) -> np.ndarray:
    """llama.cpp's ``permute``: HF rotate-half rows -> interleaved rows (per head)."""
    hd = w.shape[0] // n_heads
    return w.reshape(n_heads, 2, hd // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)  # (H*hd, ...)


def unpermute_qk(w: np.ndarray, n_heads: int) -> np.ndarray:
    """Inverse of :func:`permute_qk`: interleaved rows -> HF rotate-half rows."""
    hd = w.shape[0] // n_heads
    return w.reshape(n_heads, hd // 2, 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)  # (H*hd, ...)


def _field_value(field: Any) -> Any:
    """Decode a ``gguf.ReaderField`` into Python values (independent of gguf-py version)."""
    from gguf import GGUFValueType

    def scalar(part: np.ndarray, vtype: Any) -> Any:
        if vtype == GGUFValueType.STRING:
            return bytes(part).decode("utf-8", errors="replace")
        return part.tolist()[0]

    if not field.types:
        return None
    if field.types[0] == GGUFValueType.ARRAY:
        sub = field.types[-1]
        if sub == GGUFValueType.ARRAY:
            return None  # nested arrays are not used by anything we read
        return [scalar(field.parts[i], sub) for i in field.data]
    return scalar(field.parts[field.data[0]], field.types[0])


def _open(path: Path) -> Any:
    from gguf import GGUFReader

    if not path.is_file():
        raise InvalidInput(f"{path.name}: no such file")
    if not is_gguf_file(path):
        raise InvalidInput(f"{path.name}: not a GGUF file (bad magic)")
    try:
        return GGUFReader(str(path), "r")
    except Exception as exc:  # gguf-py raises ValueError/struct.error/IndexError/... on corrupt files
        reason = (str(exc).splitlines() or [""])[0][:160]
        raise InvalidInput(f"{path.name}: corrupt or unsupported GGUF file ({type(exc).__name__}: {reason})") from None


def read_metadata(reader: Any) -> dict[str, Any]:
    """All key/values of an open reader as Python values."""
    return {name: _field_value(field) for name, field in reader.fields.items()}


def _require(meta: dict[str, Any], key: str, default: Any = None) -> Any:
    value = meta.get(key, default)
    if value is None:
        raise InvalidInput(f"GGUF metadata key {key} is missing")
    return value


def config_from_gguf_metadata(meta: dict[str, Any], *, vocab_size: int, tied: bool) -> LlamaConfig:
    """The :class:`LlamaConfig` described by ``{arch}.*`` keys.

    Raises:
        InvalidInput: unsupported architecture or feature, or missing keys.
    """
    arch = meta.get("general.architecture")
    if arch not in GGUF_ARCHITECTURES:
        raise InvalidInput(f"unsupported GGUF architecture {arch!r} (supported: {', '.join(GGUF_ARCHITECTURES)})")
    scaling = meta.get(f"{arch}.rope.scaling.type")
    if scaling not in (None, "none"):
        raise InvalidInput(f"GGUF model uses RoPE scaling {scaling!r}, which is not supported")
    if meta.get(f"{arch}.expert_count"):
        raise InvalidInput("mixture-of-experts GGUF models are not supported")
    dim = int(_require(meta, f"{arch}.embedding_length"))
    n_heads = int(_require(meta, f"{arch}.attention.head_count"))
    head_dim = int(meta.get(f"{arch}.attention.key_length") or dim // n_heads)
    rot = meta.get(f"{arch}.rope.dimension_count")
    if rot is not None and int(rot) != head_dim:
        raise InvalidInput(f"GGUF model uses partial RoPE ({rot} of {head_dim} dims), which is not supported")
    return LlamaConfig(
        vocab_size=int(meta.get(f"{arch}.vocab_size") or vocab_size),
        dim=dim,
        n_layers=int(_require(meta, f"{arch}.block_count")),
        n_heads=n_heads,
        n_kv_heads=int(meta.get(f"{arch}.attention.head_count_kv") or n_heads),
        head_dim=head_dim,
        hidden_dim=int(_require(meta, f"{arch}.feed_forward_length")),
        norm_eps=float(meta.get(f"{arch}.attention.layer_norm_rms_epsilon", 1e-5)),
        rope_theta=float(meta.get(f"{arch}.rope.freq_base", 10000.0)),
        max_seq_len=int(meta.get(f"{arch}.context_length", 2048)),
        tie_embeddings=tied,
        qkv_bias=False,  # set by the caller from the tensors present
        family=arch,
    )


def _dequantize(tensor: Any) -> np.ndarray:
    from gguf.quants import dequantize

    qtype = tensor.tensor_type
    if qtype.name not in _TYPE_NAMES:
        raise InvalidInput(f"GGUF tensor {tensor.name} has unsupported type {qtype.name}")
    shape = tuple(int(n) for n in reversed(tensor.shape.tolist()))  # ggml ne is (in, out) -> numpy (out, in)
    try:
        values = dequantize(np.asarray(tensor.data), qtype)
    except Exception as exc:
        raise InvalidInput(f"GGUF tensor {tensor.name} could not be decoded ({type(exc).__name__})") from None
    values = np.asarray(values, dtype=np.float32)
    if values.size != int(np.prod(shape)):
        raise InvalidInput(f"GGUF tensor {tensor.name} has {values.size} values, expected shape {shape}")
    return values.reshape(shape)


def _public(path: Path, reader: Any) -> tuple[LlamaConfig, Tokenizer, dict[str, Any]]:
    from misuan.models.gguf_tokenizer import tokenizer_from_gguf_metadata

    meta = read_metadata(reader)
    tensors = {t.name: t for t in reader.tensors}
    if "token_embd.weight" not in tensors:
        raise InvalidInput(f"{path.name}: GGUF file has no token_embd.weight tensor")
    if "rope_freqs.weight" in tensors:
        raise InvalidInput("GGUF model uses RoPE frequency factors (Llama 3.1 scaling), which is not supported")
    vocab = int(tensors["token_embd.weight"].shape[-1])
    cfg = config_from_gguf_metadata(meta, vocab_size=vocab, tied="output.weight" not in tensors)
    biases = {"qkv_bias": "blk.0.attn_q.bias" in tensors, "o_bias": "blk.0.attn_output.bias" in tensors}
    cfg = LlamaConfig(**{**cfg.to_dict(), **biases})
    return cfg, tokenizer_from_gguf_metadata(meta), tensors


def load_gguf_public(path: str | Path) -> tuple[LlamaConfig, Tokenizer]:
    """Only the public part of a GGUF file (config + tokenizer); no weights are decoded."""
    path = Path(path)
    cfg, tokenizer, _ = _public(path, _open(path))
    return cfg, tokenizer


def load_gguf(path: str | Path) -> tuple[LlamaConfig, Params, Tokenizer]:
    """Read a GGUF file: config, float32 params (canonical layout) and tokenizer.

    Raises:
        InvalidInput: not a GGUF file, corrupt, or an unsupported architecture/type.
    """
    path = Path(path)
    cfg, tokenizer, tensors = _public(path, _open(path))
    permuted = GGUF_ARCHITECTURES[cfg.family]

    def get(name: str) -> np.ndarray:
        if name not in tensors:
            raise InvalidInput(f"{path.name}: GGUF tensor {name} is missing")
        return _dequantize(tensors[name])

    def qk(name: str, heads: int) -> np.ndarray:
        w = get(name)
        if w.shape[0] != heads * cfg.head_dim:
            raise InvalidInput(f"{path.name}: GGUF tensor {name} has {w.shape[0]} rows, expected {heads * cfg.head_dim}")
        return unpermute_qk(w, heads) if permuted else w

    layers = []
    for i in range(cfg.n_layers):
        p = f"blk.{i}."
        layer = {
            "attn_norm": get(p + "attn_norm.weight"),
            "wq": qk(p + "attn_q.weight", cfg.n_heads).T,
            "wk": qk(p + "attn_k.weight", cfg.n_kv_heads).T,
            "wv": get(p + "attn_v.weight").T,
            "wo": get(p + "attn_output.weight").T,
            "mlp_norm": get(p + "ffn_norm.weight"),
            "w_gate": get(p + "ffn_gate.weight").T,
            "w_up": get(p + "ffn_up.weight").T,
            "w_down": get(p + "ffn_down.weight").T,
        }
        if cfg.qkv_bias:
            layer["bq"] = qk(p + "attn_q.bias", cfg.n_heads)
            layer["bk"] = qk(p + "attn_k.bias", cfg.n_kv_heads)
            layer["bv"] = get(p + "attn_v.bias")
        if cfg.o_bias:
            layer["bo"] = get(p + "attn_output.bias")
        layers.append(layer)
    embed = get("token_embd.weight")  # (V, D)
    head = None if cfg.tie_embeddings else get("output.weight").T  # (D, V)
    params = assemble_params(cfg, embed, layers, get("output_norm.weight"), head)
    return cfg, params, tokenizer
