"""Sampling and the generate iterator on a tiny model."""

from __future__ import annotations

import numpy as np
import pytest

from misuan.errors import InvalidInput
from misuan.models import PlainLlama, SamplingParams, load_model, sample_token
from misuan.models.sampling import top_p_filter


@pytest.fixture(scope="module")
def engine(tiny_llama_gguf):
    cfg, params, tok = load_model(tiny_llama_gguf)
    return PlainLlama(cfg, params), tok


def test_greedy_generate_equals_recomputed_argmax(engine, sample_ids):
    eng, _ = engine
    prompt = sample_ids[:6]
    out = list(eng.generate(prompt, SamplingParams(max_new_tokens=12)))
    assert len(out) == 12
    seq = list(prompt)
    for token in out:  # no-cache recomputation of every step
        assert token == int(np.argmax(eng.logits(seq)[-1]))
        seq.append(token)


def test_generate_matches_transformers_greedy(engine, tiny_llama, sample_ids):
    import torch

    eng, _ = engine
    prompt = sample_ids[:6]
    with torch.no_grad():
        ref = tiny_llama.generate(torch.tensor([prompt]), max_new_tokens=10, do_sample=False, eos_token_id=None, pad_token_id=0)[
            0, len(prompt) :
        ].tolist()
    assert list(eng.generate(prompt, SamplingParams(max_new_tokens=10))) == ref


def test_sampling_is_seeded(engine, sample_ids):
    eng, _ = engine
    run = lambda seed: list(eng.generate(sample_ids[:4], SamplingParams(temperature=1.0, seed=seed, max_new_tokens=16)))  # noqa: E731
    assert run(1) == run(1)
    assert run(1) != run(2)
    greedy = list(eng.generate(sample_ids[:4], SamplingParams(max_new_tokens=16)))
    tiny_p = list(eng.generate(sample_ids[:4], SamplingParams(temperature=1.0, top_p=1e-6, seed=3, max_new_tokens=16)))
    assert tiny_p == greedy


def test_stops_on_eos_without_yielding_it(engine, sample_ids):
    eng, _ = engine
    greedy = list(eng.generate(sample_ids[:6], SamplingParams(max_new_tokens=8)))
    gen = eng.generate(sample_ids[:6], SamplingParams(max_new_tokens=8), eos_ids={greedy[3]})
    out = list(gen)
    assert out == greedy[: greedy.index(greedy[3])]
    assert gen.finish_reason == "stop"
    gen = eng.generate(sample_ids[:6], SamplingParams(max_new_tokens=8))
    list(gen)
    assert gen.finish_reason == "length" and len(gen.tokens) == 8


def test_stops_on_stop_string(engine, sample_ids):
    eng, tok = engine
    greedy = list(eng.generate(sample_ids[:6], SamplingParams(max_new_tokens=8)))
    target = tok.decode(greedy[:4], skip_special_tokens=False)[-1]  # a character emitted by the 4th token or earlier
    gen = eng.generate(
        sample_ids[:6],
        SamplingParams(max_new_tokens=8),
        stop_strings=[target],
        decode=lambda ids: tok.decode(ids, skip_special_tokens=False),
    )
    out = list(gen)
    assert gen.finish_reason == "stop" and len(out) <= 4 and out == greedy[: len(out)]


def test_prompt_too_long_is_refused(engine):
    eng, _ = engine
    with pytest.raises(InvalidInput):
        eng.generate([1] * eng.cfg.max_seq_len, SamplingParams())
    with pytest.raises(InvalidInput):
        eng.generate([], SamplingParams())


def test_generation_stops_at_context_end(engine):
    eng, _ = engine
    n = eng.cfg.max_seq_len - 3
    out = list(eng.generate([5] * n, SamplingParams(max_new_tokens=50)))
    assert len(out) == 3


def test_sample_token_and_top_p():
    logits = np.array([0.0, 3.0, 1.0, 2.9])
    assert sample_token(logits, SamplingParams()) == 1
    probs = np.exp(logits) / np.exp(logits).sum()
    kept = top_p_filter(probs, 0.7)
    assert set(np.nonzero(kept)[0]) == {1, 3} and np.isclose(kept.sum(), 1.0)
    rng = np.random.default_rng(0)
    draws = [sample_token(logits, SamplingParams(temperature=1.0, top_p=0.7), rng) for _ in range(200)]
    assert set(draws) == {1, 3}
    hot = [sample_token(logits, SamplingParams(temperature=2.0), step=i) for i in range(400)]
    assert set(hot) == {0, 1, 2, 3}
    with pytest.raises(InvalidInput, match="temperature"):  # the secure engine's bounds
        sample_token(logits, SamplingParams(temperature=5.0))
    with pytest.raises(InvalidInput):
        SamplingParams(top_p=0.0)
    with pytest.raises(InvalidInput):
        SamplingParams(temperature=-1.0)


def test_gumbel_prg_is_pinned_and_samples_softmax():
    """The nodes and the plaintext engine share this PRG: its output must never drift."""
    from misuan.models.sampling import gumbel_noise, gumbel_token

    g = gumbel_noise(0, 0, 4)
    np.testing.assert_array_equal(g, gumbel_noise(0, 0, 4))
    assert not np.array_equal(g, gumbel_noise(0, 1, 4)) and not np.array_equal(g, gumbel_noise(1, 0, 4))
    np.testing.assert_allclose(g, PINNED_GUMBEL, rtol=0, atol=1e-6)
    big = gumbel_noise(7, 3, 200_000)
    assert np.isfinite(big).all() and abs(big.mean() - np.euler_gamma) < 0.01
    logits = np.array([2.0, 1.0, 0.0, -1.0], np.float32)
    freq = np.bincount([gumbel_token(logits, 1.0, 5, step) for step in range(4000)], minlength=4) / 4000
    p = np.exp(logits) / np.exp(logits).sum()
    assert np.abs(freq - p).max() < 0.03
    with pytest.raises(InvalidInput):
        gumbel_noise(-1, 0, 4)


#: SHAKE-256(b'misuan.gumbel.v1' || seed 0 || step 0): the first four noise values
PINNED_GUMBEL = np.array([2.4114213, 2.3832555, -0.31463447, 0.7926116], np.float32)
