"""The node's handles on its worker processes: the zygote that forks them (see
:mod:`.zygote`) and one session worker's command channel (see :mod:`.worker`)."""

from __future__ import annotations

import os
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

from ..errors import ComputeError, from_wire
from . import _ipc

READY_TIMEOUT_S = 60.0


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
