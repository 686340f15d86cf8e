"""Build a :class:`~misuan.models.tokenizer.Tokenizer` from GGUF metadata.

Supported: ``tokenizer.ggml.model == "gpt2"`` (byte-level BPE: SmolLM, Llama 3,
Qwen2, GPT-2 style) with the pre-tokenizers llama.cpp names ``default``/``gpt-2``,
``smollm``/``starcoder``/``refact``/``codeshell`` (digits split first),
``llama-bpe``/``llama3``/``smaug-bpe`` and ``qwen2``/``qwen2.5``; and
``"llama"`` (SentencePiece BPE with byte fallback: Llama 2, TinyLlama, Mistral),
rebuilt as Hugging Face's GGUF converter does (merges ranked by piece score).
Token types: control tokens become special added tokens, user-defined tokens
plain added tokens.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import tokenizers
from tokenizers import AddedToken, Regex, decoders, models, normalizers, pre_tokenizers, processors

from misuan.errors import InvalidInput
from misuan.models.tokenizer import Tokenizer, default_eos_ids

# llama.cpp token types
_NORMAL, _UNKNOWN, _CONTROL, _USER_DEFINED, _UNUSED, _BYTE = 1, 2, 3, 4, 5, 6

_LLAMA3_SPLIT = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}"
    r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
_QWEN2_SPLIT = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}"
    r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)


def _byte_level() -> pre_tokenizers.PreTokenizer:
    return pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=True, use_regex=True)


def _split_then_bytes(pattern: str) -> pre_tokenizers.PreTokenizer:
    return pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(pattern), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=False, use_regex=False),
        ]
    )


def _pre_tokenizer(pre: str) -> tuple[pre_tokenizers.PreTokenizer, bool]:
    """(pre-tokenizer, ignore_merges) for a llama.cpp ``tokenizer.ggml.pre`` name."""
    if pre in ("default", "gpt-2", "gpt2"):
        return _byte_level(), False
    if pre in ("smollm", "starcoder", "refact", "codeshell"):
        return pre_tokenizers.Sequence([pre_tokenizers.Digits(individual_digits=True), _byte_level()]), False
    if pre in ("llama-bpe", "llama3", "smaug-bpe"):
        return _split_then_bytes(_LLAMA3_SPLIT), True
    if pre in ("qwen2", "qwen2.5", "qwen-2.5", "deepseek-r1-qwen"):
        return _split_then_bytes(_QWEN2_SPLIT), False
    raise InvalidInput(f"GGUF tokenizer pre-tokenizer {pre!r} is not supported")


def _split_merge(merge: str) -> tuple[str, str]:
    cut = merge.find(" ", 1)  # as llama.cpp: the first space after position 0
    if cut < 0:
        raise InvalidInput("GGUF tokenizer has a malformed merge entry")
    return merge[:cut], merge[cut + 1 :]


def _vocab(tokens: list[str]) -> dict[str, int]:
    vocab: dict[str, int] = {}
    for i, token in enumerate(tokens):
        vocab.setdefault(token, i)  # first id wins on duplicates
    return vocab


def _gpt2_backend(meta: Mapping[str, Any], tokens: list[str]) -> tokenizers.Tokenizer:
    merges = [_split_merge(m) for m in meta.get("tokenizer.ggml.merges", [])]
    pre, ignore_merges = _pre_tokenizer(str(meta.get("tokenizer.ggml.pre", "default")))
    bpe = models.BPE(vocab=_vocab(tokens), merges=merges, fuse_unk=False, byte_fallback=False, ignore_merges=ignore_merges)
    backend = tokenizers.Tokenizer(bpe)
    backend.pre_tokenizer = pre
    backend.decoder = decoders.ByteLevel()
    return backend


def _spm_merges(vocab: dict[str, int], scores: list[float]) -> list[tuple[str, str]]:
    """BPE merges implied by a SentencePiece vocab: ranked by the merged piece's score."""
    ranked = []
    for piece, idx in vocab.items():
        local = [(piece[:k], piece[k:]) for k in range(1, len(piece)) if piece[:k] in vocab and piece[k:] in vocab]
        local.sort(key=lambda lr: (vocab[lr[0]], vocab[lr[1]]))
        ranked += [(scores[idx], n, lr) for n, lr in enumerate(local)]
    ranked.sort(key=lambda item: -item[0])  # stable: ties keep vocab order
    return [lr for _, _, lr in ranked]


