"""Stage bookkeeping and progress events for one PSI party."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from misuan.psi.result import PsiProgress, overall_fraction

log = logging.getLogger(__name__)

ProgressCallback = Callable[[PsiProgress], None]


class StageTracker:
    """Times the stages and emits :class:`PsiProgress` events.

    Helper threads may call :meth:`set_fraction`; callbacks only ever run on the
    thread that calls :meth:`enter`, :meth:`leave` or :meth:`emit` (the engine's
    calling thread). A failing callback is logged and otherwise ignored, so a
    broken progress sink cannot break the protocol for the peer.
    """

    def __init__(self, callback: ProgressCallback | None) -> None:
        self._callback = callback
        self._lock = threading.Lock()
        self._start = self._stage_start = time.monotonic()
        self._stage = "link"
        self._fraction = 0.0
        self.seconds: list[tuple[str, float]] = []

    def elapsed(self) -> float:
        return time.monotonic() - self._start

    def stage_elapsed(self) -> float:
        return time.monotonic() - self._stage_start

    def enter(self, stage: str) -> None:
        with self._lock:
            self._stage, self._fraction = stage, 0.0
            self._stage_start = time.monotonic()
        self.emit()

    def leave(self) -> None:
        with self._lock:
            self._fraction = 1.0
            self.seconds.append((self._stage, time.monotonic() - self._stage_start))
        self.emit()

    def set_fraction(self, fraction: float) -> None:
        """Record progress within the current stage (thread-safe, never goes back)."""
        with self._lock:
            self._fraction = max(self._fraction, min(1.0, fraction))

    def emit(self, stage: str | None = None, fraction: float | None = None) -> None:
        """Send the current (or the given) state to the callback."""
        if self._callback is None:
            return
        with self._lock:
            stage = stage or self._stage
            fraction = self._fraction if fraction is None else fraction
        event = PsiProgress(
            stage=stage,
            stage_fraction=round(fraction, 4),
            fraction=round(1.0 if stage == "done" else overall_fraction(stage, fraction), 4),
            elapsed_s=round(self.elapsed(), 3),
        )
        try:
            self._callback(event)
        except Exception:
            log.exception("PSI progress callback failed")
