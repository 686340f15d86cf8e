"""Secure greedy generation on the layouts SmolLM2 and Qwen2 use, against transformers.

- a tied-embedding LLaMA (SmolLM2's own layout: no stored LM head, the nodes
  build ``lm_head = embed.T`` at load time);
- a Qwen2-style model with q/k/v biases, grouped-query attention (4 query heads
  per KV head) and an untied head.

Both are tiny random models published to the shared cluster; the secure tokens
must equal transformers' greedy tokens (recomputed without a cache).
"""

from __future__ import annotations

import numpy as np
import pytest

from misuan.hosting import publish_model, remove_model, show_model
from misuan.inference import GenerationParams
from tests.models.tinymodels import make_llama, make_qwen2, reference_logits, save_hf

PROMPTS = [[5, 17, 99, 3, 42], [250, 7]]
N = 4
EOS = (259, 261)  # <|endoftext|>, <|im_end|> of the tiny tokenizer


def _greedy(model, ids: list[int], n: int) -> tuple[list[int], float]:
    """transformers' greedy tokens (EOS included, as the secure engine yields it) and the smallest top-2 margin."""
    seq, out, margin = list(ids), [], np.inf
    for _ in range(n):
        logits = reference_logits(model, seq)[-1]
        top2 = np.sort(logits)[-2:]
        margin = min(margin, float(top2[1] - top2[0]))
        tok = int(np.argmax(logits))
        out.append(tok)
        seq.append(tok)
        if tok in EOS:
            break
    return out, margin


LAYOUTS = {
    "tied-llama": lambda: make_llama(seed=21, tie=True),
    "qwen2-bias": lambda: make_qwen2(seed=24, tie=False),
}


@pytest.fixture(scope="module", params=sorted(LAYOUTS))
def layout(request, client3, tmp_path_factory):
    model = LAYOUTS[request.param]()
    src = save_hf(tmp_path_factory.mktemp(request.param) / "m", model)
    publish_model(client3, src, request.param, receipt=False)
    yield request.param, model
    remove_model(client3, request.param)


def test_secure_greedy_equals_transformers(client3, layout):
    name, model = layout
    cfg = show_model(client3, name)["config"]
    if name == "tied-llama":
        assert cfg["tie_embeddings"] and not cfg["qkv_bias"]
        assert all(t["name"] != "lm_head" for t in show_model(client3, name)["tensors"])  # SmolLM2's layout
    else:
        assert cfg["family"] == "qwen2" and cfg["qkv_bias"] and not cfg["tie_embeddings"]
        assert cfg["n_kv_heads"] == 1 and cfg["n_heads"] == 4
        assert model.model.layers[0].self_attn.q_proj.bias.abs().max() > 0.1  # the biases matter
    secure_model = client3.model(name)
    for ids in PROMPTS:
        ref, margin = _greedy(model, ids, N)
        assert margin > 0.05, (name, ids, margin)  # far enough apart for fixed point to agree
        assert list(secure_model.generate_ids(ids, GenerationParams(max_tokens=N))) == ref, (name, ids)
