"""One entry point for model files: :func:`load_model`."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

from misuan.errors import InvalidInput
from misuan.models.config import LlamaConfig
from misuan.models.gguf_loader import is_gguf_file, load_gguf, load_gguf_public
from misuan.models.hf_loader import load_hf_config, load_hf_dir, load_hf_tokenizer
from misuan.models.params import Params
from misuan.models.tokenizer import Tokenizer


class LoadedModel(NamedTuple):
    """What a loader returns; unpacks as ``cfg, params, tokenizer``."""

    config: LlamaConfig
    params: Params
    tokenizer: Tokenizer


@contextlib.contextmanager
def _named(path: Path) -> Iterator[None]:
    """Prefix loader errors with the model's file or directory name."""
    try:
        yield
    except InvalidInput as exc:
        if str(exc).startswith(f"{path.name}:"):
            raise
        raise InvalidInput(f"{path.name}: {exc}") from None


def resolve_model_path(path: str | Path) -> tuple[str, Path]:
    """``("gguf", file)`` or ``("hf", directory)`` for a model path.

    A directory with ``config.json`` is a Hugging Face model; a directory with
    exactly one ``.gguf`` file (and no ``config.json``) means that file.
    """
    path = Path(path)
    if path.is_file():
        if is_gguf_file(path):
            return "gguf", path
        raise InvalidInput(f"{path.name}: not a GGUF file (bad magic) and not a model directory")
    if path.is_dir():
        if (path / "config.json").is_file():
            return "hf", path
        ggufs = sorted(path.glob("*.gguf"))
        if len(ggufs) == 1:
            return "gguf", ggufs[0]
        if ggufs:
            raise InvalidInput(f"{path.name}: several .gguf files; name one")
        raise InvalidInput(f"{path.name}: no config.json or .gguf file in the directory")
    raise InvalidInput(f"{path.name or path}: no such file or directory")


def load_model(path: str | Path) -> LoadedModel:
    """Load a GGUF file or a Hugging Face directory.

    Returns:
        ``(config, params, tokenizer)`` with params in the canonical layout of
        :mod:`misuan.models.params` (float32 numpy, matrices ``(in, out)``).

    Raises:
        InvalidInput: unknown/corrupt file, unsupported architecture or tensor type.
    """
    kind, resolved = resolve_model_path(path)
    with _named(resolved):
        loaded = load_gguf(resolved) if kind == "gguf" else load_hf_dir(resolved)
    return LoadedModel(*loaded)


def load_public(path: str | Path) -> tuple[LlamaConfig, Tokenizer]:
    """Only what is public about a model (config + tokenizer), without decoding weights."""
    kind, resolved = resolve_model_path(path)
    with _named(resolved):
        if kind == "gguf":
            return load_gguf_public(resolved)
        return load_hf_config(resolved), load_hf_tokenizer(resolved)
