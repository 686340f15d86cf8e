"""Issue 18 finding 4: with TLS, the SPU links must refuse plaintext.

brpc serves plaintext and TLS on the same port, so before the fix a plain HTTP
``POST /org.interconnection.link.ReceiverService/Push`` reached a live link
without any certificate and was accepted under any ``sender_rank``. These
tests open real links (a session on a 3-node TLS cluster; a PSI link between
two party processes), send that request in plain HTTP to every link port while
the link is up, and require a refusal; a TLS client without a certificate is
refused too, while one with a cluster certificate still gets through (so the
probe does reach the link), and the links still compute.
"""

from __future__ import annotations

import http.client
import json
import os
import socket
import ssl
import stat
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest

from misuan.cluster.local import local_cluster
from tests.conftest import FAST

PUSH = "/org.interconnection.link.ReceiverService/Push"
ROOT = Path(__file__).resolve().parents[2]  # the worktree


def _push_body(sender_rank: int) -> str:
    return json.dumps({"sender_rank": sender_rank, "key": "probe", "value": "", "trans_type": "MONO"})


def _push(host: str, port: int, sender_rank: int, tls: ssl.SSLContext | None = None) -> int | None:
    """The HTTP status a Push gets, or None when the connection is refused/cut."""
    conn = (
        http.client.HTTPSConnection(host, port, timeout=10, context=tls)
        if tls is not None
        else http.client.HTTPConnection(host, port, timeout=10)
    )
    try:
        conn.request("POST", PUSH, _push_body(sender_rank), {"Content-Type": "application/json"})
        return conn.getresponse().status
    except (OSError, http.client.HTTPException):
        return None
    finally:
        conn.close()


def _tls_context(ca: Path, cert: Path | None = None, key: Path | None = None) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(ca))
    ctx.check_hostname = False
    if cert is not None:
        ctx.load_cert_chain(str(cert), str(key))
    return ctx


def _gate_dirs() -> set[Path]:
    return set(Path(tempfile.gettempdir()).glob("misuan-link-*"))


def _listening(host: str, ports: range) -> list[int]:
    found = []
    for port in ports:
        with socket.socket() as s:
            s.settimeout(1)
            if s.connect_ex((host, port)) == 0:
                found.append(port)
    return found


def _check_link_ports(targets: list[tuple[str, int, int]], ca: Path, cert: Path, key: Path) -> None:
    """``targets``: (host, port, a sender rank that is not the port owner's)."""
    plain = {port: _push(host, port, rank) for host, port, rank in targets}
    assert all(status is None for status in plain.values()), f"plaintext Push answered: {plain}"
    anonymous = {port: _push(host, port, rank, _tls_context(ca)) for host, port, rank in targets}
    assert all(status is None for status in anonymous.values()), f"TLS without a client cert answered: {anonymous}"
    # control: the same probe with a cluster certificate reaches the link (so a refusal above is real)
    member = {port: _push(host, port, rank, _tls_context(ca, cert, key)) for host, port, rank in targets}
    assert all(status == 200 for status in member.values()), member


@pytest.fixture(scope="module")
def tls3(tmp_path_factory):
    with local_cluster(3, dir=tmp_path_factory.mktemp("linktls"), tls=True, timeouts=FAST) as lc:
        yield lc


def test_session_link_ports_refuse_plaintext(tls3):
    cfg = tls3.config
    d = tls3.dir
    client = tls3.client()
    before = _gate_dirs()
    with client.session() as s:
        s.ping()
        targets = []
        for p in cfg.parties:
            ports = _listening(p.link_host, range(p.link_ports[0], p.link_ports[1] + 1))
            assert len(ports) == 1, f"node {p.rank} link ports listening: {ports}"
            targets.append((p.link_host, ports[0], (p.rank + 1) % cfg.world_size))
        tls = d / "node1" / "tls"
        _check_link_ports(targets, d / "pki" / "nodes.pem", tls / "node.pem", tls / "node.key")
        during = _gate_dirs() - before
        assert len(during) >= 3, during  # each node's brpc listens on a Unix socket in a private dir
        assert all(stat.S_IMODE(p.stat().st_mode) == 0o700 for p in during)
        s.ping()  # the link survived the probes
    assert sum(p.exists() for p in during) <= len(during) - 3  # ours were removed at session close
    x = np.arange(12, dtype=np.float32).reshape(3, 4)
    np.testing.assert_allclose(client.run(lambda a: a.T @ a, x), x.T @ x, atol=1e-2)


_PSI_PARTY = """
import sys
from pathlib import Path
from misuan.psi._link import open_link
from misuan.psi.spec import LinkTls, PsiLink

rank, a0, a1, d = int(sys.argv[1]), sys.argv[2], sys.argv[3], Path(sys.argv[4])
tls = LinkTls(d / f"node{rank}.pem", d / f"node{rank}.key", d / "nodes.pem")
link = PsiLink("probe-job", rank, (a0, a1), recv_timeout_ms=20_000, connect_timeout_s=20, tls=tls)
opened = open_link(link, 20_000)
ctx, gate = opened if isinstance(opened, tuple) else (opened, None)  # (ctx, gate) since the fix
print("linked", flush=True)
sys.stdin.readline()
got = [x if isinstance(x, str) else bytes(x).decode() for x in ctx.all_gather(f"hello{rank}")]
print("gathered", ",".join(got), flush=True)
ctx.stop_link()
if gate is not None:
    gate.close()
"""


def _free_ports(n: int) -> list[int]:
    socks = [socket.create_server(("127.0.0.1", 0)) for _ in range(n)]
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def test_psi_link_ports_refuse_plaintext(tmp_path):
    from misuan.pki import make_node_cert, write_trust_bundle

    for r in (0, 1):
        make_node_cert(tmp_path / f"node{r}.pem", tmp_path / f"node{r}.key", f"p{r}", ["127.0.0.1"])
    ca = tmp_path / "nodes.pem"
    write_trust_bundle(ca, [tmp_path / f"node{r}.pem" for r in (0, 1)])
    ports = _free_ports(2)
    addrs = [f"127.0.0.1:{p}" for p in ports]
    path = [os.environ.get("PYTHONPATH", ""), str(ROOT / "src")]  # the tested sources first
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in path if p)}
    logs = [open(tmp_path / f"party{r}.log", "w") for r in (0, 1)]
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _PSI_PARTY, str(r), *addrs, str(tmp_path)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=logs[r],
            text=True,
            env=env,
        )
        for r in (0, 1)
    ]
    try:
        deadline = time.monotonic() + 60
        for p in procs:
            line = p.stdout.readline()
            assert line.strip() == "linked", f"PSI party did not link: {line!r}"
            assert time.monotonic() < deadline
        targets = [("127.0.0.1", port, 1 - r) for r, port in enumerate(ports)]
        _check_link_ports(targets, ca, tmp_path / "node1.pem", tmp_path / "node1.key")
        for p in procs:
            p.stdin.write("go\n")
            p.stdin.flush()
        outs = [p.communicate(timeout=60)[0] for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
        for f in logs:
            f.close()
    errs = [(tmp_path / f"party{r}.log").read_text()[-2000:] for r in (0, 1)]
    assert all("gathered hello0,hello1" in out for out in outs), (outs, errs)
