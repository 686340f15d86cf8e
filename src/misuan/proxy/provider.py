"""Where the proxy's models come from: the :class:`BackendProvider` protocol and its
implementation over a :class:`misuan.sdk.Client`.

The HTTP code sees only this protocol and :class:`~misuan.inference.ChatBackend`.
Model ids are full asset names, ``<owner>/<name>``. A RAG backend (a model answering
from a knowledge base under MPC) is listed as ``<owner>/<model>+kb:<owner>/<kb>`` for
every KB chunked with that model's tokenizer, and returned by
:meth:`BackendProvider.backend` as a ChatBackend like any other (retrieval's
``RagModel``, reached through :func:`_rag_model_class` only);
:meth:`BackendProvider.embedder` returns the edge embedder.
"""

from __future__ import annotations

import hashlib
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from .. import errors as E

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np

    from ..inference import ChatBackend
    from ..sdk import Client

#: the separator of a RAG backend's id: ``<model>+kb:<knowledge base>``
RAG_SEPARATOR = "+kb:"
#: chunks a RAG backend puts into the prompt unless the request asks for another ``k``
RAG_DEFAULT_K = 2


@dataclass(frozen=True)
class ModelCard:
    """One entry of ``GET /v1/models``."""

    id: str
    owned_by: str
    created: int
    max_model_len: int
    #: "chat" (a ChatBackend), "rag" (a ChatBackend over a knowledge base) or "embedding"
    kind: str = "chat"

    def to_openai(self) -> dict:
        return {"id": self.id, "object": "model", "created": self.created, "owned_by": self.owned_by, "max_model_len": self.max_model_len}


@runtime_checkable
class Embedder(Protocol):
    dim: int

    def embed(self, texts: list[str]) -> np.ndarray: ...


@runtime_checkable
class BackendProvider(Protocol):
    def models(self) -> list[ModelCard]:
        """The models the caller may use (chat, RAG and embedding)."""
        ...

    def backend(self, model_id: str, *, k: int | None = None) -> ChatBackend:
        """A ready ChatBackend for a listed chat or RAG model (``k``: a RAG backend's
        chunks per answer, ignored otherwise); :class:`misuan.errors.NotFound` otherwise."""
        ...

    def embedder(self, model_id: str) -> Embedder:
        """The embedder behind a listed embedding model; :class:`misuan.errors.NotFound` otherwise."""
        ...

    def protocol(self) -> str:
        """The MPC protocol answers are computed under (``ABY3``, ``CHEETAH``)."""
        ...


