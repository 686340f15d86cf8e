"""The official ``openai`` package, unchanged, against the proxy over a real 3-node
cluster: models, chat (sync/async, streamed or not), completions, usage, seeds, stops."""

from __future__ import annotations

import asyncio

import openai
import pytest

from tests.proxy.conftest import HELLO, no_request_left


@pytest.fixture(scope="module")
def oai(proxy):
    return openai.OpenAI(base_url=proxy, api_key="unused", max_retries=0, timeout=120)


def test_models_list_and_get(oai, proxy_model):
    models = {m.id: m for m in oai.models.list()}
    assert proxy_model in models
    m = models[proxy_model]
    assert m.owned_by == proxy_model.split("/")[0] and m.model_extra["max_model_len"] == 128
    assert oai.models.retrieve(proxy_model).id == proxy_model
    with pytest.raises(openai.NotFoundError) as e:
        oai.models.retrieve("nobody/nothing")
    assert e.value.code == "model_not_found"


def test_chat_streamed_equals_whole_answer_with_usage(oai, client3, proxy_model):
    whole = oai.chat.completions.create(model=proxy_model, messages=HELLO, max_tokens=4, seed=3)
    assert whole.choices[0].finish_reason == "length" and whole.choices[0].message.role == "assistant"
    assert whole.usage.completion_tokens == 4 and whole.usage.prompt_tokens > 0
    cost = whole.usage.model_extra["x_misuan"]
    assert cost["bytes_sent"] > 0 and cost["mpc_seconds"] > 0 and cost["protocol"] == "ABY3"

    chunks = list(
        oai.chat.completions.create(
            model=proxy_model, messages=HELLO, max_tokens=4, seed=3, stream=True, stream_options={"include_usage": True}
        )
    )
    assert chunks[0].choices[0].delta.role == "assistant"
    assert len({c.id for c in chunks}) == 1 and len({c.created for c in chunks}) == 1
    usage = [c for c in chunks if c.usage is not None]
    assert len(usage) == 1 and usage[0] is chunks[-1] and chunks[-1].choices == []
    assert usage[0].usage.completion_tokens == 4
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == whole.choices[0].message.content
    assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] == ["length"]
    # the running cost on every text chunk (an extra field the SDK keeps): bytes and tokens so far
    running = [c.model_extra["x_misuan"] for c in chunks if c.choices and c.choices[0].delta.content]
    toks, sent = [r["completion_tokens"] for r in running], [r["bytes_sent"] for r in running]
    assert running and toks == sorted(set(toks)) and 1 <= toks[0] and toks[-1] <= 4
    total = usage[0].usage.model_extra["x_misuan"]["bytes_sent"]
    assert 0 < sent[0] and sent == sorted(sent) and sent[-1] <= total and running[0]["protocol"] == "ABY3"
    no_request_left(client3, proxy_model)


def test_stream_without_include_usage_has_no_usage_chunk(oai, proxy_model):
    chunks = list(oai.chat.completions.create(model=proxy_model, messages=HELLO, max_tokens=2, stream=True))
    assert all(c.usage is None and c.choices for c in chunks)


def test_seed_determinism_with_temperature(oai, proxy_model):
    kw = dict(model=proxy_model, messages=HELLO, max_tokens=3, temperature=1.0)
    a = oai.chat.completions.create(seed=7, **kw).choices[0].message.content
    b = "".join(c.choices[0].delta.content or "" for c in oai.chat.completions.create(seed=7, stream=True, **kw))
    assert a == b


def test_stop_string_is_never_streamed(oai, proxy_model):
    full = oai.chat.completions.create(model=proxy_model, messages=HELLO, max_tokens=6).choices[0].message.content
    assert len(full) >= 3
    stop = full[1:3]  # the answer's 2nd and 3rd characters
    chunks = list(oai.chat.completions.create(model=proxy_model, messages=HELLO, max_tokens=6, stop=[stop], stream=True))
    text = "".join(c.choices[0].delta.content or "" for c in chunks)
    assert text == full[: full.index(stop)] and stop not in text
    assert chunks[-1].choices[0].finish_reason == "stop"


def test_completions_and_content_parts(oai, proxy_model):
    c = oai.completions.create(model=proxy_model, prompt="hello", max_tokens=2)
    assert c.object == "text_completion" and c.choices[0].finish_reason == "length" and c.usage.completion_tokens == 2
    parts = [{"role": "user", "content": [{"type": "text", "text": "hello"}]}]
    chat = oai.chat.completions.create(model=proxy_model, messages=parts, max_tokens=2)
    assert chat.choices[0].message.content == c.choices[0].text  # the same prompt through the chat template
    streamed = "".join(x.choices[0].text for x in oai.completions.create(model=proxy_model, prompt="hello", max_tokens=2, stream=True))
    assert streamed == c.choices[0].text


def test_async_client(proxy, proxy_model):
    async def go():
        async with openai.AsyncOpenAI(base_url=proxy, api_key="unused", max_retries=0) as aoai:
            ids = [m.id async for m in aoai.models.list()]
            whole = await aoai.chat.completions.create(model=proxy_model, messages=HELLO, max_tokens=2)
            stream = await aoai.chat.completions.create(model=proxy_model, messages=HELLO, max_tokens=2, stream=True)
            text = "".join([c.choices[0].delta.content or "" async for c in stream])
            return ids, whole.choices[0].message.content, text

    ids, whole, text = asyncio.run(go())
    assert proxy_model in ids and whole == text


def test_cost_headers(oai, proxy_model):
    raw = oai.chat.completions.with_raw_response.create(model=proxy_model, messages=HELLO, max_tokens=1)
    assert raw.headers["x-misuan-protocol"] == "ABY3"
    assert int(raw.headers["x-misuan-bytes-sent"]) > 0 and float(raw.headers["x-misuan-mpc-seconds"]) > 0
