"""A TLS-only gate in front of an SPU brpc link server.

Why: brpc serves plaintext and TLS on the same port. It looks at the first
bytes of each new connection (``DetectSSLState`` in brpc's ssl_helper.cpp)
and runs a TLS handshake only when they are a TLS ClientHello; anything else
is served as plaintext, with no client certificate at all. brpc's
``ServerOptions::force_ssl`` would refuse plaintext, but yacl's
``ReceiverLoopBrpc::Start`` never sets it and spu 0.9.5 exposes no option or
gflag for it, so with TLS enabled a network peer could still ``POST
/org.interconnection.link.ReceiverService/Push`` in plain HTTP and inject link
messages under another party's rank.

So with TLS the brpc server listens on a Unix socket in a private (0700)
directory, and this gate owns the public link port. It reads (peeks) the first
record header of each connection and forwards the connection, bytes
untouched, only when brpc will take the TLS branch for it: then brpc's own
mutual-TLS handshake (client certificate signed by the cluster CA) still
decides who gets in, end to end. Any other first bytes, or none within
:data:`HELLO_TIMEOUT_S`, and the connection is reset. The gate holds no key and
terminates no TLS.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import struct
import tempfile
import threading
from pathlib import Path

#: brpc's own limit for a TLS handshake (gflag ssl_handshake_timeout_ms = 5000).
HELLO_TIMEOUT_S = 5.0
#: connections still owing their first bytes; more are reset at once (scanner floods).
MAX_PENDING = 256
#: ... and from any one source address: one host holding idle connections open cannot
#: starve the peers' (each peer opens a handful, answered within milliseconds).
MAX_PENDING_PER_SOURCE = 8
_HEADER = 6
_BUF = 1 << 18
_PREFIX = "misuan-link-"


def is_tls_hello(header: bytes) -> bool:
    """Whether brpc takes the TLS branch for a connection starting with ``header``.

    A TLS record header is ``0x16`` (handshake), 2 version bytes, 2 length
    bytes, then the handshake type, ``0x01`` for ClientHello. (brpc also takes
    SSLv2 hellos to TLS, which no OpenSSL of this age speaks; refused here.)
    """
    return len(header) >= _HEADER and header[0] == 0x16 and header[5] == 0x01


def _reset(sock: socket.socket) -> None:
    """Close with a TCP RST, so the sender sees a refusal and not a clean end."""
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


def _peek_header(conn: socket.socket) -> bytes:
    conn.settimeout(HELLO_TIMEOUT_S)
    try:
        return conn.recv(_HEADER, socket.MSG_PEEK | socket.MSG_WAITALL)
    except OSError:
        return b""


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def sweep_stale_dirs(root: Path | None = None) -> None:
    """Remove socket directories left by killed processes (SIGKILL skips :meth:`TlsGate.close`)."""
    root = Path(root or tempfile.gettempdir())
    with contextlib.suppress(OSError):
        for entry in root.iterdir():
            pid = entry.name.removeprefix(_PREFIX).split("-", 1)[0]
            if entry.name.startswith(_PREFIX) and pid.isdigit() and not _pid_alive(int(pid)):
                with contextlib.suppress(OSError):
                    if entry.is_dir() and entry.stat().st_uid == os.getuid():
                        shutil.rmtree(entry, ignore_errors=True)


def _pump(src: socket.socket, dst: socket.socket) -> None:
    """Copy ``src`` to ``dst`` until EOF; pass the EOF on (or tear both down on error)."""
    buf = bytearray(_BUF)
    view = memoryview(buf)
    try:
        while n := src.recv_into(buf):
            dst.sendall(view[:n])
        dst.shutdown(socket.SHUT_WR)
    except OSError:
        for s in (src, dst):
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)


class TlsGate:
    """Listen on ``host:port``; forward only TLS connections to a private Unix socket.

    ``backend`` is the address to give brpc (``unix:/.../link.sock``). Start the
    gate before the link, close it after the link stopped.
    """

    def __init__(self, host: str, port: int):
        sweep_stale_dirs()
        self._dir = Path(tempfile.mkdtemp(prefix=f"{_PREFIX}{os.getpid()}-"))  # mode 0700
        self._path = str(self._dir / "link.sock")
        self.backend = f"unix:{self._path}"
        self._closed = threading.Event()
        self._pending = threading.BoundedSemaphore(MAX_PENDING)
        self._per_source: dict[str, int] = {}
        self._conns: set[socket.socket] = set()
        self._lock = threading.Lock()
        try:
            self._listener = socket.create_server((host, port), backlog=64)
        except OSError:
            shutil.rmtree(self._dir, ignore_errors=True)
            raise
        self.port = self._listener.getsockname()[1]
        self._thread = threading.Thread(target=self._accept_loop, name="misuan-tls-gate", daemon=True)
        self._thread.start()

    def close(self) -> None:
        """Stop listening, cut every forwarded connection, remove the socket directory."""
        if self._closed.is_set():
            return
        self._closed.set()
        with contextlib.suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)
        self._listener.close()
        with self._lock:
            conns, self._conns = list(self._conns), set()
        for s in conns:
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
        self.remove_files()

    def remove_files(self) -> None:
        """Remove the socket directory only (for a process about to exit with the link up)."""
        shutil.rmtree(self._dir, ignore_errors=True)

    def __enter__(self) -> TlsGate:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _accept_loop(self) -> None:
        while not self._closed.is_set():
            try:
                conn, addr = self._listener.accept()
            except OSError:
                if self._closed.is_set():
                    return
                continue
            source = addr[0] if isinstance(addr, tuple) else ""
            with self._lock:
                crowded = self._per_source.get(source, 0) >= MAX_PENDING_PER_SOURCE
                if not crowded:
                    self._per_source[source] = self._per_source.get(source, 0) + 1
            if crowded or not self._pending.acquire(blocking=False):
                if not crowded:
                    self._release_source(source)
                _reset(conn)
                continue
            threading.Thread(target=self._serve, args=(conn, source), name="misuan-tls-gate-conn", daemon=True).start()

    def _release_source(self, source: str) -> None:
        with self._lock:
            left = self._per_source.get(source, 1) - 1
            if left > 0:
                self._per_source[source] = left
            else:
                self._per_source.pop(source, None)

    def _serve(self, conn: socket.socket, source: str = "") -> None:
        try:
            hello = is_tls_hello(_peek_header(conn))
        finally:
            self._pending.release()
            self._release_source(source)
        if not hello:
            _reset(conn)
            return
        conn.settimeout(None)
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        back = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            back.connect(self._path)
        except OSError:
            back.close()
            _reset(conn)
            return
        with self._lock:
            if self._closed.is_set():
                back.close()
                _reset(conn)
                return
            self._conns.update((conn, back))
        up = threading.Thread(target=_pump, args=(conn, back), name="misuan-tls-gate-up", daemon=True)
        up.start()
        _pump(back, conn)
        up.join()
        with self._lock:
            self._conns.difference_update((conn, back))
        conn.close()
        back.close()
