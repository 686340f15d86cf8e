"""Tokenizer wrapper: GGUF-built vs tokenizer.json, chat templates, streaming, JSON form."""

from __future__ import annotations

import json

import pytest

from misuan.errors import InvalidInput
from misuan.models import StreamDecoder, Tokenizer
from misuan.models.gguf_loader import _open, read_metadata
from misuan.models.gguf_tokenizer import tokenizer_from_gguf_metadata
from misuan.models.hf_loader import load_hf_tokenizer

TEXTS = [
    "Hello world",
    "the theory of the thing",
    "  leading spaces\tand\ttabs\n\nnew lines",
    "Numbers 12345 and 3.14159, dates 2024-01-31",
    "Unicode: 密算 café naïve — “quotes” 🙂🚀",
    "<|im_start|>user\nhi<|im_end|>\n",
    "",
]


@pytest.fixture(scope="module")
def tiny_gguf_tok(tiny_llama_gguf) -> Tokenizer:
    return tokenizer_from_gguf_metadata(read_metadata(_open(tiny_llama_gguf)))


@pytest.fixture(scope="module")
def smol_tok(smollm2_path) -> Tokenizer:
    return tokenizer_from_gguf_metadata(read_metadata(_open(smollm2_path)))


def test_gguf_built_equals_tokenizer_json(tiny_gguf_tok, tiny_llama_hf):
    hf = load_hf_tokenizer(tiny_llama_hf)
    for text in TEXTS:
        assert tiny_gguf_tok.encode(text) == hf.encode(text), text
    assert tiny_gguf_tok.encode(" the") == [258]  # merges applied: Ġ t -> Ġt, Ġt he -> Ġthe
    assert tiny_gguf_tok.encode("<|im_end|>") == [261]  # control token is atomic


def test_tiny_roundtrip_and_specials(tiny_gguf_tok):
    for text in TEXTS:
        ids = tiny_gguf_tok.encode(text)
        assert tiny_gguf_tok.decode(ids, skip_special_tokens=False) == text
    assert tiny_gguf_tok.decode(tiny_gguf_tok.encode("<|im_start|>a<|im_end|>")) == "a"
    assert 261 in tiny_gguf_tok.eos_ids and 259 in tiny_gguf_tok.eos_ids  # <|im_end|>, <|endoftext|>
    assert tiny_gguf_tok.bos_token == "<|im_start|>" and tiny_gguf_tok.eos_token == "<|im_end|>"


def test_tiny_chat_template_hf_semantics(tiny_gguf_tok):
    msgs = [{"role": "user", "content": "hi"}]
    assert tiny_gguf_tok.apply_chat_template(msgs) == (
        "<|im_start|>system\nYou are tiny.<|im_end|>\n<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"
    )
    with_system = [{"role": "system", "content": "S"}] + msgs
    assert tiny_gguf_tok.apply_chat_template(with_system, add_generation_prompt=False) == (
        "<|im_start|>system\nS<|im_end|>\n<|im_start|>user\nhi<|im_end|>\n"
    )
    ids = tiny_gguf_tok.encode_chat(msgs)
    assert ids[0] == 260 and ids.count(261) == 2


def test_chat_template_is_sandboxed_and_errors_are_one_line():
    backend = Tokenizer.from_json(json.dumps(_tiny_json())).backend
    evil = Tokenizer(backend, chat_template="{{ messages.__class__.__mro__[1].__subclasses__() }}")
    with pytest.raises(InvalidInput) as exc:
        evil.apply_chat_template([{"role": "user", "content": "x"}])
    assert "\n" not in str(exc.value)
    raising = Tokenizer(backend, chat_template="{{ raise_exception('only user turns') }}")
    with pytest.raises(InvalidInput, match="only user turns"):
        raising.apply_chat_template([{"role": "user", "content": "x"}])
    with pytest.raises(InvalidInput):
        Tokenizer(backend, chat_template="{% for %}").apply_chat_template([{"role": "user", "content": "x"}])
    with pytest.raises(InvalidInput, match="no chat template"):
        Tokenizer(backend).apply_chat_template([{"role": "user", "content": "x"}])
    with pytest.raises(InvalidInput):
        Tokenizer(backend, chat_template="x").apply_chat_template([{"role": "user", "content": 3}])


def _tiny_json() -> dict:
    from tokenizers import Tokenizer as Backend
    from tokenizers import models

    return {"format": "misuan.tokenizer/1", "tokenizer": json.loads(Backend(models.BPE()).to_str())}


def test_json_roundtrip(tiny_gguf_tok):
    text = tiny_gguf_tok.to_json()
    assert isinstance(json.loads(text), dict)
    back = Tokenizer.from_json(text)
    for t in TEXTS:
        assert back.encode(t) == tiny_gguf_tok.encode(t)
    assert back.chat_template == tiny_gguf_tok.chat_template
    assert back.eos_ids == tiny_gguf_tok.eos_ids and back.stop_strings == tiny_gguf_tok.stop_strings
    assert back.apply_chat_template([{"role": "user", "content": "x"}]) == tiny_gguf_tok.apply_chat_template(
        [{"role": "user", "content": "x"}]
    )


