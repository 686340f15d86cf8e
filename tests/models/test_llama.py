"""The JAX model: KV cache, padding, masks, RoPE tables and swappable ops."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from misuan.errors import InvalidInput
from misuan.models import PlainLlama, load_model, plain_ops
from misuan.models import llama as L


@pytest.fixture(scope="module")
def model(tiny_llama_hf):
    cfg, params, _ = load_model(tiny_llama_hf)
    return cfg, params


def test_incremental_decode_matches_full_forward(model, sample_ids):
    cfg, params = model
    eng = PlainLlama(cfg, params)
    full = eng.logits(sample_ids)
    cache = eng.new_cache(64)
    split = 9
    first, cache = eng.prefill(sample_ids[:split], cache)
    np.testing.assert_allclose(first, full[:split], atol=1e-5)
    for pos in range(split, len(sample_ids)):
        step, cache = eng.decode(sample_ids[pos], cache, pos)
        np.testing.assert_allclose(step, full[pos], atol=1e-4)


def test_chunked_prefill_matches(model, sample_ids):
    cfg, params = model
    eng = PlainLlama(cfg, params)
    full = eng.logits(sample_ids)
    cache = eng.new_cache(64)
    a, cache = eng.prefill(sample_ids[:5], cache)
    b, cache = eng.prefill(sample_ids[5:], cache, pos=5)  # padded to a bucket internally
    np.testing.assert_allclose(np.concatenate([a, b]), full, atol=1e-4)


def test_padding_does_not_change_real_logits(model, sample_ids):
    cfg, params = model
    ids = np.asarray(sample_ids[:7], np.int32)
    ref, _ = L.prefill(params, cfg, ids, L.init_cache(cfg, 32))
    padded = np.concatenate([ids, np.full(9, 5, np.int32)])  # (16,)
    out, _ = L.prefill(params, cfg, padded, L.init_cache(cfg, 32))
    np.testing.assert_allclose(np.asarray(out)[:7], np.asarray(ref), atol=1e-5)
    last, _ = L.prefill(params, cfg, padded, L.init_cache(cfg, 32), n_real=7, last_only=True)
    np.testing.assert_allclose(np.asarray(last)[0], np.asarray(ref)[6], atol=1e-5)


def test_cache_is_written_at_position(model):
    cfg, params = model
    cache = L.init_cache(cfg, 16)
    _, cache = L.prefill(params, cfg, np.array([3, 4, 5], np.int32), cache, pos=4)
    k = np.asarray(cache.k)  # (L, KV, S, hd)
    assert k.shape == (cfg.n_layers, cfg.n_kv_heads, 16, cfg.head_dim)
    assert np.all(k[:, :, :4] == 0) and np.all(k[:, :, 7:] == 0)
    assert np.all(np.abs(k[:, :, 4:7]).sum(-1) > 0)


def test_sequence_longer_than_cache_is_refused(model):
    cfg, params = model
    with pytest.raises(InvalidInput):
        L.prefill(params, cfg, np.zeros(8, np.int32), L.init_cache(cfg, 8), pos=1)


def test_decode_mask_from_position():
    m = np.asarray(L.attention_mask(jnp.int32(5), 1, 8))
    np.testing.assert_array_equal(m, [[1, 1, 1, 1, 1, 1, 0, 0]])
    m = np.asarray(L.attention_mask(jnp.int32(0), 3, 4))
    np.testing.assert_array_equal(m, np.tril(np.ones((3, 4)), 0))


def test_plain_softmax_masks_exactly():
    scores = jnp.array([[[1.0, 2.0, 50.0], [3.0, -1.0, 7.0]]])  # (1, T=2, S=3)
    mask = jnp.array([[1.0, 1.0, 0.0], [1.0, 1.0, 1.0]])
    p = np.asarray(plain_ops.softmax(scores, mask))
    assert p[0, 0, 2] == 0.0
    np.testing.assert_allclose(p.sum(-1), 1.0, rtol=1e-6)
    np.testing.assert_allclose(p[0, 0, :2], np.exp([1, 2]) / np.exp([1, 2]).sum(), rtol=1e-6)


def test_rope_tables_match_transformers(model):
    import torch
    import transformers
    from transformers.models.llama.modeling_llama import LlamaRotaryEmbedding

    cfg, _ = model
    hf_cfg = transformers.LlamaConfig(hidden_size=cfg.dim, num_attention_heads=cfg.n_heads, rope_theta=cfg.rope_theta)
    rot = LlamaRotaryEmbedding(hf_cfg)
    pos = torch.arange(0, 300)[None]
    cos_ref, sin_ref = rot(torch.zeros(1, 300, cfg.head_dim), pos)
    cos, sin = L.rope_tables(cfg, np.arange(300))
    np.testing.assert_allclose(np.asarray(cos), cos_ref[0].numpy(), atol=1e-6)
    np.testing.assert_allclose(np.asarray(sin), sin_ref[0].numpy(), atol=1e-6)


def test_ops_are_used_and_swappable(model, sample_ids):
    cfg, params = model
    calls = []

    def counting_matmul(x, w):
        calls.append(("matmul", tuple(x.shape), tuple(w.shape)))
        return jnp.matmul(x, w)

    def counting_linear(x, w, residual=None):
        calls.append(("linear", tuple(x.shape), tuple(w.shape)))
        return plain_ops.linear(x, w, residual)

    ops = dataclasses.replace(L.PLAIN_OPS, matmul=counting_matmul, linear=counting_linear)
    ids = jnp.asarray(sample_ids[:4], jnp.int32)
    ref, _ = L.forward(params, cfg, ids, L.init_cache(cfg, 8), jnp.int32(0))
    out, _ = L.forward(params, cfg, ids, L.init_cache(cfg, 8), jnp.int32(0), ops)
    np.testing.assert_allclose(np.asarray(out), np.asarray(ref), atol=1e-6)
    # per layer: weights q, k, v, o, gate, up, down; activations scores, probs@v; plus the LM head
    assert sum(c[0] == "linear" for c in calls) == 7 * cfg.n_layers
    assert sum(c[0] == "matmul" for c in calls) == 2 * cfg.n_layers + 1
    assert ("matmul", (4, cfg.dim), (cfg.dim, cfg.vocab_size)) in calls  # x @ W, never x @ W.T

    relu_ops = dataclasses.replace(L.PLAIN_OPS, silu=jax.nn.relu)
    other, _ = L.forward(params, cfg, ids, L.init_cache(cfg, 8), jnp.int32(0), relu_ops)
    assert np.abs(np.asarray(other) - np.asarray(ref)).max() > 1e-2


def test_ops_are_hashable_static_args():
    assert hash(L.LlamaOps()) == hash(L.PLAIN_OPS)
    assert set(f.name for f in dataclasses.fields(L.LlamaOps)) == {"softmax", "silu", "rms_norm", "rope", "matmul", "linear"}


def test_the_default_ops_are_the_one_set_of_plaintext_twins():
    assert {f.name: getattr(L.PLAIN_OPS, f.name) for f in dataclasses.fields(L.LlamaOps)} == plain_ops.llama_ops()


def test_forward_hidden_is_jittable_with_traced_position(model, sample_ids):
    """The secure engine compiles one program for all positions: pos must be traceable."""
    cfg, params = model

    @jax.jit
    def step(params, x, cos, sin, mask, cache, pos):
        return L.forward_hidden(L.PLAIN_OPS, cfg, params, x, cos, sin, mask, cache, pos)

    cache = L.init_cache(cfg, 16)
    x = L.embed(params, jnp.asarray(sample_ids[:1]))
    for pos in (0, 3):
        cos, sin = L.rope_tables(cfg, np.array([pos]))
        h, _ = step(params, x, cos, sin, L.attention_mask(jnp.int32(pos), 1, 16), cache, jnp.int32(pos))
        assert h.shape == (1, cfg.dim)
    assert step._cache_size() == 1


def test_fused_projections_match_separate(model):
    """The secure engine keeps q|k|v and gate|up as single concatenated matrices;
    ``block`` gives the same result with them."""
    cfg, params = model
    lp = {k: jnp.asarray(v) for k, v in params["layers"][0].items()}
    fused = dict(lp)
    fused["wqkv"] = jnp.concatenate([lp["wq"], lp["wk"], lp["wv"]], axis=-1)
    fused["w_gate_up"] = jnp.concatenate([lp["w_gate"], lp["w_up"]], axis=-1)
    for k in ("wq", "wk", "wv", "w_gate", "w_up"):
        del fused[k]
    x = jax.random.normal(jax.random.PRNGKey(1), (5, cfg.dim))
    cos, sin = L.rope_tables(cfg, jnp.arange(5))
    mask = jnp.tril(jnp.ones((5, 5)))
    cache = L.KVCache(jnp.zeros((1, cfg.n_kv_heads, 5, cfg.head_dim)), jnp.zeros((1, cfg.n_kv_heads, 5, cfg.head_dim)))
    want, want_cache = L.block(L.PLAIN_OPS, cfg, lp, x, cos, sin, mask, cache, 0, 0)
    got, got_cache = L.block(L.PLAIN_OPS, cfg, fused, x, cos, sin, mask, cache, 0, 0)
    np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(np.asarray(got_cache.k), np.asarray(want_cache.k), rtol=1e-5, atol=1e-5)
