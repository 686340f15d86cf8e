"""Sessions: one worker process, one link port, one SPU runtime each.

A session moves through ``reserved → linked → (running ↔ linked)* → closed``
or ``failed``. Any fatal error (a peer lost, a link timeout, a worker crash)
kills the worker and frees the port; the node itself stays up. Sessions idle
for longer than the configured limit are reaped.

This module is the registry and lifecycle (create, link, close, reap); what a
session's worker is asked to do is in :mod:`.session_ops`, the worker processes
in :mod:`.workers`, the name rules in :mod:`.names`.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from ..config import NodeConfig
from ..errors import ComputeError, Conflict, InvalidInput, MisuanError, NotFound
from .audit import AuditLog
from .db import Database
from .names import CLIENT_VAR_RE, SESSION_ID_RE, VAR_RE, check_client_var_name, check_session_id, check_var_name
from .session_ops import SessionOps
from .workers import WorkerHandle, Zygote

__all__ = [
    "CLIENT_VAR_RE",
    "SESSION_ID_RE",
    "VAR_RE",
    "Session",
    "SessionManager",
    "WorkerHandle",
    "Zygote",
    "check_client_var_name",
    "check_session_id",
    "check_var_name",
]


@dataclass
class Session:
    id: str
    principal: str
    kind: str
    port: int
    worker: WorkerHandle
    created: float = field(default_factory=time.time)
    last_used: float = field(default_factory=time.monotonic)
    state: str = "reserved"
    bytes_in: int = 0
    bytes_out: int = 0
    runs: int = 0
    busy: threading.Lock = field(default_factory=threading.Lock)
    #: names the worker holds that this principal may read back.
    readable: set[str] = field(default_factory=set)
    #: every variable name the worker holds.
    held: set[str] = field(default_factory=set)
    #: a node-internal session (a model runtime): unreachable through client routes.
    internal: bool = False

    def __repr__(self) -> str:
        return f"Session({self.id!r}, {self.kind}, {self.state}, port={self.port})"


class SessionManager(SessionOps):
    """All sessions of one node."""

    def __init__(self, cfg: NodeConfig, db: Database, audit: AuditLog, *, max_sessions: int | None = None):
        self.cfg = cfg
        self.db = db
        self.audit = audit
        lo, hi = cfg.party.link_ports
        self._ports = list(range(lo, hi + 1))
        self.max_sessions = max_sessions or len(self._ports)
        self._next_port = 0
        self._sessions: dict[str, Session] = {}
        self._extra_ports: set[int] = set()
        self._lock = threading.Lock()
        self.zygote = Zygote(cfg.state_dir / "logs", cfg.compute_threads_or_auto())
        self._stop = threading.Event()
        self._reaper = threading.Thread(target=self._reap_loop, daemon=True, name="session-reaper")

    def start(self) -> None:
        self.zygote.start()
        self._reaper.start()

    # ------------------------------------------------------------ lifecycle

    def _port_free(self, port: int) -> bool:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind((self.cfg.party.link_host if self.cfg.party.link_host != "localhost" else "127.0.0.1", port))
            except OSError:
                return False
        return True

    def reserve_port(self) -> int:
        """A link port for a job that is not a session (a capability's job); release it after."""
        with self._lock:
            port = self._reserve_port()
            self._extra_ports.add(port)
            return port

    def release_port(self, port: int) -> None:
        with self._lock:
            self._extra_ports.discard(port)

    def _reserve_port(self) -> int:
        used = {s.port for s in self._sessions.values() if s is not None} | self._extra_ports
        n = len(self._ports)
        for k in range(n):
            port = self._ports[(self._next_port + k) % n]
            if port not in used and self._port_free(port):
                self._next_port = (self._next_port + k + 1) % n
                return port
        raise Conflict("no free link port on this node; close sessions or widen link_ports")

    def create(self, sid: str, principal: str, kind: str = "run") -> Session:
        """A client's session."""
        return self._create(sid, principal, kind, internal=False)

    def create_internal(self, sid: str, principal: str, kind: str) -> Session:
        """A node-internal session (a model runtime), unreachable through client routes:
        node core only."""
        return self._create(sid, principal, kind, internal=True)

    def _create(self, sid: str, principal: str, kind: str, *, internal: bool) -> Session:
        check_session_id(sid)
        with self._lock:
            if sid in self._sessions:
                raise Conflict("session id already in use")
            if len(self._sessions) >= self.max_sessions:
                raise Conflict(f"too many open sessions ({self.max_sessions})")
            port = self._reserve_port()
            # placeholder so concurrent creates do not take the same port
            self._sessions[sid] = None  # type: ignore[assignment]
        try:
            worker = self.zygote.spawn()
        except MisuanError:
            with self._lock:
                self._sessions.pop(sid, None)
            raise
        sess = Session(id=sid, principal=principal, kind=kind, port=port, worker=worker, internal=internal)
        with self._lock:
            self._sessions[sid] = sess
        with self.db.tx() as conn:
            conn.execute(
                "INSERT OR REPLACE INTO sessions (id, principal, kind, state, created) VALUES (?,?,?,?,?)",
                (sid, principal, kind, sess.state, sess.created),
            )
        self.audit.append("session.open", asset=kind, requester=principal, detail={"session": sid})
        return sess

    def get(self, sid: str, principal: str) -> Session:
        """A client's own session (never a node-internal one)."""
        with self._lock:
            sess = self._sessions.get(sid)
        if sess is None or sess.internal or sess.principal != principal:
            raise NotFound("unknown session")
        sess.last_used = time.monotonic()
        return sess

    def _fail(self, sess: Session, reason: str) -> None:
        sess.state = "failed"
        self._end(sess, status="failed", reason=reason)

    def _call(self, sess: Session, header: dict, payload: bytes = b"", timeout: float | None = None):
        if not sess.busy.acquire(blocking=False):
            raise Conflict("session is busy with another request")
        try:
            if sess.state in ("closed", "failed"):
                raise NotFound("unknown session")
            try:
                return sess.worker.call(header, payload, timeout)
            except ComputeError as exc:
                if not sess.worker.alive():
                    self._fail(sess, str(exc))
                raise
        finally:
            sess.busy.release()
            sess.last_used = time.monotonic()

    def link(self, sess: Session, addresses: list[str], runtime_options: dict | None = None) -> float:
        cl = self.cfg.cluster
        if sess.state != "reserved":
            raise Conflict("session is already linked")
        if len(addresses) != cl.world_size:
            raise InvalidInput(f"addresses must list {cl.world_size} parties")
        for party, addr in zip(cl.parties, addresses):
            host, _, port = addr.rpartition(":")
            if host != party.link_host or not port.isdigit() or not party.link_ports[0] <= int(port) <= party.link_ports[1]:
                raise InvalidInput(f"address of party {party.rank} is not within its configured link ports")
        if addresses[self.cfg.rank] != self.cfg.party.link_address(sess.port):
            raise InvalidInput("own address does not match the port reserved for this session")
        tls = None
        if cl.tls:
            tls = {"cert": str(self.cfg.tls_cert), "key": str(self.cfg.tls_key), "ca": str(cl.ca_cert)}
        header = {
            "op": "link",
            "link_id": f"misuan-{sess.id}",
            "rank": self.cfg.rank,
            "addresses": addresses,
            "recv_timeout_ms": cl.timeouts.link_recv_ms,
            "connect_timeout_s": cl.timeouts.link_connect_s,
            "tls": tls,
            "mpc": {"protocol": cl.mpc.protocol, "field": cl.mpc.field, "fxp_fraction_bits": cl.mpc.fxp_fraction_bits},
            "runtime_options": runtime_options or {},
        }
        try:
            reply, _ = self._call(sess, header, timeout=cl.timeouts.link_connect_s + 30)
        except ComputeError as exc:
            self._fail(sess, str(exc))
            raise
        sess.state = "linked"
        return reply["seconds"]

    def _require_linked(self, sess: Session) -> None:
        if sess.state not in ("linked", "running"):
            raise Conflict(f"session is {sess.state}, not linked")

    def _op_timeout(self) -> float:
        return self.cfg.cluster.timeouts.link_recv_ms / 1000 + 60

    def close(self, sid: str, principal: str, *, status: str = "ok", reason: str = "") -> bool:
        """Close a client's own session (never a node-internal one)."""
        sess = self._take(sid, lambda s: not s.internal and s.principal == principal)
        return self._finish(sess, status, reason)

    def close_internal(self, sid: str, *, reason: str = "") -> bool:
        """Close a node-internal session (a model runtime): node core only."""
        return self._finish(self._take(sid, lambda s: s.internal), "ok", reason)

    def _end(self, sess: Session, *, status: str = "ok", reason: str = "") -> None:
        """Close ``sess`` itself (whatever its kind), unless it is closed already."""
        try:
            self._finish(self._take(sess.id, lambda s: s is sess), status, reason)
        except NotFound:
            pass  # already closed

    def _take(self, sid: str, belongs: Callable[[Session], bool]) -> Session:
        """Remove session ``sid`` from the registry if ``belongs`` accepts it; else NotFound."""
        with self._lock:
            sess = self._sessions.get(sid)
            if sess is None or not belongs(sess):
                raise NotFound("unknown session")
            del self._sessions[sid]
        return sess

    def _finish(self, sess: Session, status: str, reason: str) -> bool:
        sid = sess.id
        # A running program cannot be interrupted: killing the worker cancels it.
        if sess.busy.locked():
            sess.worker.kill()
        else:
            sess.worker.close()
        final = "failed" if sess.state == "failed" or status == "failed" else "closed"
        sess.state = final
        if final == "closed" and sess.worker.log_path is not None:
            sess.worker.log_path.unlink(missing_ok=True)  # keep logs of failed sessions only
        with self.db.tx() as conn:
            conn.execute(
                "UPDATE sessions SET state=?, closed=?, bytes_in=?, bytes_out=? WHERE id=?",
                (final, time.time(), sess.bytes_in, sess.bytes_out, sid),
            )
        self.audit.append(
            "session.close",
            asset=sess.kind,
            requester=sess.principal,
            bytes_in=sess.bytes_in,
            bytes_out=sess.bytes_out,
            status=final,
            detail={"session": sid, "runs": sess.runs, **({"reason": reason[:200]} if reason else {})},
        )
        return True

    # ------------------------------------------------------------ upkeep

    def list(self) -> list[Session]:
        with self._lock:
            return [s for s in self._sessions.values() if s is not None]

    def _reap_loop(self) -> None:
        idle = self.cfg.cluster.timeouts.session_idle_s
        while not self._stop.wait(min(5.0, idle / 2)):
            now = time.monotonic()
            for s in self.list():
                dead = not s.worker.alive() and not s.busy.locked()
                idle_out = not s.internal and now - s.last_used > idle
                if dead or (idle_out and not s.busy.locked()):
                    self._end(s, status="failed" if dead else "ok", reason="worker exited" if dead else "idle timeout")

    def shutdown(self) -> None:
        self._stop.set()
        for s in self.list():
            try:
                self._end(s, reason="node shutdown")
            except MisuanError:
                pass
        with self.zygote._lock:
            self.zygote.close()

    def workers_rss(self) -> int:
        import psutil

        total = 0
        for s in self.list():
            try:
                total += psutil.Process(s.worker.pid).memory_info().rss
            except psutil.Error:
                pass
        return total
