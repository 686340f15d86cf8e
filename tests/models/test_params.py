"""Canonical params: named tensor list <-> pytree, public config JSON."""

from __future__ import annotations

import json

import numpy as np
import pytest

from misuan.errors import InvalidInput
from misuan.models import LlamaConfig, load_model
from misuan.models.params import flatten_params, param_count, param_shapes, unflatten_params

CFG = LlamaConfig(vocab_size=11, dim=8, n_layers=2, n_heads=4, n_kv_heads=2, head_dim=2, hidden_dim=12, qkv_bias=True)


def random_params(cfg: LlamaConfig, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    return unflatten_params([(n, rng.standard_normal(s).astype(np.float32)) for n, s in param_shapes(cfg)], cfg)


def test_flat_order_is_stable_and_documented():
    names = [n for n, _ in flatten_params(random_params(CFG), CFG)]
    assert names[0] == "embed" and names[-2:] == ["norm", "lm_head"]
    assert names[1:12] == [
        "layers.0.attn_norm",
        "layers.0.wq",
        "layers.0.wk",
        "layers.0.wv",
        "layers.0.bq",
        "layers.0.bk",
        "layers.0.bv",
        "layers.0.wo",
        "layers.0.mlp_norm",
        "layers.0.w_gate",
        "layers.0.w_up",
    ]
    assert names == [n for n, _ in flatten_params(random_params(CFG, seed=5), CFG)]
    assert dict(param_shapes(CFG))["layers.1.wk"] == (8, 4)
    assert dict(param_shapes(CFG))["lm_head"] == (8, 11)


def test_roundtrip_exact():
    params = random_params(CFG)
    flat = flatten_params(params, CFG)
    assert all(a.dtype == np.float32 for _, a in flat)
    back = unflatten_params(list(reversed(flat)), CFG)  # any order
    for (n1, a), (n2, b) in zip(flat, flatten_params(back, CFG), strict=False):
        assert n1 == n2
        np.testing.assert_array_equal(a, b)
    assert sum(a.size for _, a in flat) == param_count(CFG)


def test_roundtrip_real_loader_output(tiny_llama_hf):
    cfg, params, _ = load_model(tiny_llama_hf)
    flat = flatten_params(params, cfg)
    back = unflatten_params(dict(flat), cfg)
    np.testing.assert_array_equal(back["layers"][1]["w_down"], params["layers"][1]["w_down"])
    assert set(back["layers"][0]) == set(params["layers"][0])


def test_unflatten_rejects_bad_input():
    flat = flatten_params(random_params(CFG), CFG)
    with pytest.raises(InvalidInput, match="missing tensor layers.1.w_up"):
        unflatten_params([x for x in flat if x[0] != "layers.1.w_up"], CFG)
    with pytest.raises(InvalidInput, match="shape"):
        unflatten_params([(n, a.T if n == "layers.0.wk" else a) for n, a in flat], CFG)
    with pytest.raises(InvalidInput, match="unknown"):
        unflatten_params(flat + [("layers.9.wq", flat[1][1])], CFG)
    with pytest.raises(InvalidInput, match="duplicate"):
        unflatten_params(flat + [flat[0]], CFG)


def test_config_json_roundtrip():
    text = json.dumps(CFG.to_dict())
    back = LlamaConfig.from_dict(json.loads(text))
    assert back == CFG and hash(back) == hash(CFG)
    raw = CFG.to_dict() | {"rope_theta": 10000}
    assert isinstance(LlamaConfig.from_dict(raw).rope_theta, float)


@pytest.mark.parametrize(
    "change",
    [
        {"dim": 0},
        {"n_kv_heads": 3},
        {"head_dim": 3},
        {"family": "gpt2"},
        {"evil": 1},
        {"norm_eps": "x"},
        {"qkv_bias": 1},
    ],
)
def test_config_validation(change):
    with pytest.raises(InvalidInput):
        LlamaConfig.from_dict(CFG.to_dict() | change)


def test_config_missing_key():
    raw = CFG.to_dict()
    del raw["vocab_size"]
    with pytest.raises(InvalidInput, match="vocab_size"):
        LlamaConfig.from_dict(raw)
