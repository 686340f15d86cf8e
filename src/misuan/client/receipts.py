"""The client's audit receipts: signed heads the nodes returned, kept locally.

Every successful response of a node carries ``X-Misuan-Receipt`` (its signed
audit head right after the request). :class:`ReceiptBook` checks the
signature against the node's pinned key and appends the receipt to
``<dir>/<party>.receipts`` (one ``seq hash ts_ms signature`` line each, only
when the head moved). Keys are pinned in ``<dir>/pins.json`` at first sight
(or taken from cluster.toml's ``audit_key``); a node whose key changed is an
:class:`~misuan.errors.IntegrityError`. ``misuan audit verify`` later checks
the nodes' chains against these files: a node cannot drop or rewrite a row it
has already vouched for to a client.
"""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path
from typing import Callable

from .._fs import atomic_write
from ..audit_heads import PINS, SignedHead, check_public_key, read_pins
from ..config import ClusterConfig, PartySpec
from ..errors import IntegrityError


class ReceiptBook:
    """Receipts of one cluster, shared by a client's node connections."""

    def __init__(self, cluster: ClusterConfig, directory: Path | None = None):
        self.cluster = cluster
        self.dir = Path(directory or cluster.receipts_path)
        self._lock = threading.Lock()
        self._last: dict[str, int] = {}
        self._pins: dict[str, str] | None = None

    def __repr__(self) -> str:
        return f"ReceiptBook({str(self.dir)!r})"

    def record(self, party: PartySpec, text: str, served_key: Callable[[], str]) -> SignedHead:
        """Check one receipt of ``party`` and keep it; ``served_key`` asks the node for its key."""
        head = SignedHead.from_receipt(self.cluster.name, party.id, text)
        with self._lock:
            head.verify(self._key(party, served_key))
            if self._last.get(party.id) == head.seq:
                return head
            self._last[party.id] = head.seq
            line = f"{head.seq} {head.hash} {head.ts_ms} {head.signature}\n".encode()
            fd = os.open(self.dir / f"{party.id}.receipts", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
            try:
                os.write(fd, line)  # one write per line: concurrent clients never interleave
            finally:
                os.close(fd)
        return head

    def _key(self, party: PartySpec, served_key: Callable[[], str]) -> str:
        if self._pins is None:
            self.dir.mkdir(parents=True, exist_ok=True, mode=0o700)
            self._pins = read_pins(self.dir)
        pinned = party.audit_key or self._pins.get(party.id)
        if pinned is None:
            pinned = check_public_key(served_key(), f"audit key served by {party.id}")
            self._pins = {**read_pins(self.dir), party.id: pinned}
            atomic_write(self.dir / PINS, json.dumps(self._pins, indent=1, sort_keys=True).encode(), 0o600)
        elif party.id in self._pins and self._pins[party.id] != pinned:
            raise IntegrityError(f"{party.id}: audit key in cluster.toml differs from the one pinned in {self.dir / PINS}")
        return pinned
