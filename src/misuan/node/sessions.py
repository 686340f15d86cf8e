"""Sessions: one worker process, one link port, one SPU runtime each.

A session moves through ``reserved → linked → (running ↔ linked)* → closed``
or ``failed``. Any fatal error (a peer lost, a link timeout, a worker crash)
kills the worker and frees the port; the node itself stays up. Sessions idle
for longer than the configured limit are reaped.
"""

from __future__ import annotations

import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from ..config import NodeConfig
from ..errors import ComputeError, Conflict, InvalidInput, MisuanError, NotFound, from_wire
from . import _ipc
from .audit import AuditLog
from .db import Database

SESSION_ID_RE = re.compile(r"^[A-Za-z0-9_-]{8,64}$")
VAR_RE = re.compile(r"^[A-Za-z0-9_.:-]{1,128}$")
#: names a client may use in its own sessions: no ':', which starts the node's
#: reserved namespaces (``w:`` stored weights, ``r:<request>:`` requests).
CLIENT_VAR_RE = re.compile(r"^[A-Za-z0-9_.-]{1,128}$")
READY_TIMEOUT_S = 60.0


def check_session_id(sid: str) -> str:
    if not SESSION_ID_RE.match(sid or ""):
        raise InvalidInput("session ids are 8-64 chars of letters, digits, '_' or '-'")
    return sid


def check_var_name(name: str) -> str:
    if not VAR_RE.match(name or ""):
        raise InvalidInput("variable names are 1-128 chars of letters, digits, '_', '.', ':' or '-'")
    return name


def check_client_var_name(name: str) -> str:
    if not CLIENT_VAR_RE.match(name or ""):
        raise InvalidInput("variable names are 1-128 chars of letters, digits, '_', '.' or '-' (':' is reserved)")
    return name


