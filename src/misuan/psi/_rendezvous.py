"""Wait until the peer process is up before starting the brpc link.

Why: if yacl's brpc link tries to reach a peer that is not listening yet, brpc
marks the peer as failed and re-probes it only every ~3 s, and each yacl
connect attempt retries for ~9 s; a peer that starts half a second late costs
seconds, and a peer that never starts is reported only after
``retries x 9 s``. Here each party briefly listens on its own link port with a
plain socket and knocks on the peer's port with a job-specific tag; once it
has both reached the peer and been reached by it, it closes the socket and
both sides start brpc within milliseconds of each other. The tags keep stray
connections (port scanners, health checks) from counting as the peer.

This is only a start-up optimisation and a precise no-show deadline, not
authentication: the brpc link (with TLS when configured) still authenticates.
"""

from __future__ import annotations

import errno
import hashlib
import select
import socket
import time

from misuan.errors import ComputeError, NodeTimeout
from misuan.psi.spec import PsiLink, split_address

_TAG_BYTES = 32
_POLL_S = 0.02


def _tag(job_id: str, rank: int) -> bytes:
    return hashlib.sha256(f"misuan-psi-rendezvous|{job_id}|{rank}".encode()).digest()


def _listen(host: str, port: int) -> socket.socket:
    last: OSError | None = None
    for bind_host in (host, ""):
        try:
            family = socket.getaddrinfo(bind_host or None, port, type=socket.SOCK_STREAM)[0][0]
            sock = socket.socket(family, socket.SOCK_STREAM)
        except OSError as exc:
            last = exc
            continue
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((bind_host, port))
            sock.listen(8)
            sock.setblocking(False)
            return sock
        except OSError as exc:
            sock.close()
            last = exc
            if exc.errno != errno.EADDRNOTAVAIL:  # e.g. a NAT address: try all interfaces
                break
    reason = "port in use" if last is not None and last.errno == errno.EADDRINUSE else "cannot bind"
    raise ComputeError(f"PSI link cannot listen on port {port} ({reason})")


def _read_tag(conn: socket.socket) -> bytes:
    conn.settimeout(0.5)
    data = b""
    try:
        while len(data) < _TAG_BYTES:
            chunk = conn.recv(_TAG_BYTES - len(data))
            if not chunk:
                break
            data += chunk
        conn.recv(1)  # wait for the peer's close so that TIME_WAIT stays on its side
    except OSError:
        pass
    return data


def wait_for_peer(link: PsiLink) -> float:
    """Block until the peer is reachable and has reached us; return seconds waited.

    Raises:
        NodeTimeout: the peer did not show up within ``link.connect_timeout_s``.
        ComputeError: this party cannot listen on its own address.
    """
    start = time.monotonic()
    deadline = start + link.connect_timeout_s
    own_host, own_port = split_address(link.addresses[link.self_rank])
    peer_host, peer_port = split_address(link.addresses[link.peer_rank])
    mine, expected = _tag(link.job_id, link.self_rank), _tag(link.job_id, link.peer_rank)
    listener = _listen(own_host, own_port)
    reached = seen = False
    try:
        while not (reached and seen):
            if time.monotonic() > deadline:
                raise NodeTimeout(
                    f"PSI peer (rank {link.peer_rank}) did not show up within {link.connect_timeout_s:g} s",
                    party=link.peer_rank,
                    url=link.addresses[link.peer_rank],
                )
            readable, _, _ = select.select([listener], [], [], _POLL_S)
            if readable:
                try:
                    conn, _ = listener.accept()
                except OSError:
                    conn = None
                if conn is not None:
                    with conn:
                        seen = seen or _read_tag(conn) == expected
            if not reached:
                try:
                    with socket.create_connection((peer_host, peer_port), timeout=0.5) as out:
                        out.sendall(mine)
                    reached = True
                except OSError:
                    time.sleep(_POLL_S)
    finally:
        listener.close()
    return time.monotonic() - start