class ClientProvider:
    """Hosted models this client's principal may use, as secure ChatBackends."""

    def __init__(self, client: Client, *, cache_s: float = 5.0, embedder_id: str = "misuan/all-MiniLM-L6-v2"):
        self.client = client
        self.cache_s = cache_s
        self.embedder_id = embedder_id
        self._lock = threading.Lock()
        self._listed: tuple[float, list[ModelCard]] = (0.0, [])
        self._context: dict[tuple[str, int], int] = {}
        self._tokenizers: dict[tuple[str, int, str], str] = {}
        self._rag: dict[tuple, ChatBackend] = {}
        #: the listed version of each model, and (model, KB) versions of each RAG id
        self._versions: dict[str, object] = {}
        self._embedder = None

    def protocol(self) -> str:
        return str(self.client.cluster.mpc.protocol).upper()

    def models(self) -> list[ModelCard]:
        with self._lock:
            at, cards = self._listed
            if time.monotonic() - at > self.cache_s:
                chat = self._list()
                cards = chat + self._rag_cards(chat) + self._embedding_cards()
                self._listed = (time.monotonic(), cards)
            return list(cards)

    def _list(self) -> list[ModelCard]:
        from ..hosting import list_models

        latest = _latest(list_models(self.client), "model")
        self._versions.update({name: m["version"] for name, m in latest.items()})
        return [
            ModelCard(id=name, owned_by=m["owner"], created=_epoch(m.get("created")), max_model_len=self._max_len(name, m["version"]))
            for name, m in sorted(latest.items())
        ]

    def _rag_cards(self, chat: list[ModelCard]) -> list[ModelCard]:
        """``M+kb:KB`` for each model and each KB chunked with M's tokenizer (the KB's
        ``tokenizer_sha256``, the fingerprint retrieval records when publishing)."""
        if _rag_model_class() is None:
            return []
        from ..client.assets import list_assets

        kbs = _latest(list_assets(self.client, "kb"), "kb")
        if not kbs:
            return []
        node = self.client.nodes[0]
        family = {name: self._tokenizer_sha(node, "kb", name, kb["version"]) for name, kb in kbs.items()}
        cards = []
        for m in chat:
            sha = self._tokenizer_sha(node, "model", m.id, self._versions[m.id])
            for name, kb in sorted(kbs.items()):
                if family[name] == sha:
                    self._versions[f"{m.id}{RAG_SEPARATOR}{name}"] = (self._versions[m.id], kb["version"])
                    cards.append(
                        ModelCard(f"{m.id}{RAG_SEPARATOR}{name}", kb["owner"], _epoch(kb.get("created")), m.max_model_len, kind="rag")
                    )
        return cards

    def _tokenizer_sha(self, node, kind: str, name: str, version: int) -> str:
        """A model's tokenizer fingerprint, or the one a KB's config records (cached per version)."""
        key = (name, version, kind)
        if key not in self._tokenizers:
            if kind == "kb":
                self._tokenizers[key] = str(node.show_model(name, version, kind)["config"].get("tokenizer_sha256"))
            else:
                self._tokenizers[key] = hashlib.sha256(node.model_tokenizer(name, version).encode()).hexdigest()
        return self._tokenizers[key]

    def _max_len(self, name: str, version: int) -> int:
        key = (name, version)
        if key not in self._context:
            config = self.client.nodes[0].show_model(name, version)["config"]
            self._context[key] = int(config.get("max_seq_len", 0))
        return self._context[key]

    def _embedding_cards(self) -> list[ModelCard]:
        if _embedder_class() is None:
            return []
        return [ModelCard(id=self.embedder_id, owned_by="misuan", created=0, max_model_len=256, kind="embedding")]

    def card(self, model_id: str) -> ModelCard:
        found = [c for c in self.models() if c.id == model_id]
        if not found and "/" not in model_id:  # a bare name is one of the caller's own
            found = [c for c in self.models() if c.id == self.client.model_ref(model_id)]
        if not found:
            raise E.NotFound(f"unknown model {model_id!r}")
        return found[0]

    def backend(self, model_id: str, *, k: int | None = None) -> ChatBackend:
        card = self.card(model_id)
        if card.kind == "rag":
            return self._rag_backend(card.id, RAG_DEFAULT_K if k is None else k)
        if card.kind != "chat":
            raise E.NotFound(f"{model_id!r} is not a chat model")
        with self._lock:  # one runtime per model, even when first asked for twice at once
            return self.client.model(card.id)

    def _rag_backend(self, rag_id: str, k: int) -> ChatBackend:
        model, _, kb = rag_id.partition(RAG_SEPARATOR)
        with self._lock:  # one RagModel per (id, k, versions): its model and KB runtimes are built once
            key = (rag_id, k, self._versions.get(rag_id))
            if key not in self._rag:
                self._rag[key] = _rag_model_class()(self.client, model, kb, k=k, embedder=self._load_embedder())
            return self._rag[key]

    def _load_embedder(self) -> Embedder:
        if self._embedder is None:
            self._embedder = _embedder_class().load()
        return self._embedder

    def embedder(self, model_id: str) -> Embedder:
        card = self.card(model_id)
        if card.kind != "embedding":
            raise E.NotFound(f"{model_id!r} is not an embedding model")
        with self._lock:
            return self._load_embedder()


def _latest(rows: list[dict], kind: str) -> dict[str, dict]:
    """The newest complete version of each asset in a listing."""
    latest: dict[str, dict] = {}
    for m in rows:
        if "state" not in m and m["version"] >= latest.get(m[kind], {}).get("version", -1):
            latest[m[kind]] = m
    return latest


def _rag_model_class():
    """The one entry point into retrieval the proxy uses: ``RagModel(client, model, kb,
    k=, embedder=)``, a ChatBackend (None when retrieval is not installed)."""
    try:
        from ..retrieval.rag import RagModel as cls
    except ImportError:
        return None
    return cls


def _embedder_class():
    try:
        from ..retrieval.embedder import Embedder as cls
    except ImportError:
        return None
    return cls


def _epoch(created) -> int:
    if isinstance(created, (int, float)):
        return int(created)
    if isinstance(created, str):
        from datetime import datetime

        try:
            return int(datetime.fromisoformat(created.replace("Z", "+00:00")).timestamp())
        except ValueError:
            return 0
    return 0