class WorkerHandle:
    """A session worker process (forked by the zygote) and its channel. One command at a time."""

    def __init__(self, pid: int, sock: socket.socket):
        self.pid = pid
        self.sock = sock
        self._lock = threading.Lock()
        self._dead = False
        self.log_path: Path | None = None

    def alive(self) -> bool:
        if self._dead:
            return False
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            self._dead = True
            return False
        except PermissionError:  # pragma: no cover - pid reused by another user
            self._dead = True
            return False
        return True

    def call(self, header: dict, payload: bytes = b"", timeout: float | None = None) -> tuple[dict, bytes]:
        """Send one command; raise the misuan error the worker reports."""
        with self._lock:
            self.sock.settimeout(timeout)
            try:
                _ipc.send_msg(self.sock, header, payload)
                reply, out = _ipc.recv_msg(self.sock)
            except _ipc.ChannelTimeout:
                self.kill()
                raise ComputeError(f"session worker did not answer {header.get('op')!r} within {timeout:.0f} s") from None
            except _ipc.ChannelClosed:
                self.kill()
                raise ComputeError("session worker stopped (a peer failed or the session was cancelled)") from None
        if not reply.get("ok"):
            if reply.get("fatal"):
                self.kill()
            cls = from_wire(reply.get("error"), ComputeError)
            err = cls(reply.get("message", "worker error"))
            err.peer = reply.get("peer")  # type: ignore[attr-defined]
            raise err
        return reply, out

    def close(self, timeout: float = 5.0) -> None:
        if self.alive() and not self._lock.locked():
            try:
                self.sock.settimeout(timeout)
                _ipc.send_msg(self.sock, {"op": "close"})
                _ipc.recv_msg(self.sock)
            except (_ipc.ChannelClosed, _ipc.ChannelTimeout):
                pass
        self.kill()

    def kill(self) -> None:
        """SIGKILL the worker (cancels a running program) and wait until it is gone."""
        if not self._dead:
            try:
                os.kill(self.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            deadline = time.monotonic() + 10
            while self.alive() and time.monotonic() < deadline:
                time.sleep(0.01)
            self._dead = True
        try:
            self.sock.close()
        except OSError:
            pass


def _await_ready(sock: socket.socket, cleanup, what: str) -> None:
    """Wait for a child's ``ready`` hello; clean up and raise if it never comes."""
    sock.settimeout(READY_TIMEOUT_S)
    try:
        hello, _ = _ipc.recv_msg(sock)
    except (_ipc.ChannelClosed, _ipc.ChannelTimeout):
        hello = {}
    if not hello.get("ready"):
        cleanup()
        raise ComputeError(f"could not start {what}")


class Zygote:
    """The node's worker factory process (see :mod:`.zygote`). Restarted if it dies."""

    def __init__(self, log_dir: Path, compute_threads: int = 1):
        self.log_dir = log_dir
        #: OpenMP thread limit of the zygote and its workers (read by libgomp when
        #: libspu loads, so it must be in the environment the zygote starts with)
        self.compute_threads = compute_threads
        self._lock = threading.Lock()
        self._proc: subprocess.Popen | None = None
        self._sock: socket.socket | None = None

    def _start(self) -> None:
        parent, child = socket.socketpair()
        self.log_dir.mkdir(parents=True, exist_ok=True)
        out = open(self.log_dir / "workers.out", "ab")
        try:
            self._proc = subprocess.Popen(
                [sys.executable, "-m", "misuan.node.zygote", "--fd", str(child.fileno())],
                pass_fds=(child.fileno(),),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=out,
                env={**os.environ, "JAX_PLATFORMS": "cpu", "OMP_THREAD_LIMIT": str(self.compute_threads)},
            )
        finally:
            child.close()
            out.close()
        self._sock = parent
        _await_ready(parent, self.close, "the worker zygote")

    def start(self) -> None:
        with self._lock:
            if self._proc is None or self._proc.poll() is not None:
                self._start()

    def spawn(self) -> WorkerHandle:
        with self._lock:
            for attempt in (1, 2):
                if self._proc is None or self._proc.poll() is not None:
                    self._start()
                try:
                    log = self.log_dir / f"worker-{secrets.token_hex(4)}.spu.log"
                    self._sock.settimeout(READY_TIMEOUT_S)
                    _ipc.send_msg(self._sock, {"op": "spawn", "log": str(log)})
                    reply, _ = _ipc.recv_msg(self._sock)
                    if not reply.get("ok"):
                        raise ComputeError(reply.get("message", "cannot start a session worker"))
                    _msg, fds, _flags, _addr = socket.recv_fds(self._sock, 1, 1)
                    break
                except (_ipc.ChannelClosed, _ipc.ChannelTimeout, OSError):
                    self.close()
                    if attempt == 2:
                        raise ComputeError("the worker zygote stopped") from None
        wsock = socket.socket(fileno=fds[0])
        handle = WorkerHandle(reply["pid"], wsock)
        handle.log_path = log
        _await_ready(wsock, handle.kill, "a session worker")
        return handle

    def close(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.kill()
            self._proc.wait(10)
        if self._sock is not None:
            self._sock.close()
        self._proc, self._sock = None, None


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


class SessionManager:
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

    def create(self, sid: str, principal: str, kind: str = "run", *, internal: bool = False) -> Session:
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
        try:
            self.close(sess.id, sess.principal, status="failed", reason=reason, internal=sess.internal)
        except NotFound:
            pass  # already closed

    def call(self, sess: Session, header: dict, payload: bytes = b"", timeout: float | None = None):
        """Send one command to the session's worker (node-internal use)."""
        return self._call(sess, header, payload, timeout)

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

    def ping(self, sess: Session, nonce: str) -> None:
        self._require_linked(sess)
        self._call(sess, {"op": "ping", "nonce": nonce}, timeout=self._op_timeout())

    def set_var(self, sess: Session, name: str, data: bytes) -> None:
        """Store a share; in a client's own session the client may read it back."""
        (check_var_name if sess.internal else check_client_var_name)(name)
        self._require_linked(sess)
        self._call(sess, {"op": "set_var", "name": name}, data, timeout=self._op_timeout())
        sess.bytes_in += len(data)
        sess.held.add(name)
        if not sess.internal:
            sess.readable.add(name)
            self.audit.append(
                "session.var.put", asset=sess.kind, requester=sess.principal, bytes_in=len(data), detail={"session": sess.id, "var": name}
            )

    def set_public(self, sess: Session, name: str, array) -> None:
        """Set a PUBLIC variable from a value this node computed (never client bytes)."""
        import numpy as np

        check_var_name(name)
        self._require_linked(sess)
        arr = np.ascontiguousarray(array)
        header = {"op": "set_public", "name": name, "dtype": arr.dtype.str, "shape": list(arr.shape)}
        self._call(sess, header, arr.tobytes(), timeout=self._op_timeout())
        sess.held.add(name)

    def reveal_flag(self, sess: Session, name: str) -> bool:
        """Reveal a secret boolean among the nodes (a check's verdict); never to a client."""
        check_var_name(name)
        self._require_linked(sess)
        reply, _ = self._call(sess, {"op": "reveal_flag", "name": name}, timeout=self._op_timeout())
        return bool(reply["value"])

    def unsafe_read_share(self, sess: Session, name: str) -> bytes:
        """This node's share of ``name``, unchecked: for :mod:`.reveal` only, which
        returns it only when the session declares ``name`` readable."""
        (check_var_name if sess.internal else check_client_var_name)(name)
        self._require_linked(sess)
        if name not in sess.held:
            raise NotFound("unknown variable")
        _, data = self._call(sess, {"op": "get_var", "name": name}, timeout=self._op_timeout())
        sess.bytes_out += len(data)
        return data

    def run(self, sess: Session, program: bytes, sha256: str, *, request: str | None = None) -> dict:
        """Run a program.

        A client's session: the program reads only variables the client set
        (or earlier outputs), writes only unreserved names, and its outputs
        become readable by the client. A node-internal session (a model runtime)
        runs only programs the node compiled itself, for ``request``; their
        names are resolved by the worker and their outputs stay unreadable
        unless the caller marks them."""
        from ..mpc import _pb

        if sess.internal != (request is not None):
            raise InvalidInput("node programs run in node sessions only, with a request")
        self._require_linked(sess)
        try:
            names_in, names_out, has_code = _pb.executable_names(program)
        except InvalidInput:
            raise InvalidInput("program is not a valid SPU executable") from None
        if not has_code:
            raise InvalidInput("program is empty")
        names_in, names_out = list(names_in), list(names_out)
        # the worker checks that libspu's own parse of the program sees these names
        header = {"op": "run", "sha256": sha256, "names": [list(names_in), list(names_out)]}
        if request is None:
            for n in names_in + names_out:
                check_client_var_name(n)
            missing = [n for n in names_in if n not in sess.readable]
            if missing:
                raise InvalidInput(f"program inputs not set in this session: {', '.join(missing[:5])}")
        else:
            header["request"] = request
            names_in = [n.replace("r:$:", f"r:{request}:") for n in names_in]
            names_out = [n.replace("r:$:", f"r:{request}:") for n in names_out]
            for n in names_out:
                check_var_name(n)
        sess.state = "running"
        try:
            reply, _ = self._call(sess, header, program, timeout=None)
        except MisuanError as exc:
            if request is None:  # a node program's failure is audited by its caller
                self.audit.append(
                    "session.run",
                    asset=sess.kind,
                    requester=sess.principal,
                    status="failed",
                    detail={"session": sess.id, "program": sha256, "error": type(exc).__name__},
                )
            raise
        finally:
            if sess.state == "running":
                sess.state = "linked"
        sess.runs += 1
        sess.held.update(names_out)
        if request is None:
            sess.readable.update(names_out)
            self.audit.append(
                "session.run",
                asset=sess.kind,
                requester=sess.principal,
                detail={"session": sess.id, "program": sha256, "send_bytes": reply.get("send_bytes", 0)},
            )
        reply.pop("ok", None)
        reply["outputs"] = names_out
        return reply

    def _require_linked(self, sess: Session) -> None:
        if sess.state not in ("linked", "running"):
            raise Conflict(f"session is {sess.state}, not linked")

    def _op_timeout(self) -> float:
        return self.cfg.cluster.timeouts.link_recv_ms / 1000 + 60

    def close(self, sid: str, principal: str, *, status: str = "ok", reason: str = "", internal: bool = False) -> bool:
        """Close a session: a client's own, or (``internal``, node core only) a runtime's."""
        with self._lock:
            sess = self._sessions.get(sid)
            if sess is None or sess.principal != principal or sess.internal != internal:
                raise NotFound("unknown session")
            del self._sessions[sid]
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
            requester=principal,
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
                    try:
                        self.close(
                            s.id,
                            s.principal,
                            status="failed" if dead else "ok",
                            reason="worker exited" if dead else "idle timeout",
                            internal=s.internal,
                        )
                    except NotFound:
                        pass

    def shutdown(self) -> None:
        self._stop.set()
        for s in self.list():
            try:
                self.close(s.id, s.principal, reason="node shutdown", internal=s.internal)
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
