"""Publishing an asset from the owner's machine: secret-share each tensor here, stream
share i to node i only, and register it on every node with a two-phase commit.

Atomic: until every node has every tensor nothing is registered; a failure or
interruption aborts the staged upload on every node, and a failure during the
commit round removes the version from the nodes that had already committed.
Used by every asset kind (models, knowledge bases).
"""

from __future__ import annotations

import queue
import threading
from typing import Callable

import numpy as np

from .. import errors as E
from ..mpc import _aby3
from ..mpc.shares import encode_share
from .client import Client

#: progress(done_bytes, total_bytes, tensor_name)
Progress = Callable[[int, int, str], None]


def next_version(client: Client, name: str, kind: str = "model") -> int:
    versions: list[int] = []
    for i in range(len(client.nodes)):
        try:
            versions += client.nodes[i].show_model(name, kind=kind).get("versions", [])
        except E.NotFound:
            pass
    return max(versions, default=0) + 1


def publish_tensors(
    client: Client, kind: str, name: str, body: dict, tensors: list[tuple[str, np.ndarray]], progress: Progress | None = None
) -> int:
    """Stage ``tensors`` (float32 as fixed point, integers as integers) on every node
    under ``body`` (version, architecture, config, tokenizer, tensor list) and commit;
    the share bytes each node received."""
    version = body["version"]
    nodes = client.nodes
    uids: list[str | None] = [None] * len(nodes)

    def begin(i: int) -> None:
        uids[i] = nodes[i].begin_upload(name, body, kind=kind)

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
                nodes[i].remove_model(name, version, kind=kind)
            except E.MisuanError:
                pass
        for i, uid in enumerate(uids):
            if uid is not None and i not in committed:
                try:
                    nodes[i].abort_upload(uid)
                except E.MisuanError:
                    pass
        raise
    return per_node


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
        if slots[slot] is not None and arr.size >= 4096 and arr.dtype.kind == "f":
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


def _secret():
    from spu import libspu

    return libspu.Visibility.VIS_SECRET


__all__ = ["Progress", "next_version", "publish_tensors"]
