"""``misuan model publish``: from the owner's file to shares on every node.

load → canonical layout (matrices pre-transposed, see :mod:`misuan.models.params`)
→ secret-share each tensor on the owner's machine → stream share i to node i
only → every node stores its share encrypted at rest → two-phase commit.

Publishing is atomic: until every node has every tensor nothing is
registered; a failure or interruption aborts the staged upload on every
node, and a failure during the commit round removes the version from the
nodes that had already committed.

The owner also gets a *receipt*: per-tensor salted SHA-256 commitments of the
plaintext weights (the nodes store the commitments; the owner keeps the salt)
so the owner can later prove which weights a hosted version holds.
"""

from __future__ import annotations

import hashlib
import json
import queue
import secrets
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from .. import errors as E
from .._fs import atomic_write
from ..client.client import Client
from ..models.config import N_PARAMS
from ..mpc import _aby3
from ..mpc.shares import encode_share
from .protocol import MODEL

#: progress(done_bytes, total_bytes, tensor_name)
Progress = Callable[[int, int, str], None]


@dataclass(frozen=True)
class PublishResult:
    name: str
    version: int
    tensors: int
    parameters: int
    share_bytes_per_node: int
    seconds: float
    load_seconds: float
    receipt: Path | None

    def to_dict(self) -> dict:
        return {**self.__dict__, "receipt": str(self.receipt) if self.receipt else None}


def hosted_tensors(cfg, params) -> list[tuple[str, np.ndarray]]:
    """The tensors a node stores: the canonical list, without the tied copy of the embedding."""
    from ..models.params import flatten_params

    named = flatten_params(params, cfg)
    if cfg.tie_embeddings:
        named = [(n, a) for n, a in named if n != "lm_head"]
    return named


def commitment(salt: bytes, name: str, x: np.ndarray) -> str:
    h = hashlib.sha256()
    h.update(salt)
    h.update(name.encode() + b"\0")
    h.update(np.ascontiguousarray(x, dtype=np.float32).tobytes())
    return h.hexdigest()


def next_version(client: Client, name: str) -> int:
    versions: list[int] = []
    for i in range(len(client.nodes)):
        try:
            versions += client.nodes[i].show_model(name).get("versions", [])
        except E.NotFound:
            pass
    return max(versions, default=0) + 1


def _default_receipt(name: str, version: int) -> Path:
    return Path.home() / ".misuan" / "receipts" / f"{name}@{version}.json"  # receipts/<owner>/<name>@<v>.json


def publish_model(
    client: Client,
    path: str | Path,
    name: str,
    *,
    progress: Progress | None = None,
    receipt: Path | None | bool = True,
) -> PublishResult:
    """Publish the model at ``path`` (GGUF file or HF directory) as ``name``."""
    from ..models.loader import load_model
    from ..node.assets import check_asset_name

    name = check_asset_name(client.model_ref(name), MODEL)
    t0 = time.perf_counter()
    loaded = load_model(path)
    cfg, params, tokenizer = loaded
    tensors = hosted_tensors(cfg, params)
    load_s = time.perf_counter() - t0
    version = next_version(client, name)
    salt = secrets.token_bytes(32)
    commits = {n: commitment(salt, n, a) for n, a in tensors}
    config = {**cfg.to_dict(), N_PARAMS: int(sum(a.size for _, a in tensors))}
    body = {
        "version": version,
        "kind": "llama",
        "config": config,
        "tokenizer": tokenizer.to_json(),
        "tensors": [{"name": n, "shape": list(a.shape), "commitment": commits[n]} for n, a in tensors],
    }
    nodes = client.nodes
    uids: list[str | None] = [None] * len(nodes)

    def begin(i: int) -> None:
        uids[i] = nodes[i].begin_upload(name, body)

    committed: list[int] = []
    try:
        client.fanout(begin)
        per_node = _stream(client, uids, tensors, progress)
        client.fanout(lambda i: nodes[i].prepare_upload(uids[i]))

        def commit(i: int) -> None:
            nodes[i].commit_upload(uids[i])
            committed.append(i)

        client.fanout(commit)
    except BaseException:
        for i in committed:  # compensate a partial commit round
            try:
                nodes[i].remove_model(name, version)
            except E.MisuanError:
                pass
        for i, uid in enumerate(uids):
            if uid is not None and i not in committed:
                try:
                    nodes[i].abort_upload(uid)
                except E.MisuanError:
                    pass
        raise
    receipt_path = None
    if receipt:
        receipt_path = receipt if isinstance(receipt, Path) else _default_receipt(name, version)
        receipt_path.parent.mkdir(parents=True, exist_ok=True)
        doc = {"model": name, "version": version, "salt": salt.hex(), "commitments": commits, "source": str(path)}
        atomic_write(receipt_path, json.dumps(doc, indent=1).encode(), 0o600)
    return PublishResult(
        name=name,
        version=version,
        tensors=len(tensors),
        parameters=config[N_PARAMS],
        share_bytes_per_node=per_node,
        seconds=time.perf_counter() - t0,
        load_seconds=load_s,
        receipt=receipt_path,
    )


