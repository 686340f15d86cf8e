"""inference/backend.py: both engines are ChatBackends; the secure stream equals the
plaintext one (greedy); finish reasons; cancel() ends the stream and frees the request
on every node (real node processes, tiny random LLaMA)."""

import threading

import pytest

from misuan.inference import ChatBackend, ChatEvent, GenerationParams, ModelInfo
from misuan.inference.secure import SecureModel

HELLO = [{"role": "user", "content": "hello"}]  # the tiny model (seed 11) runs on past 8 tokens
#: the tiny model's greedy answer ends (EOS) after 4 tokens
SHORT = [{"role": "user", "content": "cn"}]


def _split(events: list[ChatEvent]) -> tuple[list[tuple[int | None, str]], ChatEvent]:
    *deltas, final = events
    assert final.final and all(not e.final for e in deltas)
    return [(e.token_id, e.text) for e in deltas], final


def _no_request_left(client, model: str) -> None:
    for st in client.status():
        rt = [r for r in st["resident"] if r["name"] == model]
        assert rt and rt[0]["requests"] == 0, st["party"]  # the request's state is gone on this node
        assert all(s["kind"].startswith("model:") for s in st["sessions"]), st["sessions"]  # no other session


def test_both_engines_are_chat_backends(client3, tiny_hosted, plain_tiny):
    secure = client3.model(tiny_hosted)
    assert isinstance(secure, SecureModel)
    assert isinstance(secure, ChatBackend) and isinstance(plain_tiny, ChatBackend)
    assert not isinstance(object(), ChatBackend)
    assert secure.model_info() == ModelInfo(secure.name, plain_tiny.config.max_seq_len, "mpc")
    assert plain_tiny.model_info().mode == "plaintext" and plain_tiny.model_info().max_context == 128


@pytest.mark.parametrize("messages, reason", [(HELLO, "length"), (SHORT, "stop")])
def test_secure_stream_equals_plaintext(client3, tiny_hosted, plain_tiny, messages, reason):
    params = GenerationParams(max_tokens=8)
    secure, s_final = _split(list(client3.model(tiny_hosted).stream_chat(messages, params)))
    plain, p_final = _split(list(plain_tiny.stream_chat(messages, params)))
    assert secure == plain and secure
    assert s_final.finish_reason == p_final.finish_reason == reason
    n_tokens = sum(tok is not None for tok, _ in secure)
    assert n_tokens == (8 if reason == "length" else 4)
    su, pu = s_final.usage, p_final.usage
    assert su.prompt_tokens == pu.prompt_tokens > 0
    assert su.completion_tokens == pu.completion_tokens == n_tokens
    assert su.bytes_sent > 0 and su.mpc_seconds > 0
    assert pu.bytes_sent == 0 and pu.mpc_seconds is None
    _no_request_left(client3, tiny_hosted)


def test_cancel_mid_stream_frees_the_request_on_every_node(client3, tiny_hosted):
    stream = client3.model(tiny_hosted).stream_chat(HELLO, GenerationParams(max_tokens=40))
    first = [next(stream), next(stream)]
    assert all(e.token_id is not None for e in first)
    for st in client3.status():  # the premise: the request is live on every node
        assert [r for r in st["resident"] if r["name"] == tiny_hosted][0]["requests"] == 1
    stream.cancel()
    _no_request_left(client3, tiny_hosted)  # freed at once, before the stream is read again
    final = next(stream)
    assert final.finish_reason == "cancelled" and final.usage.completion_tokens == 2
    assert list(stream) == []


def test_cancel_from_another_thread_while_a_token_is_computed(client3, tiny_hosted):
    stream = client3.model(tiny_hosted).stream_chat(HELLO, GenerationParams(max_tokens=40))
    next(stream)
    timer = threading.Timer(0.05, stream.cancel)
    timer.start()
    events = list(stream)
    timer.join()
    assert events[-1].finish_reason == "cancelled"
    assert len(events) < 40
    _no_request_left(client3, tiny_hosted)
