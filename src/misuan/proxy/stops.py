"""Stop strings at the proxy: no prefix of a stop string is ever sent.

The engines honour ``GenerationParams.stop`` themselves; this filter makes the proxy
hold to OpenAI's contract for any ChatBackend: text that could still become a stop
string is held back until it cannot, and the text from a stop string on is dropped.
"""

from __future__ import annotations


class StopFilter:
    def __init__(self, stops: tuple[str, ...] = ()):
        self._stops = tuple(s for s in stops if s)
        self._held = ""
        self.stopped = False

    def push(self, text: str) -> str:
        """The part of ``held + text`` that can no longer start or be a stop string."""
        if self.stopped:
            return ""
        pending = self._held + text
        hits = [i for i in (pending.find(s) for s in self._stops) if i >= 0]
        if hits:
            self.stopped, self._held = True, ""
            return pending[: min(hits)]
        hold = max((_overlap(pending, s) for s in self._stops), default=0)
        self._held = pending[len(pending) - hold :]
        return pending[: len(pending) - hold]

    def finish(self) -> str:
        out, self._held = ("" if self.stopped else self._held), ""
        return out


def _overlap(text: str, stop: str) -> int:
    """The longest suffix of ``text`` that is a proper prefix of ``stop``."""
    for k in range(min(len(text), len(stop) - 1), 0, -1):
        if text.endswith(stop[:k]):
            return k
    return 0
