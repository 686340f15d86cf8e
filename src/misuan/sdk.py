"""The public :class:`Client`: the generic client plus each capability's edge functions.

:class:`misuan.client.client.Client` knows no capability (fan-out, sessions,
``run``); the capabilities' edge modules take a client as their first argument.
This class, above both, offers them as methods, so ``cluster.client().chat(...)``
reads as before, with no import circle between the client and its capabilities.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator

from .client import client as core
from .config import ClusterConfig, load_cluster
from .identity import Identity


class Client(core.Client):
    def __init__(self, cluster: ClusterConfig, identity: Identity | str | Path | None = None):
        super().__init__(cluster, identity)
        self._models: dict[tuple, Any] = {}

    # ------------------------------------------------------------ inference

    def model(self, name: str, version: int | None = None):
        """A hosted model ready for secure generation (its runtime is loaded on first use)."""
        from .inference import client as inference

        return inference.model(self, name, version, self._models)

    def chat(
        self,
        model: str,
        messages: list[dict],
        *,
        max_tokens: int = 128,
        temperature: float = 0.0,
        top_p: float = 1.0,
        seed: int | None = None,
        fixed_length: bool = False,
        stop: tuple[str, ...] = (),
        stats=None,
        version: int | None = None,
        kb: str | None = None,
        k: int = 2,
    ) -> Iterator[str]:
        """Yield the answer's text pieces as the nodes produce them (prompt and answer stay
        secret). With ``kb``, the answer draws on the ``k`` chunks of that knowledge base
        closest to the last user message, retrieved and fed to the model on the nodes
        without anyone seeing which (:class:`misuan.retrieval.rag.RagModel`)."""
        from .inference import client as inference

        if kb is not None:
            from .retrieval.rag import RagModel

            backend = RagModel(self, model, kb, k=k)
        else:
            backend = self.model(model, version)
        return inference.chat(
            backend,
            messages,
            max_tokens=max_tokens,
            temperature=temperature,
            top_p=top_p,
            seed=seed,
            fixed_length=fixed_length,
            stop=stop,
            stats=stats,
        )

    # ------------------------------------------------------------ retrieval

    def publish_kb(self, path: str | Path, name: str, model: str, **kwargs):
        """Chunk, embed and secret-share documents as a knowledge base; see :func:`misuan.retrieval.publish.publish_kb`."""
        from .retrieval.publish import publish_kb

        return publish_kb(self, path, name, model, **kwargs)

    def knowledge_base(self, kb: str, version: int | None = None, embedder=None):
        """A KB opened for repeated secure searches (:class:`misuan.retrieval.client.KnowledgeBase`)."""
        from .retrieval.client import KnowledgeBase

        return KnowledgeBase(self, kb, version=version, embedder=embedder)

    def search(self, kb: str, question: str, k: int = 5, **kwargs):
        """Secure top-k search of a knowledge base; see :func:`misuan.retrieval.client.search`."""
        from .retrieval.client import search

        return search(self, kb, question, k, **kwargs)

    # ------------------------------------------------------------ PSI

    def psi(self, parties: dict, keys, **kwargs):
        """Private set intersection between two parties' node-local CSVs; see :func:`misuan.psi.client.run_psi`."""
        from .psi.client import run_psi

        return run_psi(self, parties, keys, **kwargs)


def connect(cluster_file: str | Path, identity: Identity | str | Path | None = None) -> Client:
    """A client for an already running cluster described by ``cluster_file``, acting
    as ``identity`` (an :class:`~misuan.identity.Identity` or a key file; default:
    the cluster file's ``key_file``)."""
    return Client(load_cluster(cluster_file), identity)
