"""One generation at a time per model, and a short line behind it.

A model's resident runtime is one SPU session on every node: the nodes must run its
programs in the same order, so the engine serves one request at a time per model
(:class:`misuan.client.runtime.ModelRuntime`). The proxy runs one generation per model
and lets ``max_waiting`` more wait their turn; beyond that a request gets 429 at once.
"""

from __future__ import annotations

import threading

from .errors import busy


class Gate:
    def __init__(self, max_waiting: int, retry_after_s: int):
        self.max_waiting = max_waiting
        self.retry_after_s = retry_after_s
        self._lock = threading.Lock()
        self._turns: dict[str, threading.Lock] = {}
        self._queued: dict[str, int] = {}

    def enter(self, key: str) -> Ticket:
        """A place in ``key``'s line, or 429 when the line is full."""
        with self._lock:
            n = self._queued.get(key, 0)
            if n >= 1 + self.max_waiting:
                raise busy(self.retry_after_s, f"{key} is busy ({n} requests running or waiting)")
            self._queued[key] = n + 1
            return Ticket(self, key, self._turns.setdefault(key, threading.Lock()))

    def load(self) -> dict[str, int]:
        """Requests running or waiting, per model."""
        with self._lock:
            return {k: v for k, v in self._queued.items() if v}

    def _leave(self, key: str) -> None:
        with self._lock:
            self._queued[key] -= 1


class Ticket:
    def __init__(self, gate: Gate, key: str, turn: threading.Lock):
        self._gate, self._key, self._turn = gate, key, turn
        self._held = False
        self._left = False

    def wait_turn(self, abandoned: threading.Event) -> bool:
        """Block until it is this request's turn (False if abandoned meanwhile)."""
        while not abandoned.is_set():
            if self._turn.acquire(timeout=0.2):
                self._held = True
                return True
        return False

    def leave(self) -> None:
        if self._left:
            return
        self._left = True
        if self._held:
            self._turn.release()
        self._gate._leave(self._key)
