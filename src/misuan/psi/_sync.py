"""Control messages between the two parties, before libpsi runs.

1. :func:`check_agreement`: both parties send the public view of their spec
   (protocol, receiver, join, normalisation, duplicate policy, *number* of key
   columns, job id, engine version) and both refuse to go on if they differ, so
   a mismatch fails clearly on both sides before any data is read.
2. :func:`run_together`: each party prepares its input in a helper thread while
   the main thread exchanges a status message with the peer every second
   (``busy`` / ``done`` with the distinct-key count / ``failed`` with a reason
   code). A party whose input is bad fails with its own error and the peer
   fails with "peer rejected its input"; neither waits for a timeout. Like
   libpsi's own SyncWait, the heartbeat keeps long preparations from tripping
   the link's receive timeout.

Messages are small JSON strings with public facts only (counts of distinct keys
are revealed by every PSI protocol anyway); never rows, keys or column names.
"""

from __future__ import annotations

import concurrent.futures as cf
import json
import threading
from collections.abc import Callable
from typing import Any, TypeVar

from misuan.errors import ComputeError, InvalidInput
from misuan.psi._link import summarize_error

T = TypeVar("T")

HEARTBEAT_S = 1.0


def _exchange(ctx: Any, rank: int, message: dict[str, Any], stage: str) -> dict[str, Any]:
    try:
        both = ctx.all_gather(json.dumps(message, sort_keys=True))
    except RuntimeError as exc:
        raise ComputeError(f"PSI peer stopped answering during {stage}: {summarize_error(exc)}") from None
    try:
        peer = json.loads(both[1 - rank])
    except (ValueError, IndexError):
        raise ComputeError(f"PSI peer sent a malformed {stage} message") from None
    if not isinstance(peer, dict):
        raise ComputeError(f"PSI peer sent a malformed {stage} message")
    return peer


def check_agreement(ctx: Any, rank: int, view: dict[str, Any]) -> None:
    """Exchange public spec views; raise InvalidInput on both sides if they differ."""
    peer = _exchange(ctx, rank, {"type": "hello", "view": view}, "the spec check")
    peer_view = peer.get("view")
    if peer.get("type") != "hello" or not isinstance(peer_view, dict):
        raise ComputeError("PSI peer does not speak the misuan PSI handshake")
    if peer_view == view:
        return
    diffs = []
    for name in sorted(set(view) | set(peer_view)):
        mine, theirs = view.get(name), peer_view.get(name)
        if mine != theirs:
            first, second = (mine, theirs) if rank == 0 else (theirs, mine)
            diffs.append(f"{name[:40]} (rank 0: {_short(first)}, rank 1: {_short(second)})")
    raise InvalidInput("the two PSI requests differ: " + "; ".join(diffs))


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _failure_code(exc: BaseException) -> str:
    return "invalid_input" if isinstance(exc, InvalidInput) else "internal_error"


def run_together(
    ctx: Any,
    rank: int,
    work: Callable[[threading.Event], T],
    summary: Callable[[T], dict[str, Any]],
    on_tick: Callable[[], None] | None = None,
) -> tuple[T, dict[str, Any]]:
    """Run ``work`` locally while heartbeating with the peer; return (result, peer summary).

    ``work`` receives a cancel event that is set when the peer fails first.
    ``on_tick`` runs on the calling thread once per heartbeat (progress).
    """
    cancel = threading.Event()
    pool = cf.ThreadPoolExecutor(max_workers=1, thread_name_prefix="misuan-psi-prepare")
    future = pool.submit(work, cancel)
    local_error: BaseException | None = None
    try:
        while True:
            try:
                result = future.result(timeout=HEARTBEAT_S)
                status = {"type": "prepare", "state": "done", **summary(result)}
            except cf.TimeoutError:
                status = {"type": "prepare", "state": "busy"}
            except BaseException as exc:  # reported to the peer, then re-raised
                local_error = exc
                status = {"type": "prepare", "state": "failed", "reason": _failure_code(exc)}
            if on_tick is not None:
                on_tick()
            peer = _exchange(ctx, rank, status, "input preparation")
            if local_error is not None:
                raise local_error
            if peer.get("state") == "failed":
                cancel.set()
                reason = peer.get("reason")
                if reason == "invalid_input":
                    raise ComputeError("PSI peer rejected its own input; the job was aborted")
                raise ComputeError("PSI peer failed while preparing its input; the job was aborted")
            if status["state"] == "done" and peer.get("state") == "done":
                return result, peer
    except BaseException:
        cancel.set()
        raise
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
