"""Framed messages between a node and its session workers (a local socketpair).

A frame is ``u32 header_len | header (JSON) | u64 payload_len | payload``.
JSON and raw bytes only: nothing is ever unpickled.
"""

from __future__ import annotations

import json
import socket
import struct

_HDR = struct.Struct("<I")
_LEN = struct.Struct("<Q")
MAX_HEADER = 1 << 20


class ChannelClosed(Exception):
    """The other end went away (process exit or crash)."""


class ChannelTimeout(Exception):
    """The other end did not answer in time."""


def _recv_exact(sock: socket.socket, n: int) -> bytes:
    buf = bytearray(n)
    view = memoryview(buf)
    got = 0
    while got < n:
        k = sock.recv_into(view[got:], n - got)
        if k == 0:
            raise ChannelClosed("peer closed the channel")
        got += k
    return bytes(buf)


def send_msg(sock: socket.socket, header: dict, payload: bytes = b"") -> None:
    h = json.dumps(header, separators=(",", ":")).encode()
    try:
        sock.sendall(_HDR.pack(len(h)) + h + _LEN.pack(len(payload)))
        if payload:
            sock.sendall(payload)
    except TimeoutError:
        raise ChannelTimeout("send timed out") from None
    except OSError as exc:
        raise ChannelClosed(str(exc)) from None


def recv_msg(sock: socket.socket) -> tuple[dict, bytes]:
    try:
        (hlen,) = _HDR.unpack(_recv_exact(sock, _HDR.size))
        if hlen > MAX_HEADER:
            raise ChannelClosed("oversized header")
        header = json.loads(_recv_exact(sock, hlen))
        (plen,) = _LEN.unpack(_recv_exact(sock, _LEN.size))
        payload = _recv_exact(sock, plen) if plen else b""
    except TimeoutError:
        raise ChannelTimeout("no answer in time") from None
    except OSError as exc:
        raise ChannelClosed(str(exc)) from None
    return header, payload
