"""Cross-recorded, signed audit heads (the node side).

* :meth:`AuditWitness.signed_head` signs this node's current head; it answers
  ``GET /v1/audit/head`` and is the receipt on every client response
  (:class:`ReceiptMiddleware`).
* A background thread fetches every peer's signed head every
  ``timeouts.audit_peer_s``, checks the signature against the key pinned for
  that peer (cluster.toml's ``audit_key``, else the key seen first, kept in the
  ``peer_keys`` table and in an ``audit.peer_key`` row), and appends an
  ``audit.peer_head`` row with the head and its signature — only when the peer
  logged something other than peer-head rows since the last recorded head, so
  idle nodes do not record each other's records forever.

A peer whose head went back below one already recorded, or whose key changed,
gets one ``status="inconsistent"`` row (and a log line) per event.
"""

from __future__ import annotations

import json
import logging
import ssl
import threading
import time

import httpx
from starlette.concurrency import run_in_threadpool

from ..audit_heads import SignedHead
from ..config import NodeConfig, PartySpec
from ..errors import IntegrityError
from .audit import PEER_HEAD_OP, AuditLog
from .db import Database

log = logging.getLogger(__name__)
HEAD_PATH = "/v1/audit/head"


class AuditWitness:
    def __init__(self, cfg: NodeConfig, db: Database, audit: AuditLog, signer):
        self.cfg, self.db, self.audit, self.signer = cfg, db, audit, signer
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True, name="audit-witness")
        self._flagged: set[tuple[str, str]] = set()
        self._http: httpx.Client | None = None

    # ------------------------------------------------------------ own head

    def signed_head(self) -> SignedHead:
        seq, h = self.audit.head()
        return self.signer.sign(seq, h, int(time.time() * 1000))

    def head_view(self) -> dict:
        """The body of ``GET /v1/audit/head``: a count and a hash, signed."""
        head = self.signed_head()
        return {
            **head.to_dict(),
            "cluster": self.cfg.cluster.name,
            "public_key": self.signer.public_key,
            "last_op_seq": self.audit.last_op_seq(),
        }

    # ------------------------------------------------------------ peers

    def start(self) -> None:
        if self.cfg.cluster.world_size > 1:
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=10)
        if self._http is not None:
            self._http.close()

    def _loop(self) -> None:
        t = self.cfg.cluster.timeouts
        verify: ssl.SSLContext | bool = True
        if self.cfg.cluster.tls:
            verify = ssl.create_default_context(cafile=str(self.cfg.cluster.ca_cert))
        # short: a hung peer must not hold up the others or the node's shutdown
        self._http = httpx.Client(timeout=httpx.Timeout(min(t.http_read_s, 5.0), connect=t.http_connect_s), verify=verify)
        while not self._stop.wait(t.audit_peer_s):
            for peer in self.cfg.cluster.parties:
                if peer.rank == self.cfg.rank or self._stop.is_set():
                    continue
                try:
                    self.observe(peer, self._fetch(peer))
                except (httpx.HTTPError, ValueError, KeyError, TypeError):
                    log.debug("audit head of %s unavailable", peer.id)  # down or restarting: next round
                except Exception:  # keep the node up; the next round retries
                    log.exception("recording the audit head of %s failed", peer.id)

    def _fetch(self, peer: PartySpec) -> dict:
        assert self._http is not None
        resp = self._http.get(peer.control_url + HEAD_PATH)
        resp.raise_for_status()
        body = resp.json()
        if not isinstance(body, dict):
            raise ValueError("head is not an object")
        return body

    def observe(self, peer: PartySpec, body: dict) -> bool:
        """Check one fetched head of ``peer``; record it if new. True if recorded."""
        head = SignedHead(self.cfg.cluster.name, peer.id, int(body["seq"]), str(body["hash"]), int(body["ts_ms"]), str(body["signature"]))
        key = self._pinned_key(peer, str(body["public_key"]))
        if key is None:
            return False
        try:
            head.verify(key)
        except IntegrityError as exc:
            self._flag(peer, "bad-signature", {"reason": str(exc)})
            return False
        last_seq, last_hash = self._last_recorded(peer)
        if head.seq < last_seq or (head.seq == last_seq and head.hash != last_hash):
            self._flag(peer, f"regressed-{head.seq}", {"seq": head.seq, "recorded_seq": last_seq})
            return False
        if int(body.get("last_op_seq", head.seq)) <= last_seq:
            return False  # only peer-head rows since the last record: nothing new to witness
        self.audit.append(
            PEER_HEAD_OP,
            asset=f"party:{peer.id}",
            requester="system",
            detail={"peer": peer.id, "seq": head.seq, "hash": head.hash, "ts_ms": head.ts_ms, "signature": head.signature},
        )
        return True

    def _pinned_key(self, peer: PartySpec, served: str) -> str | None:
        """The key to check ``peer``'s heads with; pins ``served`` at first sight."""
        if peer.audit_key is not None:
            pinned = peer.audit_key
        else:
            row = self.db.query("SELECT public_key FROM peer_keys WHERE party=?", (peer.id,))
            if not row:
                with self.db.tx() as conn:
                    conn.execute("INSERT OR IGNORE INTO peer_keys VALUES (?,?,?)", (peer.id, served, time.time()))
                self.audit.append(
                    "audit.peer_key", asset=f"party:{peer.id}", requester="system", detail={"peer": peer.id, "public_key": served}
                )
                return served
            pinned = row[0][0]
        if served != pinned:
            self._flag(peer, f"key-{served}", {"public_key": served, "pinned": pinned})
            return None
        return pinned

    def _last_recorded(self, peer: PartySpec) -> tuple[int, str]:
        row = self.db.query(
            "SELECT detail FROM audit WHERE op=? AND asset=? AND status='ok' ORDER BY seq DESC LIMIT 1", (PEER_HEAD_OP, f"party:{peer.id}")
        )
        if not row:
            return 0, ""
        d = json.loads(row[0][0])
        return int(d["seq"]), str(d["hash"])

    def _flag(self, peer: PartySpec, what: str, detail: dict) -> None:
        if (peer.id, what) in self._flagged:
            return
        self._flagged.add((peer.id, what))
        log.error("audit head of %s is inconsistent: %s", peer.id, what.split("-")[0])
        self.audit.append(
            PEER_HEAD_OP, asset=f"party:{peer.id}", requester="system", status="inconsistent", detail={"peer": peer.id, **detail}
        )


# ---------------------------------------------------------------- receipts

#: routes that answer without a receipt (no principal, nothing audited)
_NO_RECEIPT = ("/v1/health", HEAD_PATH)


class ReceiptMiddleware:
    """ASGI middleware: every successful ``/v1/…`` response carries the node's
    signed head taken after the handler ran (header ``X-Misuan-Receipt``), so the
    head covers every row the request wrote. One small signature per response."""

    def __init__(self, app, witness: AuditWitness):
        self.app, self.witness = app, witness

    async def __call__(self, scope, receive, send):
        path = scope.get("path", "") if scope["type"] == "http" else ""
        if not path.startswith("/v1/") or path in _NO_RECEIPT:
            return await self.app(scope, receive, send)

        async def send_with_receipt(message):
            if message["type"] == "http.response.start" and message["status"] < 400:
                head = await run_in_threadpool(self.witness.signed_head)
                message = {**message, "headers": [*message.get("headers", []), (b"x-misuan-receipt", head.receipt().encode())]}
            await send(message)

        await self.app(scope, receive, send_with_receipt)
