"""``misuan kb publish``: the owner's documents -> a secret-shared knowledge base.

On the owner's machine: read the documents, chunk them with the model's
tokenizer, embed every chunk with the edge embedder, encode each chunk's token ids
as two digits, secret-share the embedding matrix and the digit matrices, stream
share i to node i only, two-phase commit (:mod:`misuan.client.publish`). The nodes
keep the shares encrypted at rest; the public config holds sizes, the chunk ids,
the tokenizer's fingerprint and the owner's reveal policy, never a passage.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from .. import errors as E
from ..client.client import Client
from ..client.publish import next_version, publish_tensors
from ..node.assets import check_asset_name
from . import protocol as P
from .chunking import Chunk, Warn, chunk_documents, read_documents

#: stage(name, done, total): chunking, embedding, upload
Stage = Callable[[str, int, int], None]


@dataclass(frozen=True)
class KbPublishResult:
    name: str
    version: int
    documents: int
    chunks: int
    chunk_tokens: int
    reveal: str
    share_bytes_per_node: int
    embed_seconds: float
    seconds: float

    def to_dict(self) -> dict:
        return asdict(self)


def tokenizer_sha256(tokenizer_json: str) -> str:
    """The fingerprint of a tokenizer family: a KB serves models whose tokenizer has it."""
    return hashlib.sha256(tokenizer_json.encode()).hexdigest()


def model_tokenizer(client: Client, model: str) -> str:
    """The hosted model's tokenizer JSON, identical on every node."""
    model = client.model_ref(model)
    views = client.fanout(lambda i: client.nodes[i].model_tokenizer(model))
    if len(set(views)) != 1:
        raise E.IntegrityError(f"nodes hold different tokenizers for {model!r}")
    return views[0]


def token_digits_matrix(chunks: list[Chunk], size: int, vocab: int) -> tuple[np.ndarray, np.ndarray]:
    """``hi, lo (N, size)`` int32: ``id = hi * B + lo``, ``PAD_DIGIT`` in unused slots."""
    from ..secure.onehot import context_digits

    pairs = [context_digits(c.tokens, size, vocab, P.PAD_DIGIT) for c in chunks]
    return np.stack([h for h, _ in pairs]), np.stack([lo for _, lo in pairs])  # (N, C) each


def prepare_chunks(
    source: str | Path, tokenizer_json: str, size: int, overlap: int, warn: Warn | None = None
) -> tuple[int, list[Chunk], object]:
    """(documents, chunks, tokenizer) of ``source`` under the model's tokenizer."""
    from ..models.tokenizer import Tokenizer

    tok = Tokenizer.from_json(tokenizer_json)
    docs = read_documents(source, warn)
    chunks = chunk_documents(docs, lambda t: tok.encode(t, add_special_tokens=False), size, overlap)
    return len(docs), chunks, tok


def embed_chunks(embedder, tok, chunks: list[Chunk], stage: Stage | None = None, batch: int = 256) -> np.ndarray:
    """``(N, D)`` float32 embeddings of the chunks' texts (decoded from their tokens)."""
    out = []
    for s in range(0, len(chunks), batch):
        texts = [tok.decode(c.tokens) for c in chunks[s : s + batch]]
        out.append(embedder.embed(texts))
        if stage:
            stage("embedding", min(s + batch, len(chunks)), len(chunks))
    return np.concatenate(out).astype(np.float32)


def default_overlap(chunk_tokens: int) -> int:
    """``OVERLAP`` tokens, at most an eighth of a chunk."""
    return min(P.OVERLAP, chunk_tokens // 8)


def publish_kb(
    client: Client,
    source: str | Path,
    name: str,
    model: str,
    *,
    chunk_tokens: int = P.CHUNK_TOKENS,
    overlap: int | None = None,
    reveal: str = P.REVEAL_PASSAGES,
    embedder=None,
    stage: Stage | None = None,
    warn: Warn | None = None,
) -> KbPublishResult:
    """Publish the documents at ``source`` as KB ``name``, chunked for ``model``'s tokenizer."""
    if reveal not in P.REVEAL_CHOICES:
        raise E.InvalidInput(f"--reveal must be one of {', '.join(P.REVEAL_CHOICES)}; got {reveal!r}")
    name = check_asset_name(client.model_ref(name), P.KB)
    overlap = default_overlap(chunk_tokens) if overlap is None else overlap
    if not 0 <= overlap < chunk_tokens:
        raise E.InvalidInput(f"--overlap ({overlap}) must be at least 0 and below --chunk-tokens ({chunk_tokens})")
    t0 = time.perf_counter()
    tok_json = model_tokenizer(client, model)
    n_docs, chunks, tok = prepare_chunks(source, tok_json, chunk_tokens, overlap, warn)
    if stage:
        stage("chunking", len(chunks), len(chunks))
    if embedder is None:
        from .embedder import Embedder

        embedder = Embedder.load()
    t1 = time.perf_counter()
    emb = embed_chunks(embedder, tok, chunks, stage)
    embed_s = time.perf_counter() - t1
    hi, lo = token_digits_matrix(chunks, chunk_tokens, tok.vocab_size)
    tensors = [(P.EMB, emb), (P.HI, hi), (P.LO, lo)]
    config = {
        "n_chunks": len(chunks),
        "dim": int(emb.shape[1]),
        "chunk_tokens": chunk_tokens,
        "overlap": overlap,
        "vocab_size": tok.vocab_size,
        "tokenizer_sha256": tokenizer_sha256(tok_json),
        "model": client.model_ref(model),
        "embedder": P.EMBEDDER,
        "reveal": reveal,
        "documents": n_docs,
        "chunk_ids": [c.id for c in chunks],
    }
    version = next_version(client, name, P.KB)
    body = {
        "version": version,
        "kind": P.KB,
        "config": config,
        "tokenizer": tok_json,
        "tensors": [{"name": n, "shape": list(a.shape)} for n, a in tensors],
    }

    def progress(done: int, _total: int, tensor: str) -> None:
        if stage:
            stage("upload", min(done, _total), _total)

    per_node = publish_tensors(client, P.KB, name, body, tensors, progress)
    return KbPublishResult(name, version, n_docs, len(chunks), chunk_tokens, reveal, per_node, embed_s, time.perf_counter() - t0)


__all__ = ["KbPublishResult", "model_tokenizer", "publish_kb", "token_digits_matrix", "tokenizer_sha256"]
