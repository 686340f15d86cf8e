"""Secure generation on real node processes equals the plaintext engine (tiny random LLaMA)."""

import numpy as np
import pytest

import misuan
from misuan.inference import GenerationParams, GenerationStats
from misuan.models.llama import rope_tables  # noqa: F401  (public API used by the engine)

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


def test_temperature_sampling_equals_plaintext(client3, tiny_hosted, plain_tiny):
    """argmax(logits + t*g) with the nodes' noise for the seed == the plaintext engine's."""
    ids, n = [9, 8, 7, 6], 5
    params = GenerationParams(max_tokens=n, temperature=0.8, seed=1234)
    secure = list(client3.model(tiny_hosted).generate_ids(ids, params))
    again = list(client3.model(tiny_hosted).generate_ids(ids, params))
    assert secure == again == list(plain_tiny.generate_ids(ids, params))  # reproducible, and the twin agrees


#: "fx" as raw text: the tiny model (seed 11) answers two tokens, then EOS (margins >= 0.6)
EARLY_EOS = [102, 120]


def test_fixed_length_hides_the_answer_length(client3, tiny_hosted, plain_tiny):
    """An answer that ends early: without --fixed-length the steps stop, with it they run to max_tokens."""
    from misuan.inference.secure import stream_text

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
    from tests.conftest import client_as

    with client_as(cluster3, "eve") as eve:
        with pytest.raises(misuan.NotFound):  # no grant: the model does not exist for eve
            list(eve.chat(tiny_hosted, msgs))
    bad = [
        dict(messages=[{"role": "user", "content": ""}]),
        dict(messages=[]),
        dict(messages=[{"role": "wizard", "content": "x"}]),
        dict(messages=msgs, max_tokens=0),
        dict(messages=msgs, max_tokens=-3),
        dict(messages=msgs, temperature=-0.1),
        dict(messages=msgs, temperature=0.01),
        dict(messages=msgs, temperature=2.5),
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
