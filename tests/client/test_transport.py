"""The control-plane transport against a real HTTP/1.1 peer on a socket."""

from __future__ import annotations

import json
import socket
import threading

import pytest

import misuan
from misuan.client.transport import NodeClient
from misuan.config import ClusterConfig, MpcSettings, PartySpec
from misuan.identity import new_identity


def _read_request(conn: socket.socket) -> bytes:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(4096)
        if not chunk:
            return b""
        data += chunk
    return data


def _reply(conn: socket.socket, body: dict) -> None:
    raw = json.dumps(body).encode()
    head = f"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {len(raw)}\r\n\r\n"
    conn.sendall(head.encode() + raw)


class StaleKeepAliveServer:
    """Answers one request per connection, then closes the connection when the next
    request arrives on it without answering (a server dropping an idle keep-alive
    connection just as the client reuses it)."""

    def __init__(self):
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.connections = 0
        self.requests: list[str] = []
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.connections += 1
            with conn:
                req = _read_request(conn)
                if not req:
                    continue
                self.requests.append(req.split(b"\r\n", 1)[0].decode())
                _reply(conn, {"ok": True, "n": len(self.requests)})
                if _read_request(conn):  # reused: drop it unanswered
                    self.requests.append("dropped")

    def close(self):
        self.sock.close()


@pytest.fixture
def server():
    s = StaleKeepAliveServer()
    yield s
    s.close()


def _client(port: int) -> NodeClient:
    party = PartySpec(0, "n0", f"http://127.0.0.1:{port}", "127.0.0.1", (1, 2))
    cluster = ClusterConfig("t", MpcSettings("ABY3", "FM64", 18), False, (party,))
    return NodeClient(cluster, party, new_identity("tester"))


def test_get_retries_once_on_a_dropped_keep_alive_connection(server):
    client = _client(server.port)
    try:
        assert client.status()["n"] == 1
        assert client.status()["ok"]  # first try dropped, answered on a new connection
        assert server.requests == ["GET /v1/status HTTP/1.1", "dropped", "GET /v1/status HTTP/1.1"]
        assert server.connections == 2
    finally:
        client.close()


def test_post_is_not_retried(server):
    client = _client(server.port)
    try:
        client._request("POST", "/v1/x", json={})
        with pytest.raises(misuan.NodeUnavailable, match="dropped the connection"):
            client._request("POST", "/v1/x", json={})
        assert server.requests == ["POST /v1/x HTTP/1.1", "dropped"]
    finally:
        client.close()