def _spm_backend(meta: Mapping[str, Any], tokens: list[str], types: list[int]) -> tokenizers.Tokenizer:
    scores = [float(s) for s in meta.get("tokenizer.ggml.scores", [0.0] * len(tokens))]
    if len(scores) != len(tokens):
        raise InvalidInput("GGUF tokenizer scores and tokens differ in length")
    vocab = _vocab(tokens)
    unk_id = int(meta.get("tokenizer.ggml.unknown_token_id", 0))
    unk = tokens[unk_id] if 0 <= unk_id < len(tokens) else None
    # byte tokens and control tokens take no part in merges
    mergeable = {t: i for t, i in vocab.items() if types[i] in (_NORMAL, _USER_DEFINED, _UNUSED)}
    backend = tokenizers.Tokenizer(
        models.BPE(vocab=vocab, merges=_spm_merges(mergeable, scores), unk_token=unk, fuse_unk=True, byte_fallback=True)
    )
    prefix = bool(meta.get("tokenizer.ggml.add_space_prefix", True))
    steps = ([normalizers.Prepend("▁")] if prefix else []) + [normalizers.Replace(" ", "▁")]
    backend.normalizer = normalizers.Sequence(steps)
    backend.pre_tokenizer = None
    tail = [decoders.Strip(content=" ", left=1, right=0)] if prefix else []
    backend.decoder = decoders.Sequence([decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse()] + tail)
    return backend


def _token_at(tokens: list[str], meta: Mapping[str, Any], key: str) -> tuple[int | None, str | None]:
    value = meta.get(key)
    if value is None:
        return None, None
    idx = int(value)
    if not 0 <= idx < len(tokens):
        raise InvalidInput(f"GGUF tokenizer: {key} {idx} is outside the vocabulary")
    return idx, tokens[idx]


def tokenizer_from_gguf_metadata(meta: Mapping[str, Any]) -> Tokenizer:
    """Build the tokenizer from decoded GGUF key/values (``tokenizer.*`` keys).

    Raises:
        InvalidInput: missing/unsupported tokenizer metadata.
    """
    kind = meta.get("tokenizer.ggml.model")
    tokens = meta.get("tokenizer.ggml.tokens")
    if not kind or not isinstance(tokens, list) or not tokens:
        raise InvalidInput("GGUF file has no tokenizer (tokenizer.ggml.model / tokens missing)")
    tokens = [str(t) for t in tokens]
    types = [int(t) for t in meta.get("tokenizer.ggml.token_type", [_NORMAL] * len(tokens))]
    if len(types) != len(tokens):
        raise InvalidInput("GGUF tokenizer token_type and tokens differ in length")
    if kind == "gpt2":
        backend = _gpt2_backend(meta, tokens)
        default_add_bos = False
    elif kind == "llama":
        backend = _spm_backend(meta, tokens, types)
        default_add_bos = True
    else:
        raise InvalidInput(f"GGUF tokenizer model {kind!r} is not supported (supported: gpt2, llama)")

    added = [
        AddedToken(tok, special=(ty == _CONTROL), normalized=False)
        for tok, ty in zip(tokens, types, strict=False)
        if ty in (_CONTROL, _USER_DEFINED)
    ]
    backend.add_special_tokens([a for a in added if a.special])
    backend.add_tokens([a for a in added if not a.special])

    bos_id, bos = _token_at(tokens, meta, "tokenizer.ggml.bos_token_id")
    eos_id, eos = _token_at(tokens, meta, "tokenizer.ggml.eos_token_id")
    add_bos = bool(meta.get("tokenizer.ggml.add_bos_token", default_add_bos)) and bos is not None
    add_eos = bool(meta.get("tokenizer.ggml.add_eos_token", False)) and eos is not None
    if add_bos or add_eos:
        first = ([bos] if add_bos else []) + ["$A"] + ([eos] if add_eos else [])
        second = ([f"{bos}:1"] if add_bos else []) + ["$B:1"] + ([f"{eos}:1"] if add_eos else [])
        special = ([(bos, bos_id)] if add_bos else []) + ([(eos, eos_id)] if add_eos and eos != bos else [])
        backend.post_processor = processors.TemplateProcessing(
            single=" ".join(first), pair=" ".join(first + second), special_tokens=special
        )

    eos_ids = set(default_eos_ids(backend, eos))
    for key in ("tokenizer.ggml.eos_token_id", "tokenizer.ggml.eot_token_id", "tokenizer.ggml.eom_token_id"):
        idx, _ = _token_at(tokens, meta, key)
        if idx is not None:
            eos_ids.add(idx)
    template = meta.get("tokenizer.chat_template")
    return Tokenizer(
        backend,
        chat_template=template if isinstance(template, str) else None,
        bos_token=bos,
        eos_token=eos,
        eos_ids=eos_ids,
    )
