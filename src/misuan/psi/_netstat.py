"""Count the bytes this process exchanged with the PSI peer (Linux, best effort).

spu 0.9.5 exposes no link statistics to Python, so we read the kernel's
``TCP_INFO`` counters (``tcpi_bytes_acked`` / ``tcpi_bytes_received``) of this
process's TCP connections to or from the peer: the outbound one to the peer's
port and the inbound one on our own listening port. These are wire bytes
(including brpc framing and TLS). Connections that brpc closed and reopened
during the job are missed, so the numbers are a lower bound; ``None`` when
they cannot be read (not Linux, no such sockets).
"""

from __future__ import annotations

import os
import socket
import struct
from dataclasses import dataclass

_TCP_INFO_LEN = 256
_BYTES_ACKED_OFFSET = 120  # struct tcp_info: __u64 tcpi_bytes_acked; then tcpi_bytes_received
_ESTABLISHED = "01"


@dataclass(frozen=True)
class LinkBytes:
    sent: int
    received: int


def _socket_inodes() -> dict[int, int]:
    """inode -> fd for every socket of this process."""
    result: dict[int, int] = {}
    for name in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{name}")
        except OSError:
            continue
        if target.startswith("socket:["):
            result[int(target[8:-1])] = int(name)
    return result


def _tcp_ports() -> dict[int, tuple[int, int]]:
    """inode -> (local port, remote port) of every established TCP connection."""
    result: dict[int, tuple[int, int]] = {}
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as fh:
                next(fh)
                for line in fh:
                    parts = line.split()
                    if len(parts) > 9 and parts[3] == _ESTABLISHED:
                        local = int(parts[1].rsplit(":", 1)[1], 16)
                        remote = int(parts[2].rsplit(":", 1)[1], 16)
                        result[int(parts[9])] = (local, remote)
        except OSError:
            continue
    return result


def peer_link_bytes(own_port: int, peer_port: int) -> LinkBytes | None:
    """Bytes sent to / received from the peer over this process's link sockets."""
    try:
        fds = _socket_inodes()
        ports = _tcp_ports()
    except OSError:
        return None
    sent = received = found = 0
    for inode, (local, remote) in ports.items():
        fd = fds.get(inode)
        if fd is None or not (remote == peer_port or local == own_port):
            continue
        try:
            with socket.socket(fileno=os.dup(fd)) as sock:
                info = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, _TCP_INFO_LEN)
        except OSError:
            continue
        if len(info) < _BYTES_ACKED_OFFSET + 16:
            continue
        acked, got = struct.unpack_from("QQ", info, _BYTES_ACKED_OFFSET)
        sent += acked
        received += got
        found += 1
    return LinkBytes(sent, received) if found else None
