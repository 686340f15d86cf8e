"""RAG through the OpenAI proxy: ``<model>+kb:<kb>`` is listed for a KB chunked with the
model's tokenizer and answers, streamed through the official ``openai`` client, with
the tokens of a direct :class:`~misuan.retrieval.rag.RagModel` (same seed)."""

import openai
import pytest

from misuan.inference import GenerationParams
from misuan.retrieval.rag import RagModel
from tests.proxy.conftest import start_proxy

pytestmark = pytest.mark.cluster

RAG_ID = "librarian/ragtiny+kb:librarian/notes"
#: the tiny tokenizer is near character level: with this system prompt and question,
#: the template around the window of 2 x 32 tokens fits the 128-token prompt bucket
MESSAGES = [{"role": "system", "content": "."}, {"role": "user", "content": "Mars moons?"}]
MAX_TOKENS, TEMPERATURE, SEED = 4, 0.8, 9


def test_rag_backend_listed_and_streamed_equal_to_a_direct_rag_model(kb_owner, kb_hosted, embedder):
    direct = RagModel(kb_owner, "ragtiny", "notes", k=2, embedder=embedder)
    params = GenerationParams(max_tokens=MAX_TOKENS, temperature=TEMPERATURE, seed=SEED)
    want = [ev.text for ev in direct.stream_chat(MESSAGES, params) if not ev.final]

    with start_proxy(kb_owner) as url:
        oai = openai.OpenAI(base_url=url, api_key="unused", max_retries=0, timeout=300)
        models = {m.id: m for m in oai.models.list()}
        assert models[RAG_ID].owned_by == "librarian" and models[RAG_ID].model_extra["max_model_len"] == 512
        assert "librarian/ragtiny" in models
        chunks = list(
            oai.chat.completions.create(
                model=RAG_ID,
                messages=MESSAGES,
                max_tokens=MAX_TOKENS,
                temperature=TEMPERATURE,
                seed=SEED,
                stream=True,
                stream_options={"include_usage": True},
            )
        )
        with pytest.raises(openai.BadRequestError) as e:
            oai.chat.completions.create(model=RAG_ID, messages=MESSAGES, max_tokens=1, extra_body={"x_misuan_k": 0})
        assert e.value.body["param"] == "x_misuan_k"

    got = [c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content]
    assert got == [t for t in want if t] and got
    assert chunks[-1].usage.completion_tokens == MAX_TOKENS
    cost = chunks[-1].usage.model_extra["x_misuan"]
    assert cost["bytes_sent"] > 0 and cost["protocol"] == "ABY3"
