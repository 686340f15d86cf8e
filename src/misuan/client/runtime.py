"""Client handle on an asset's resident runtime (the same one on every node):
a model's (``kind="model"``) or a knowledge base's (``kind="kb"``)."""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field

import numpy as np

from .. import errors as E
from ..mpc.shares import SecretShare
from .client import Client


@dataclass
class ModelRuntime:
    """A model loaded into a warm SPU runtime on every node."""

    client: Client
    name: str
    version: int
    runtime_id: str
    #: seconds spent linking + loading, when this handle built the runtime.
    load_seconds: float = 0.0
    #: the asset kind (``model``, ``kb``)
    kind: str = "model"
    _compiled: set = field(default_factory=set, repr=False)

    def __repr__(self) -> str:
        return f"ModelRuntime({self.name}@{self.version}, {self.runtime_id})"

    @classmethod
    def ensure(cls, client: Client, name: str, version: int | None = None, kind: str = "model") -> "ModelRuntime":
        """Use the resident runtime if every node has the same one; else build it."""
        import time

        name = client.model_ref(name)
        states = client.fanout(lambda i: client.nodes[i].runtime_state(name, version, kind))
        versions = {s["version"] for s in states}
        if len(versions) != 1:
            raise E.ConfigError(f"nodes disagree on the latest version of {name!r}: {sorted(versions)}")
        version = versions.pop()
        ids = {s["runtime_id"] for s in states}
        if len(ids) == 1 and None not in ids and all(s["state"] == "ready" for s in states):
            return cls(client, name, version, ids.pop(), kind=kind)
        rid = secrets.token_hex(12)
        t0 = time.perf_counter()
        prepared = client.fanout(lambda i: client.nodes[i].runtime_prepare(name, version, rid, kind))
        addresses = [p["link_address"] for p in prepared]
        client.fanout(lambda i: client.nodes[i].runtime_link(name, version, rid, addresses, kind))
        return cls(client, name, version, rid, time.perf_counter() - t0, kind)

    def compile(self, program: str, params: dict | None = None) -> None:
        """Have every node compile ``program`` now; all must agree on its hash."""
        key = (program, tuple(sorted((params or {}).items())))
        if key in self._compiled:
            return
        res = self.client.fanout(lambda i: self.client.nodes[i].program_compile(self.name, self.version, program, params, kind=self.kind))
        hashes = {r["sha256"] for r in res}
        if len(hashes) != 1:
            raise E.IntegrityError(f"nodes compiled different executables for {program}; refusing to run")
        self._compiled.add(key)

    def request(self) -> "RuntimeRequest":
        return RuntimeRequest(self, secrets.token_hex(12))


@dataclass
class RuntimeRequest:
    """One request's inputs/outputs inside a model runtime; free it with ``end``."""

    runtime: ModelRuntime
    id: str

    def _fan(self, fn):
        c = self.runtime.client
        return c.fanout(fn)

    def put(self, var: str, x: np.ndarray) -> None:
        rt = self.runtime
        frames = rt.client.sharer.share_frames(np.asarray(x))
        self._fan(lambda i: rt.client.nodes[i].runtime_put(rt.name, rt.version, rt.runtime_id, self.id, var, frames[i], kind=rt.kind))

    def run(self, program: str, params: dict | None = None, settings: dict | None = None) -> list[dict]:
        """Run ``program`` (compiled for ``params``); ``settings`` are run-time public
        parameters that do not change the program (e.g. a sampling seed and temperature)."""
        rt = self.runtime
        rt.compile(program, params)
        body = {**(params or {}), **(settings or {})}
        return self._fan(lambda i: rt.client.nodes[i].runtime_run(rt.name, rt.version, rt.runtime_id, self.id, program, body, kind=rt.kind))

    def reveal(self, var: str) -> np.ndarray:
        """Reconstruct an output here, on the requester's machine."""
        rt = self.runtime
        shares = self._fan(lambda i: rt.client.nodes[i].runtime_get(rt.name, rt.version, rt.runtime_id, self.id, var, kind=rt.kind))
        return rt.client.sharer.reveal([SecretShare(s) for s in shares])

    def reveal_many(self, names: list[str]) -> dict[str, np.ndarray]:
        """Reconstruct several outputs here, fetching every node's shares in one fan-out."""
        rt = self.runtime

        def fetch(i: int) -> list[bytes]:
            return [rt.client.nodes[i].runtime_get(rt.name, rt.version, rt.runtime_id, self.id, v, kind=rt.kind) for v in names]

        per_node = self._fan(fetch)  # [node][var]
        return {v: rt.client.sharer.reveal([SecretShare(node[j]) for node in per_node]) for j, v in enumerate(names)}

    def end(self) -> None:
        rt = self.runtime
        try:
            self._fan(lambda i: rt.client.nodes[i].runtime_end(rt.name, rt.version, rt.runtime_id, self.id, kind=rt.kind))
        except E.NotFound:
            pass

    def __enter__(self) -> "RuntimeRequest":
        return self

    def __exit__(self, *exc) -> None:
        self.end()
