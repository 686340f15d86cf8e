"""Tiny random transformers models written as HF dirs and GGUF (helpers for tests/models).

The reference implementation is ``transformers`` (torch, CPU). GGUF files are
written here with ``gguf.GGUFWriter`` and this file's own copy of llama.cpp's
Q/K ``permute`` (not misuan's), so the loaders are checked independently.
"""

from __future__ import annotations

import json
from pathlib import Path

import gguf
import numpy as np
import torch
import transformers

SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
MERGES = ["Ġ t", "h e", "Ġt he"]
CHATML = (
    "{% for message in messages %}"
    "{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\nYou are tiny.<|im_end|>\n' }}{% endif %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>\n' }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


def bytes_to_unicode() -> dict[int, str]:
    """GPT-2's byte -> printable character map."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, (chr(c) for c in cs), strict=False))


def tiny_tokens() -> tuple[list[str], list[int]]:
    """Vocabulary (256 byte tokens, 3 merged, 3 control) and llama.cpp token types."""
    byte_tokens = [bytes_to_unicode()[b] for b in range(256)]
    tokens = byte_tokens + ["Ġt", "he", "Ġthe"] + SPECIALS
    types = [1] * (len(tokens) - len(SPECIALS)) + [3] * len(SPECIALS)
    return tokens, types


VOCAB = len(tiny_tokens()[0])  # 262


def write_hf_tokenizer(directory: Path) -> None:
    """tokenizer.json (built with the tokenizers API directly) + tokenizer_config.json."""
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers

    tokens, _ = tiny_tokens()
    vocab = {t: i for i, t in enumerate(tokens)}
    merges = [tuple(m.split(" ")) for m in MERGES]
    tok = Tokenizer(models.BPE(vocab=vocab, merges=merges))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens([AddedToken(s, special=True, normalized=False) for s in SPECIALS])
    tok.save(str(directory / "tokenizer.json"))
    config = {"bos_token": "<|im_start|>", "eos_token": "<|im_end|>", "chat_template": CHATML}
    (directory / "tokenizer_config.json").write_text(json.dumps(config))


def randomize(model: torch.nn.Module, seed: int, std: float = 0.15) -> None:
    """Replace transformers' tiny init by O(1) random weights (norms around 1, biases nonzero)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            noise = torch.randn(p.shape, generator=gen, dtype=p.dtype)
            if name.endswith("norm.weight"):
                p.copy_(1.0 + 0.2 * noise)
            elif name.endswith("embed_tokens.weight"):
                p.copy_(noise)
            else:
                p.copy_(std * noise)


def make_llama(seed: int = 0, tie: bool = False, **overrides: object) -> torch.nn.Module:
    """A tiny random LLaMA; ``overrides`` change ``LlamaConfig`` fields (e.g. SmolLM2's widths)."""
    fields: dict = {
        "vocab_size": VOCAB,
        "hidden_size": 64,
        "intermediate_size": 128,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "rms_norm_eps": 1e-5,
        "rope_theta": 10000.0,
        "max_position_embeddings": 128,
        "tie_word_embeddings": tie,
        "bos_token_id": 257,
        "eos_token_id": 261,
    }
    cfg = transformers.LlamaConfig(**{**fields, **overrides})
    model = transformers.LlamaForCausalLM(cfg)
    randomize(model, seed)
    return model.eval()


def make_qwen2(seed: int = 1, tie: bool = True) -> torch.nn.Module:
    cfg = transformers.Qwen2Config(
        vocab_size=VOCAB,
        hidden_size=64,
        intermediate_size=96,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=1,
        rms_norm_eps=1e-6,
        rope_theta=1000000.0,
        max_position_embeddings=128,
        tie_word_embeddings=tie,
    )
    model = transformers.Qwen2ForCausalLM(cfg)
    randomize(model, seed)
    return model.eval()


def reference_logits(model: torch.nn.Module, ids: list[int]) -> np.ndarray:
    """transformers' logits ``(T, V)`` in float32."""
    with torch.no_grad():
        return model(torch.tensor([ids])).logits[0].float().numpy()


def llama_cpp_permute(w: np.ndarray, n_head: int, n_head_kv: int | None = None) -> np.ndarray:
    """convert_hf_to_gguf.LlamaModel.permute (copied semantics, for independence)."""
    if n_head_kv is not None and n_head != n_head_kv:
        n_head = n_head_kv
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def write_gguf(
    path: Path,
    model: torch.nn.Module,
    *,
    arch: str = "llama",
    qtype: str = "F32",
    permute: bool = True,
    tokenizer_pre: str = "default",
) -> Path:
    """Write ``model`` as GGUF the way llama.cpp's converter does."""
    c = model.config
    sd = {k: v.detach().float().numpy() for k, v in model.state_dict().items()}
    n_head, n_kv = c.num_attention_heads, c.num_key_value_heads
    w = gguf.GGUFWriter(str(path), arch)
    w.add_block_count(c.num_hidden_layers)
    w.add_context_length(c.max_position_embeddings)
    w.add_embedding_length(c.hidden_size)
    w.add_feed_forward_length(c.intermediate_size)
    w.add_head_count(n_head)
    w.add_head_count_kv(n_kv)
    w.add_rope_freq_base(float(c.rope_parameters["rope_theta"]))
    w.add_layer_norm_rms_eps(float(c.rms_norm_eps))
    w.add_rope_dimension_count(c.hidden_size // n_head)
    tokens, types = tiny_tokens()
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre(tokenizer_pre)
    w.add_token_list(tokens)
    w.add_token_types(types)
    w.add_token_merges(MERGES)
    w.add_bos_token_id(tokens.index("<|im_start|>"))
    w.add_eos_token_id(tokens.index("<|im_end|>"))
    w.add_chat_template(CHATML)

    quant = getattr(gguf.GGMLQuantizationType, qtype)

    def put(name: str, arr: np.ndarray) -> None:
        arr = np.ascontiguousarray(arr, dtype=np.float32)
        if arr.ndim == 1 or qtype == "F32":
            w.add_tensor(name, arr)
        elif qtype == "F16":
            w.add_tensor(name, arr.astype(np.float16))
        else:
            w.add_tensor(name, gguf.quants.quantize(arr, quant), raw_dtype=quant)

    do_permute = permute and arch == "llama"
    put("token_embd.weight", sd["model.embed_tokens.weight"])
    for i in range(c.num_hidden_layers):
        p, b = f"model.layers.{i}.", f"blk.{i}."
        q, k = sd[p + "self_attn.q_proj.weight"], sd[p + "self_attn.k_proj.weight"]
        if do_permute:
            q, k = llama_cpp_permute(q, n_head, n_head), llama_cpp_permute(k, n_head, n_kv)
        put(b + "attn_norm.weight", sd[p + "input_layernorm.weight"])
        put(b + "attn_q.weight", q)
        put(b + "attn_k.weight", k)
        put(b + "attn_v.weight", sd[p + "self_attn.v_proj.weight"])
        put(b + "attn_output.weight", sd[p + "self_attn.o_proj.weight"])
        if p + "self_attn.q_proj.bias" in sd:
            bq, bk = sd[p + "self_attn.q_proj.bias"], sd[p + "self_attn.k_proj.bias"]
            if do_permute:
                bq, bk = llama_cpp_permute(bq, n_head, n_head), llama_cpp_permute(bk, n_head, n_kv)
            put(b + "attn_q.bias", bq)
            put(b + "attn_k.bias", bk)
            put(b + "attn_v.bias", sd[p + "self_attn.v_proj.bias"])
        put(b + "ffn_norm.weight", sd[p + "post_attention_layernorm.weight"])
        put(b + "ffn_gate.weight", sd[p + "mlp.gate_proj.weight"])
        put(b + "ffn_up.weight", sd[p + "mlp.up_proj.weight"])
        put(b + "ffn_down.weight", sd[p + "mlp.down_proj.weight"])
    put("output_norm.weight", sd["model.norm.weight"])
    if not c.tie_word_embeddings:
        put("output.weight", sd["lm_head.weight"])
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


def save_hf(directory: Path, model: torch.nn.Module) -> Path:
    model.save_pretrained(str(directory))
    write_hf_tokenizer(directory)
    return directory
