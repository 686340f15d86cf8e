"""Where the proxy's models come from: the :class:`BackendProvider` protocol and its
implementation over a :class:`misuan.sdk.Client`.

The HTTP code sees only this protocol and :class:`~misuan.inference.ChatBackend`.
Model ids are full asset names, ``<owner>/<name>``. The seam for retrieval: a RAG
backend will be listed as ``<owner>/<model>+kb:<owner>/<kb>`` (a model answering over a
knowledge base) and returned by :meth:`BackendProvider.backend` as a ChatBackend like
any other; :meth:`BackendProvider.embedder` returns the edge embedder once it exists.
"""

from __future__ import annotations

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

    def backend(self, model_id: str) -> ChatBackend:
        """A ready ChatBackend for a listed chat or RAG model; :class:`misuan.errors.NotFound` otherwise."""
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
        self._embedder = None

    def protocol(self) -> str:
        return str(self.client.cluster.mpc.protocol).upper()

    def models(self) -> list[ModelCard]:
        with self._lock:
            at, cards = self._listed
            if time.monotonic() - at > self.cache_s:
                cards = self._list() + self._embedding_cards()
                self._listed = (time.monotonic(), cards)
            return list(cards)

    def _list(self) -> list[ModelCard]:
        from ..hosting import list_models

        latest: dict[str, dict] = {}
        for m in list_models(self.client):
            if "state" not in m and m["version"] >= latest.get(m["model"], {}).get("version", -1):
                latest[m["model"]] = m
        return [
            ModelCard(id=name, owned_by=m["owner"], created=_epoch(m.get("created")), max_model_len=self._max_len(name, m["version"]))
            for name, m in sorted(latest.items())
        ]

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

    def backend(self, model_id: str) -> ChatBackend:
        card = self.card(model_id)
        if card.kind != "chat":  # RAG backends join here once retrieval lands
            raise E.NotFound(f"{model_id!r} is not a chat model")
        with self._lock:  # one runtime per model, even when first asked for twice at once
            return self.client.model(card.id)

    def embedder(self, model_id: str) -> Embedder:
        card = self.card(model_id)
        if card.kind != "embedding":
            raise E.NotFound(f"{model_id!r} is not an embedding model")
        with self._lock:
            if self._embedder is None:
                self._embedder = _embedder_class().load()
            return self._embedder


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
