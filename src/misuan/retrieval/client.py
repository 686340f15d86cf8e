"""Searching a knowledge base from the user's machine.

The question is embedded here and secret-shared; the nodes compute every
similarity, a secret top-k and fetch the chosen chunks obliviously
(``kb.search``); only what the KB owner's policy allows comes back, and is
reconstructed here: chunk ids and scores (``ids``), and the passages
(``passages``, decoded here from their token ids).
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field

import numpy as np

from .. import errors as E
from ..client.assets import show_asset
from ..client.client import Client
from ..client.runtime import ModelRuntime
from . import protocol as P


@dataclass(frozen=True)
class Passage:
    id: str | None
    score: float | None
    text: str | None = field(default=None, repr=False)

    def to_dict(self) -> dict:
        return {k: v for k, v in (("id", self.id), ("score", self.score), ("text", self.text)) if v is not None}


@dataclass(frozen=True)
class SearchResult:
    kb: str
    version: int
    k: int
    results: list[Passage]
    #: what the caller should be told: k clamped, question truncated
    notes: list[str]
    reveal: str
    seconds: float
    mpc_seconds: float
    bytes_sent: int

    def to_dict(self) -> dict:
        return {"results": [p.to_dict() for p in self.results]}


def clamp_k(k: int, n_chunks: int, notes: list[str]) -> int:
    """``k`` in 1..min(MAX_K, n_chunks): too large is clamped (and said), <= 0 refused."""
    if isinstance(k, bool) or not isinstance(k, int) or k <= 0:
        raise E.InvalidInput(f"k must be a positive integer; got {k!r}")
    limit = min(P.MAX_K, n_chunks)
    if k > limit:
        notes.append(f"k = {k} clamped to {limit} (the KB has {n_chunks} chunks; at most {P.MAX_K} per search)")
        return limit
    return k


def embed_question(embedder, question: str, notes: list[str]) -> np.ndarray:
    if not isinstance(question, str) or not question.strip():
        raise E.InvalidInput("the question is empty")
    vec, truncated = embedder.embed_query(question)
    if truncated:
        notes.append(f"question truncated to the embedder's limit of {P.EMBED_MAX_TOKENS} tokens")
    return np.asarray(vec, np.float32).reshape(1, -1)  # (1, D) secret to the nodes once shared


class KnowledgeBase:
    """A searchable KB, opened once: its public record, its resident runtime on the
    nodes, its tokenizer and the edge embedder (repeated searches pay only the query)."""

    def __init__(self, client: Client, kb: str, *, version: int | None = None, embedder=None):
        info = show_asset(client, P.KB, kb, version)
        self.client, self.config, self.name, self.version = client, info["config"], info[P.KB], info["version"]
        if self.config["reveal"] == P.REVEAL_NONE:
            raise E.PermissionDenied(f"{self.name}'s policy reveals nothing to a search (reveal = none); use it through ask")
        if embedder is None:
            from .embedder import Embedder

            embedder = Embedder.load()
        self.embedder = embedder
        self.runtime = ModelRuntime.ensure(client, self.name, self.version, kind=P.KB)
        self._tokenizer = None

    def __repr__(self) -> str:
        return f"KnowledgeBase({self.name}@{self.version}, {self.config['n_chunks']} chunks, reveal {self.config['reveal']})"

    def search(self, question: str, k: int = 5) -> SearchResult:
        """Secure top-``k`` search for ``question``."""
        t0 = time.perf_counter()
        cfg = self.config
        notes: list[str] = []
        k = clamp_k(k, cfg["n_chunks"], notes)
        q = embed_question(self.embedder, question, notes)
        passages = cfg["reveal"] == P.REVEAL_PASSAGES
        with self.runtime.request() as req:
            req.put(P.QUERY, q)
            runs = req.run(P.SEARCH, {P.PARAM_K: k})
            got = req.reveal_many([P.INDEX, P.SCORES, *([P.TOKENS] if passages else [])])
        index = got[P.INDEX].astype(np.int64).reshape(-1)  # (k,) best first
        scores = got[P.SCORES].astype(np.float64).reshape(-1)  # (k,)
        texts = self._decode(got[P.TOKENS].astype(np.int64)) if passages else [None] * k  # tokens (k, C)
        ids = cfg["chunk_ids"]
        results = [Passage(ids[int(i)] if 0 <= i < len(ids) else None, round(float(s), 6), t) for i, s, t in zip(index, scores, texts)]
        mpc_s = max(r["seconds"] for r in runs)
        sent = max(r.get("send_bytes", 0) for r in runs)
        return SearchResult(self.name, self.version, k, results, notes, cfg["reveal"], time.perf_counter() - t0, mpc_s, sent)

    def _decode(self, tokens: np.ndarray) -> list[str]:
        if self._tokenizer is None:
            from ..models.tokenizer import Tokenizer

            self._tokenizer = Tokenizer.from_json(self.client.nodes[0].model_tokenizer(self.name, self.version, kind=P.KB))
        tok = self._tokenizer
        return [tok.decode([int(t) for t in row if 0 <= t < tok.vocab_size]) for row in tokens]


def search(client: Client, kb: str, question: str, k: int = 5, *, version: int | None = None, embedder=None) -> SearchResult:
    """Secure top-``k`` search of ``kb`` for ``question`` (opens the KB; for many
    searches keep a :class:`KnowledgeBase`)."""
    t0 = time.perf_counter()
    res = KnowledgeBase(client, kb, version=version, embedder=embedder).search(question, k)
    return dataclasses.replace(res, seconds=time.perf_counter() - t0)


__all__ = ["KnowledgeBase", "Passage", "SearchResult", "clamp_k", "search"]
