import socket
import stat
import subprocess
import sys
from pathlib import Path

from misuan.mpc.tls_gate import TlsGate, is_tls_hello, sweep_stale_dirs


def test_tls_hello_detection():
    assert is_tls_hello(bytes([0x16, 3, 1, 0, 200, 1]))
    assert not is_tls_hello(b"POST /")
    assert not is_tls_hello(bytes([0x16, 3, 1, 0, 200, 2]))  # a handshake record, not a ClientHello
    assert not is_tls_hello(bytes([0x16, 3]))


def test_gate_keeps_its_socket_private_and_cleans_up():
    gate = TlsGate("127.0.0.1", 0)
    sock_dir = Path(gate.backend.removeprefix("unix:")).parent
    assert stat.S_IMODE(sock_dir.stat().st_mode) == 0o700
    with socket.create_connection(("127.0.0.1", gate.port), timeout=5) as c:
        c.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        try:
            assert c.recv(100) == b""  # refused without a byte of answer
        except ConnectionResetError:
            pass
    gate.close()
    assert not sock_dir.exists()
    with socket.socket() as s:
        assert s.connect_ex(("127.0.0.1", gate.port)) != 0


def test_sweep_removes_dirs_of_dead_processes(tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale = tmp_path / f"misuan-link-{dead.pid}-abc"
    live = tmp_path / "misuan-link-1-abc"  # pid 1 is alive
    other = tmp_path / "unrelated"
    for d in (stale, live, other):
        d.mkdir()
    sweep_stale_dirs(tmp_path)
    assert not stale.exists() and live.exists() and other.exists()


def test_one_source_holding_idle_connections_cannot_starve_the_peers():
    """Idle connections (no first bytes) from one address are capped; another
    address's TLS hello still reaches brpc's socket."""
    import threading
    import time

    from misuan.mpc.tls_gate import MAX_PENDING_PER_SOURCE

    gate = TlsGate("0.0.0.0", 0)
    backend = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    backend.bind(gate.backend.removeprefix("unix:"))
    backend.listen(4)
    got = []
    threading.Thread(target=lambda: got.append(backend.accept()[0].recv(6)), daemon=True).start()
    idle = [socket.create_connection(("127.0.0.1", gate.port), timeout=5) for _ in range(MAX_PENDING_PER_SOURCE)]
    try:
        time.sleep(0.3)
        with socket.create_connection(("127.0.0.1", gate.port), timeout=5) as extra:
            extra.settimeout(1.0)  # well before the gate's own 5 s hello timeout
            try:
                assert extra.recv(1) == b""  # reset at once: that source already holds its share
            except ConnectionResetError:
                pass
        peer = socket.create_connection(("127.0.0.1", gate.port), timeout=5, source_address=("127.0.0.2", 0))
        peer.sendall(bytes([0x16, 3, 1, 0, 200, 1]))
        deadline = time.monotonic() + 5
        while not got and time.monotonic() < deadline:
            time.sleep(0.05)
        assert got == [bytes([0x16, 3, 1, 0, 200, 1])]  # forwarded untouched
        peer.close()
    finally:
        for c in idle:
            c.close()
        gate.close()
        backend.close()
