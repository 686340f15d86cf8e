"""``langchain-openai``'s ChatOpenAI, unchanged, against the proxy: invoke and stream
with usage."""

from __future__ import annotations

from langchain_openai import ChatOpenAI

from tests.proxy.conftest import HELLO


def test_chat_openai_invoke_and_stream(proxy, proxy_model):
    llm = ChatOpenAI(base_url=proxy, api_key="unused", model=proxy_model, max_tokens=3, stream_usage=True, max_retries=0, seed=1)
    msg = llm.invoke(HELLO[0]["content"])
    assert msg.content and msg.usage_metadata["output_tokens"] == 3
    chunks = list(llm.stream(HELLO[0]["content"]))
    assert "".join(c.content for c in chunks) == msg.content
    usage = [c.usage_metadata for c in chunks if c.usage_metadata]
    assert len(usage) == 1 and usage[0]["output_tokens"] == 3 and usage[0]["input_tokens"] > 0
