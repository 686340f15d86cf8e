"""Secure generation on real node processes equals the plaintext engine (tiny random LLaMA)."""

import numpy as np
import pytest

import misuan
from misuan.inference import GenerationParams, GenerationStats
from misuan.models.llama import rope_tables  # noqa: F401  (public API used by the engine)
from misuan.secure.sampling import gumbel_noise

PROMPTS = [[5, 17, 99, 3, 42], list(range(20, 33)), [250, 7]]


def _plain_ids(plain, ids, n):
    return list(plain.generate_ids(ids, GenerationParams(max_tokens=n)))


@pytest.mark.parametrize("ids", PROMPTS)
def test_greedy_tokens_equal_plaintext(client3, tiny_hosted, plain_tiny, ids):
    model = client3.model(tiny_hosted)
    stats = GenerationStats()
    secure = list(model.generate_ids(ids, GenerationParams(max_tokens=6), stats))
    assert secure == _plain_ids(plain_tiny, ids, 6)
    assert stats.prompt_bucket == 16 and stats.cache_bucket == 64 and stats.steps == 5
    assert stats.prefill_bytes > 0 and stats.bytes_per_token > 0


def test_chat_streams_text_and_frees_state(client3, tiny_hosted, plain_tiny):
    msgs = [{"role": "user", "content": "hello"}]
    secure = "".join(client3.chat(tiny_hosted, msgs, max_tokens=5))
    plain = "".join(plain_tiny.chat(msgs, GenerationParams(max_tokens=5)))
    assert secure == plain and secure
    for st in client3.status():
        rt = [r for r in st["resident"] if r["name"] == tiny_hosted]
        assert rt and rt[0]["requests"] == 0  # the request's KV cache was freed on every node


def test_temperature_sampling_matches_gumbel_max_reference(client3, tiny_hosted, tiny_model_dir):
    """argmax(logits + t*g) with the client's own noise, recomputed in plaintext."""
    import jax.numpy as jnp

    from misuan.models.generation import PlainLlama
    from misuan.models.loader import load_model

    cfg, params, _ = load_model(tiny_model_dir)
    engine = PlainLlama(cfg, params)
    ids, t, seed, n = [9, 8, 7, 6], 0.8, 1234, 5
    secure = list(client3.model(tiny_hosted).generate_ids(ids, GenerationParams(max_tokens=n, temperature=t, seed=seed)))
    again = list(client3.model(tiny_hosted).generate_ids(ids, GenerationParams(max_tokens=n, temperature=t, seed=seed)))
    assert secure == again  # reproducible from the client's seed
    rng = np.random.SeedSequence(seed)
    cache = engine.new_cache(64)
    logits, cache = engine.prefill(ids, cache, 0, last_only=True)
    ref, pos = [], len(ids)
    for _ in range(n):
        g = gumbel_noise(rng.spawn(1)[0], (cfg.vocab_size,))
        tok = int(jnp.argmax(np.asarray(logits) + t * g))
        ref.append(tok)
        logits, cache = engine.prefill([tok], cache, pos, last_only=True)
        pos += 1
    assert secure == ref


#: "fx" as raw text: the tiny model (seed 11) answers two tokens, then EOS (margins >= 0.6)
EARLY_EOS = [102, 120]


def test_fixed_length_hides_the_answer_length(client3, tiny_hosted, plain_tiny):
    """An answer that ends early: without --fixed-length the steps stop, with it they run to max_tokens."""
    from misuan.inference.engine import stream_text

    ref = GenerationStats()
    plain = list(plain_tiny.generate_ids(EARLY_EOS, GenerationParams(max_tokens=6), ref))
    assert len(plain) == 2 and ref.finish_reason == "stop"  # the premise: EOS well before max_tokens
    model = client3.model(tiny_hosted)
    runs = {}
    for fixed in (False, True):
        stats = GenerationStats()
        params = GenerationParams(max_tokens=6, fixed_length=fixed)
        out = [tok for tok, _ in stream_text(model, EARLY_EOS, params, stats) if tok >= 0]
        runs[fixed] = (out, stats.steps)
    assert runs[False] == (plain, 2)  # prefill + 2 decode steps, the third token is EOS
    assert runs[True] == (plain, 5)  # same answer, every one of the max_tokens steps ran


def test_bad_inputs(client3, cluster3, tiny_hosted):
    msgs = [{"role": "user", "content": "hi"}]
    with pytest.raises(misuan.NotFound):
        list(client3.chat("no-such-model", msgs))
    secret = (cluster3.dir / "node0" / "cluster.secret").read_bytes().strip()
    from misuan.node.auth import issue_token

    with misuan.connect(cluster3.cluster_file, issue_token(secret, "eve")) as eve:
        with pytest.raises(misuan.NotFound):  # no grant: the model does not exist for eve
            list(eve.chat(tiny_hosted, msgs))
    bad = [
        dict(messages=[{"role": "user", "content": ""}]),
        dict(messages=[]),
        dict(messages=[{"role": "wizard", "content": "x"}]),
        dict(messages=msgs, max_tokens=0),
        dict(messages=msgs, max_tokens=-3),
        dict(messages=msgs, temperature=-0.1),
        dict(messages=msgs, top_p=0.0),
        dict(messages=msgs, top_p=1.5),
        dict(messages=msgs, top_p=0.9),  # MPC mode: greedy/temperature only
        dict(messages=[{"role": "user", "content": "word " * 200}]),  # longer than the tiny model's context (128)
        dict(messages=msgs, max_tokens=500),
    ]
    for kw in bad:
        with pytest.raises(misuan.InvalidInput):
            list(client3.chat(tiny_hosted, **kw))
    model = client3.model(tiny_hosted)
    with pytest.raises(misuan.InvalidInput):
        list(model.generate_ids([], GenerationParams()))


def test_nodes_never_see_prompt_or_answer(client3, cluster3, tiny_hosted, plain_tiny):
    """No prompt text, answer text or one-hot prompt row appears in any node file or log."""
    prompt = "zebra quokka marmot"
    msgs = [{"role": "user", "content": prompt}]
    answer = "".join(client3.chat(tiny_hosted, msgs, max_tokens=4))
    ids = plain_tiny.tokenizer.encode_chat(msgs)
    onehot_row = np.zeros(client3.model(tiny_hosted).config.vocab_size, np.float32)
    onehot_row[ids[-1]] = 1.0
    needles = [prompt.encode(), prompt.encode("utf-16-le"), onehot_row.tobytes()]
    if len(answer) >= 4:
        needles.append(answer.encode())
    for rank in range(3):
        for f in (cluster3.dir / f"node{rank}").rglob("*"):
            if f.is_file():
                raw = f.read_bytes()
                for nd in needles:
                    assert nd not in raw, f