@pytest.mark.parametrize(
    "bad",
    [
        "not json",
        "[]",
        '{"format": "other"}',
        '{"format": "misuan.tokenizer/1"}',
        '{"format": "misuan.tokenizer/1", "tokenizer": {"model": 5}}',
    ],
)
def test_from_json_rejects(bad):
    with pytest.raises(InvalidInput) as exc:
        Tokenizer.from_json(bad)
    assert "\n" not in str(exc.value)


def _stream(tok: Tokenizer, ids: list[int], stops=()) -> tuple[list[str], StreamDecoder]:
    dec = tok.stream_decoder(stops)
    deltas = [dec.push(i) for i in ids]
    deltas.append(dec.finish())
    return deltas, dec


def test_stream_decoder_never_splits_utf8(tiny_gguf_tok):
    text = "密算 🙂 café"
    ids = tiny_gguf_tok.encode(text)
    assert len(ids) > len(text)  # multi-byte characters span several byte tokens
    deltas, dec = _stream(tiny_gguf_tok, ids)
    assert all("\ufffd" not in d for d in deltas)
    assert "".join(deltas) == text == dec.text
    assert deltas.count("") >= 3  # held back until characters were complete


def test_stream_decoder_stop_strings(tiny_gguf_tok):
    ids = tiny_gguf_tok.encode("one two STOP three")
    deltas, dec = _stream(tiny_gguf_tok, ids, stops=["STOP"])
    assert "".join(deltas) == "one two " and dec.stopped
    assert all("S" not in d for d in deltas)
    # a partial stop string that never completes is released at the end
    deltas, dec = _stream(tiny_gguf_tok, tiny_gguf_tok.encode("one two STO"), stops=["STOP"])
    assert "".join(deltas) == "one two STO" and not dec.stopped
    assert dec.push(5) == ""  # nothing after stop/finish


# --- SmolLM2 (bundled GGUF) ------------------------------------------------------------------


def test_smollm2_chat_template(smol_tok):
    prompt = smol_tok.apply_chat_template([{"role": "user", "content": "What is the capital of France?"}])
    assert prompt == (
        "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n"
        "<|im_start|>user\nWhat is the capital of France?<|im_end|>\n<|im_start|>assistant\n"
    )
    ids = smol_tok.encode_chat([{"role": "user", "content": "Hi"}])
    assert ids[0] == smol_tok.token_to_id("<|im_start|>") == 1
    assert smol_tok.eos_ids == (0, 2)  # <|endoftext|>, <|im_end|>


def test_smollm2_roundtrip(smol_tok):
    for text in TEXTS:
        assert smol_tok.decode(smol_tok.encode(text), skip_special_tokens=False) == text
    assert len(smol_tok.encode("The capital of France is Paris.")) == 7


def test_smollm2_matches_transformers_gguf_tokenizer(smol_tok, smollm2_path):
    """transformers converts GGUF tokenizers independently; ids must agree."""
    import transformers

    ref = transformers.AutoTokenizer.from_pretrained(str(smollm2_path.parent), gguf_file=smollm2_path.name)
    for text in TEXTS + ["<|im_start|>system\nYou are SmolLM<|im_end|>\n", "x" * 50 + " 42nd street"]:
        assert smol_tok.encode(text) == ref(text, add_special_tokens=True).input_ids, text


# --- SentencePiece ("llama" tokenizer model in GGUF) vs the sentencepiece library ---------------


def test_spm_gguf_tokenizer_matches_sentencepiece():
    import io

    import sentencepiece as spm

    corpus = [
        "the quick brown fox jumps over the lazy dog",
        "hello world, this is a tokenizer test",
        "the theory of everything and the thing",
        "numbers 1234 and 56",
    ] * 40
    buf = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(corpus),
        model_writer=buf,
        vocab_size=320,
        model_type="bpe",
        byte_fallback=True,
        character_coverage=1.0,
        normalization_rule_name="identity",
        remove_extra_whitespaces=False,
        add_dummy_prefix=True,
        minloglevel=3,
    )
    sp = spm.SentencePieceProcessor(model_proto=buf.getvalue())
    n = sp.get_piece_size()
    types = [
        2 if sp.is_unknown(i) else 3 if sp.is_control(i) else 5 if sp.is_unused(i) else 6 if sp.is_byte(i) else 1 for i in range(n)
    ]  # as llama.cpp's converter labels them
    meta = {
        "tokenizer.ggml.model": "llama",
        "tokenizer.ggml.tokens": [sp.id_to_piece(i) for i in range(n)],
        "tokenizer.ggml.scores": [sp.get_score(i) for i in range(n)],
        "tokenizer.ggml.token_type": types,
        "tokenizer.ggml.bos_token_id": sp.bos_id(),
        "tokenizer.ggml.eos_token_id": sp.eos_id(),
        "tokenizer.ggml.unknown_token_id": sp.unk_id(),
    }
    tok = tokenizer_from_gguf_metadata(meta)
    assert tok.bos_token == "<s>" and sp.eos_id() in tok.eos_ids
    texts = ["the quick brown fox", "Hello World! 密算 🙂", "  two  spaces\nand lines", "thethe theory 2024", "zebra"]
    for text in texts:
        assert tok.encode(text) == [sp.bos_id()] + sp.encode(text), text
        assert tok.decode(tok.encode(text)) == sp.decode(sp.encode(text)) == text
    ids = tok.encode("密算 🙂 done", add_special_tokens=False)
    deltas, _ = _stream(tok, ids)
    assert "".join(deltas) == "密算 🙂 done" and all("\ufffd" not in d for d in deltas)