def _stream(client: Client, uids: list[str | None], tensors: list[tuple[str, np.ndarray]], progress: Progress | None) -> int:
    """Share tensor k+1 while tensor k streams to the nodes (two buffer slots)."""
    mpc = client.cluster.mpc
    fast = mpc.protocol == "ABY3" and mpc.field == "FM64" and client.cluster.world_size == 3
    slots = [_aby3.CompressedSharer(mpc.fxp_fraction_bits) for _ in range(2)] if fast else [None, None]
    free = [threading.Semaphore(1), threading.Semaphore(1)]
    q: queue.Queue = queue.Queue(maxsize=1)
    stop = threading.Event()
    values = sum(a.size for _, a in tensors)
    total = values * (16 if fast else 8 * len(client.nodes))

    def share(slot: int, arr: np.ndarray):
        if slots[slot] is not None and arr.size >= 4096:
            return slots[slot].parts(arr)  # seeds replace two of three summands
        return [[encode_share(s)] for s in client.sharer._io.make_shares(np.ascontiguousarray(arr), _secret())]

    def producer() -> None:
        try:
            for k, (tname, arr) in enumerate(tensors):
                slot = k % 2
                while not free[slot].acquire(timeout=0.5):
                    if stop.is_set():
                        return
                if stop.is_set():
                    return
                q.put((tname, share(slot, arr), slot))
            q.put(None)
        except BaseException as exc:  # hand the failure to the consumer
            q.put(exc)

    th = threading.Thread(target=producer, daemon=True, name="misuan-share")
    th.start()
    done = 0
    per_node = 0
    try:
        while True:
            item = q.get()
            if item is None:
                break
            if isinstance(item, BaseException):
                raise item
            tname, frames, slot = item
            client.fanout(lambda i: client.nodes[i].put_tensor(uids[i], tname, frames[i]))
            sizes = [sum(len(p) for p in f) for f in frames]
            per_node += max(sizes)
            done += sum(sizes)
            free[slot].release()
            if progress is not None:
                progress(done, total, tname)
    finally:
        stop.set()
        for s in free:
            s.release()
        th.join(timeout=10)
    return per_node


def _secret():
    from spu import libspu

    return libspu.Visibility.VIS_SECRET


def load_receipt(path: str | Path) -> dict:
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise E.InvalidInput(f"cannot read receipt {path}: {exc}") from None


def check_receipt(receipt: dict, path: str | Path) -> list[str]:
    """Tensors of the model at ``path`` whose commitment differs from the receipt."""
    from ..models.loader import load_model

    cfg, params, _ = load_model(path)
    salt = bytes.fromhex(receipt["salt"])
    return [n for n, a in hosted_tensors(cfg, params) if commitment(salt, n, a) != receipt["commitments"].get(n)]


__all__ = ["publish_model", "PublishResult", "hosted_tensors", "commitment", "load_receipt", "check_receipt"]
