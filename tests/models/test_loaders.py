"""Both loaders against transformers' LlamaForCausalLM / Qwen2ForCausalLM (independent reference)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from misuan.errors import InvalidInput
from misuan.models import PlainLlama, load_model
from misuan.models.gguf_loader import permute_qk, unpermute_qk
from tests.models.tinymodels import make_llama, reference_logits, save_hf, write_gguf

F32_TOL = 1e-4


def engine_logits(path: Path, ids: list[int]) -> np.ndarray:
    cfg, params, _ = load_model(path)
    return PlainLlama(cfg, params).logits(ids)


def max_err(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.max(np.abs(a - b)))


def test_reference_logits_are_not_trivial(tiny_llama, sample_ids):
    ref = reference_logits(tiny_llama, sample_ids)
    assert ref.std() > 1.0  # O(1) logits, so a 1e-4 tolerance is meaningful


def test_hf_dir_matches_transformers(tiny_llama, tiny_llama_hf, sample_ids):
    cfg, params, tok = load_model(tiny_llama_hf)
    assert (cfg.n_heads, cfg.n_kv_heads, cfg.head_dim, cfg.tie_embeddings) == (4, 2, 16, False)
    assert params["layers"][0]["wq"].shape == (64, 64) and params["layers"][0]["wk"].shape == (64, 32)
    assert params["lm_head"].shape == (64, cfg.vocab_size)
    err = max_err(PlainLlama(cfg, params).logits(sample_ids), reference_logits(tiny_llama, sample_ids))
    assert err < F32_TOL


def test_gguf_f32_matches_transformers(tiny_llama, tiny_llama_gguf, sample_ids):
    cfg, _, _ = load_model(tiny_llama_gguf)
    assert cfg.family == "llama" and not cfg.tie_embeddings
    err = max_err(engine_logits(tiny_llama_gguf, sample_ids), reference_logits(tiny_llama, sample_ids))
    assert err < F32_TOL


def test_gguf_and_hf_params_identical(tiny_llama_hf, tiny_llama_gguf):
    from misuan.models.params import flatten_params

    cfg_h, p_h, _ = load_model(tiny_llama_hf)
    cfg_g, p_g, _ = load_model(tiny_llama_gguf)
    for (n1, a), (n2, b) in zip(flatten_params(p_h, cfg_h), flatten_params(p_g, cfg_g), strict=False):
        assert n1 == n2
        np.testing.assert_array_equal(a, b, err_msg=n1)


def test_gguf_without_llama_cpp_permutation_is_detected(tiny_llama, gguf_factory, sample_ids):
    """A file whose Q/K were NOT permuted must give wrong logits: the check has teeth."""
    path = gguf_factory(tiny_llama, permute=False)
    err = max_err(engine_logits(path, sample_ids), reference_logits(tiny_llama, sample_ids))
    assert err > 100 * F32_TOL


def test_permutation_roundtrip():
    w = np.arange(8 * 16 * 3, dtype=np.float32).reshape(8 * 16, 3)
    p = permute_qk(w, 8)
    assert not np.array_equal(p, w)
    np.testing.assert_array_equal(unpermute_qk(p, 8), w)
    # interleaved pairs (2i, 2i+1) come from rotate-half rows (i, i + hd/2) of the same head
    hd = 16
    np.testing.assert_array_equal(p[0], w[0])
    np.testing.assert_array_equal(p[1], w[hd // 2])
    np.testing.assert_array_equal(p[hd + 2], w[hd + 1])


@pytest.mark.parametrize("qtype,tol", [("F16", 2e-2), ("Q8_0", 0.25)])
def test_gguf_quantised_close_to_transformers(tiny_llama, gguf_factory, sample_ids, qtype, tol):
    path = gguf_factory(tiny_llama, qtype=qtype)
    ours = engine_logits(path, sample_ids)
    ref = reference_logits(tiny_llama, sample_ids)
    assert max_err(ours, ref) < tol
    assert np.mean(ours.argmax(-1) == ref.argmax(-1)) >= 0.9


def test_gguf_q4_runs_and_tracks_reference(tiny_llama, gguf_factory, sample_ids):
    ref = reference_logits(tiny_llama, sample_ids)
    for qtype in ("Q4_0", "Q4_1"):
        ours = engine_logits(gguf_factory(tiny_llama, qtype=qtype), sample_ids)
        corr = np.corrcoef(ours.ravel(), ref.ravel())[0, 1]
        assert corr > 0.95, qtype


def test_tied_llama_gguf_and_hf(tmp_path, sample_ids):
    model = make_llama(seed=3, tie=True)
    ref = reference_logits(model, sample_ids)
    for path in (save_hf(tmp_path / "hf", model), write_gguf(tmp_path / "t.gguf", model)):
        cfg, params, _ = load_model(path)
        assert cfg.tie_embeddings
        np.testing.assert_array_equal(params["lm_head"], params["embed"].T)
        assert max_err(PlainLlama(cfg, params).logits(sample_ids), ref) < F32_TOL


def test_qwen2_with_biases_hf_and_gguf(tiny_qwen2, tmp_path, sample_ids):
    ref = reference_logits(tiny_qwen2, sample_ids)
    for path in (save_hf(tmp_path / "hf", tiny_qwen2), write_gguf(tmp_path / "q.gguf", tiny_qwen2, arch="qwen2")):
        cfg, params, _ = load_model(path)
        assert cfg.family == "qwen2" and cfg.qkv_bias and cfg.tie_embeddings and cfg.n_kv_heads == 1
        assert np.abs(params["layers"][0]["bq"]).max() > 0
        assert max_err(PlainLlama(cfg, params).logits(sample_ids), ref) < F32_TOL


def test_sharded_safetensors(tiny_llama, tmp_path, sample_ids):
    tiny_llama.save_pretrained(str(tmp_path), max_shard_size="100KB")
    from tests.models.tinymodels import write_hf_tokenizer

    write_hf_tokenizer(tmp_path)
    assert (tmp_path / "model.safetensors.index.json").is_file()
    assert len(list(tmp_path.glob("*.safetensors"))) > 1
    err = max_err(engine_logits(tmp_path, sample_ids), reference_logits(tiny_llama, sample_ids))
    assert err < F32_TOL


def test_directory_with_one_gguf(tiny_llama_gguf, tmp_path):
    shutil.copy(tiny_llama_gguf, tmp_path / "m.gguf")
    cfg, _, _ = load_model(tmp_path)
    assert cfg.n_layers == 2


# --- refusals: one-line InvalidInput -------------------------------------------------------


def assert_one_line(exc: pytest.ExceptionInfo, *needles: str) -> None:
    msg = str(exc.value)
    assert "\n" not in msg and len(msg) < 300, msg
    for needle in needles:
        assert needle in msg, msg


@pytest.mark.parametrize("arch", ["GPT2LMHeadModel", "BertModel", "Phi3ForCausalLM", "GemmaForCausalLM"])
def test_refuses_unsupported_hf_architecture(tiny_llama_hf, tmp_path, arch):
    d = tmp_path / "m"
    shutil.copytree(tiny_llama_hf, d)
    raw = json.loads((d / "config.json").read_text())
    raw["architectures"] = [arch]
    (d / "config.json").write_text(json.dumps(raw))
    with pytest.raises(InvalidInput) as exc:
        load_model(d)
    assert_one_line(exc, arch)


@pytest.mark.parametrize("arch", ["gpt2", "phi3", "gemma"])
def test_refuses_unsupported_gguf_architecture(tiny_llama, gguf_factory, arch):
    path = gguf_factory(tiny_llama, arch=arch, permute=False)
    with pytest.raises(InvalidInput) as exc:
        load_model(path)
    assert_one_line(exc, repr(arch))


def test_refuses_rope_scaling(tiny_llama_hf, tmp_path):
    d = tmp_path / "m"
    shutil.copytree(tiny_llama_hf, d)
    raw = json.loads((d / "config.json").read_text())
    raw["rope_scaling"] = {"rope_type": "llama3", "factor": 8.0}
    (d / "config.json").write_text(json.dumps(raw))
    with pytest.raises(InvalidInput) as exc:
        load_model(d)
    assert_one_line(exc, "RoPE scaling")


def test_refuses_garbage_file(tmp_path):
    bad = tmp_path / "model.gguf"
    bad.write_bytes(b"\x00" * 64)
    with pytest.raises(InvalidInput) as exc:
        load_model(bad)
    assert_one_line(exc, "model.gguf")


def test_refuses_truncated_gguf(tiny_llama_gguf, tmp_path):
    data = tiny_llama_gguf.read_bytes()
    for cut in (10, 300, len(data) // 2):
        bad = tmp_path / f"cut{cut}.gguf"
        bad.write_bytes(data[:cut])
        with pytest.raises(InvalidInput) as exc:
            load_model(bad)
        assert_one_line(exc, bad.name)


def test_refuses_corrupt_safetensors(tiny_llama_hf, tmp_path):
    d = tmp_path / "m"
    shutil.copytree(tiny_llama_hf, d)
    data = (d / "model.safetensors").read_bytes()
    (d / "model.safetensors").write_bytes(data[: len(data) // 3])
    with pytest.raises(InvalidInput) as exc:
        load_model(d)
    assert_one_line(exc, "safetensors")


def test_refuses_missing_tensor(tiny_llama_hf, tmp_path):
    from safetensors.numpy import load_file, save_file

    d = tmp_path / "m"
    shutil.copytree(tiny_llama_hf, d)
    tensors = load_file(str(d / "model.safetensors"))
    del tensors["model.layers.1.mlp.up_proj.weight"]
    save_file(tensors, str(d / "model.safetensors"))
    with pytest.raises(InvalidInput) as exc:
        load_model(d)
    assert_one_line(exc, "model.layers.1.mlp.up_proj.weight")


def test_refuses_missing_path(tmp_path):
    with pytest.raises(InvalidInput) as exc:
        load_model(tmp_path / "nope")
    assert_one_line(exc, "nope")


def test_load_public_matches_full_load(tiny_llama_hf, tiny_llama_gguf):
    from misuan.models import load_public

    for path in (tiny_llama_hf, tiny_llama_gguf):
        cfg, tok = load_public(path)
        full_cfg, _, full_tok = load_model(path)
        assert cfg == full_cfg
        assert tok.to_json() == full_tok.to_json()


def test_refuses_inconsistent_head_count(tiny_llama, gguf_factory, tmp_path):
    """A header that disagrees with the tensors is a one-line InvalidInput, not a numpy error."""
    path = gguf_factory(tiny_llama)
    data = bytearray(path.read_bytes())
    key = b"llama.attention.head_count_kv"
    at = data.index(key) + len(key)  # then: u32 value type, u32 value
    assert int.from_bytes(data[at + 4 : at + 8], "little") == 2
    data[at + 4 : at + 8] = (4).to_bytes(4, "little")
    bad = tmp_path / "heads.gguf"
    bad.write_bytes(bytes(data))
    with pytest.raises(InvalidInput) as exc:
        load_model(bad)
    assert_one_line(exc, "heads.gguf", "attn_k")
