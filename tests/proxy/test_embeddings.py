"""``POST /v1/embeddings`` with the edge embedder through the ``openai`` package (which
asks for base64 when numpy is installed) and as floats."""

from __future__ import annotations

import httpx
import numpy as np
import openai

from misuan.retrieval.embedder import Embedder


def test_embeddings_float_and_base64_match_the_embedder(proxy):
    oai = openai.OpenAI(base_url=proxy, api_key="x", max_retries=0, timeout=120)
    model = [m.id for m in oai.models.list() if "MiniLM" in m.id][0]
    texts = ["secret shares", "a knowledge base"]
    via_b64 = oai.embeddings.create(model=model, input=texts)  # the openai package's default: base64
    got = np.array([d.embedding for d in via_b64.data], np.float32)
    want = Embedder.load().embed(texts)
    assert got.shape == (2, 384) and np.allclose(got, want, atol=1e-6)
    floats = httpx.post(f"{proxy}/embeddings", json={"model": model, "input": texts[0], "encoding_format": "float"}, timeout=120).json()
    assert np.allclose(floats["data"][0]["embedding"], want[0], atol=1e-6)
    bad = httpx.post(f"{proxy}/embeddings", json={"model": model, "input": "x", "encoding_format": "int8"})
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "encoding_format"
