"""Local clusters: start, check and stop node processes on this machine.

``up`` starts one background ``misuan node serve`` per party (each with its
own state dir), waits until every node is healthy and the SPU link works end
to end, and is idempotent: nodes already running are left alone. ``down``
stops them (SIGTERM, then SIGKILL) and is harmless when nothing runs.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import psutil
import tomllib

from .. import errors as E
from ..client.transport import NodeClient
from ..config import ClusterConfig, Timeouts, is_loopback, load_cluster
from ..identity import Identity
from ..sdk import Client
from .init import LINK_PORTS_PER_NODE, find_port_block, init_cluster, port_free, write_toml

START_TIMEOUT_S = 90.0


@dataclass(frozen=True)
class NodeState:
    rank: int
    id: str
    url: str
    pid: int | None
    running: bool
    healthy: bool
    started_now: bool = False
    note: str = ""


def _pid_file(d: Path, rank: int) -> Path:
    return d / f"node{rank}" / "node.pid"


def _node_process(d: Path, rank: int) -> psutil.Process | None:
    """The live node process recorded in the pid file (None if stale)."""
    pf = _pid_file(d, rank)
    try:
        pid = int(pf.read_text().strip())
        proc = psutil.Process(pid)
        cmd = proc.cmdline()
    except (OSError, ValueError, psutil.Error):
        return None
    node_toml = str(d / f"node{rank}" / "node.toml")
    if proc.status() == psutil.STATUS_ZOMBIE or node_toml not in cmd:
        return None
    return proc


def _healthy(cfg: ClusterConfig, rank: int, identity: Identity) -> bool:
    nc = NodeClient(cfg, cfg.party(rank), identity)
    try:
        return bool(nc.health().get("ok"))
    except E.MisuanError:
        return False
    finally:
        nc.close()


def _repick_port(d: Path, cfg: ClusterConfig, rank: int) -> ClusterConfig:
    """Move a local party whose ports are taken by someone else to free ones."""
    with open(cfg.path, "rb") as fh:
        doc = tomllib.load(fh)
    taken = set()
    for p in cfg.parties:
        taken.add(p.control_port)
        taken.update(range(p.link_ports[0], p.link_ports[1] + 1))
    base = find_port_block(1 + LINK_PORTS_PER_NODE, taken)
    party = doc["parties"][rank]
    scheme = party["control_url"].split("://", 1)[0]
    party["control_url"] = f"{scheme}://{cfg.party(rank).control_host}:{base}"
    party["link_ports"] = [base + 1, base + LINK_PORTS_PER_NODE]
    write_toml(cfg.path, doc)
    return load_cluster(cfg.path)


def _tail(path: Path, n: int = 4000) -> str:
    try:
        with open(path, "rb") as fh:
            fh.seek(max(0, path.stat().st_size - n))
            return fh.read().decode(errors="replace")
    except OSError:
        return ""


def _refusal(log: Path) -> str:
    for line in reversed(_tail(log).splitlines()):
        if "refuses to start" in line or "Error" in line:
            return line.strip()[:300]
    return ""


def up(
    directory: str | Path,
    *,
    parties: int = 3,
    tls: bool = False,
    protocol: str | None = None,
    timeouts: Timeouts | None = None,
    timeout: float = START_TIMEOUT_S,
    ids: list[str] | None = None,
    bench: bool = False,
) -> list[NodeState]:
    """Start every local node of the cluster in ``directory`` (init it if needed)."""
    d = Path(directory).expanduser().resolve()
    if not (d / "cluster.toml").exists():
        init_cluster(d, parties=parties, tls=tls, protocol=protocol, timeouts=timeouts, ids=ids, bench=bench)
    if (d / "admin.token").exists() and not (d / "admin.key").exists():
        raise E.ClusterError(
            f"{d} was made by an older misuan (one shared token secret): remove it, or re-create it "
            f"with `misuan cluster init --dir {d} --force`"
        )
    cfg = load_cluster(d / "cluster.toml")
    identity = cfg.default_identity()
    notes: dict[int, str] = {}
    started: dict[int, subprocess.Popen] = {}
    running: dict[int, int] = {}
    for p in cfg.parties:
        proc = _node_process(d, p.rank)
        if proc is not None:
            running[p.rank] = proc.pid
            continue
        if not is_loopback(p.control_host):
            raise E.ClusterError(f"party {p.rank} runs on {p.control_host}; start it there with `misuan node serve`")
        busy = [port for port in [p.control_port, *range(p.link_ports[0], p.link_ports[1] + 1)] if not port_free(port)]
        if busy and running:
            raise E.ClusterError(f"port {busy[0]} of party {p.rank} is in use by another program; free it or re-init the cluster")
        if busy:
            old = p.control_port
            cfg = _repick_port(d, cfg, p.rank)
            notes[p.rank] = f"port {busy[0]} was in use; moved from {old} to {cfg.party(p.rank).control_port}"
    for p in cfg.parties:
        if p.rank in running:
            continue
        nd = d / f"node{p.rank}"
        (nd / "logs").mkdir(parents=True, exist_ok=True)
        log = open(nd / "logs" / "node.log", "ab")
        try:
            proc = subprocess.Popen(
                [sys.executable, "-m", "misuan", "node", "serve", "--config", str(nd / "node.toml")],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                start_new_session=True,
                env={**os.environ, "JAX_PLATFORMS": "cpu"},
            )
        finally:
            log.close()
        started[p.rank] = proc
        (nd / "node.pid").write_text(f"{proc.pid}\n")
    # wait for health
    deadline = time.monotonic() + timeout
    pending = set(range(cfg.world_size))
    while pending and time.monotonic() < deadline:
        for r in list(pending):
            if r in started and started[r].poll() is not None:
                reason = _refusal(d / f"node{r}" / "logs" / "node.log") or f"exit code {started[r].returncode}"
                down(d)
                raise E.ClusterError(f"node {r} failed to start: {reason}")
            if _healthy(cfg, r, identity):
                pending.discard(r)
        if pending:
            time.sleep(0.2)
    if pending:
        down(d)
        raise E.ClusterError(f"nodes {sorted(pending)} did not become healthy within {timeout:.0f} s")
    with Client(cfg, identity) as client:
        try:
            client.linkcheck()
        except E.MisuanError as exc:
            raise E.ClusterError(f"nodes are up but the SPU link check failed: {exc}") from None
    return [
        NodeState(
            p.rank,
            p.id,
            p.control_url,
            started[p.rank].pid if p.rank in started else running[p.rank],
            True,
            True,
            p.rank in started,
            notes.get(p.rank, "" if p.rank in started else "already running"),
        )
        for p in cfg.parties
    ]


def down(directory: str | Path, *, timeout: float = 15.0) -> list[NodeState]:
    """Stop every local node of the cluster; harmless if none runs."""
    d = Path(directory).expanduser().resolve()
    cfg = load_cluster(d / "cluster.toml")
    states = []
    procs: dict[int, psutil.Process] = {}
    for p in cfg.parties:
        proc = _node_process(d, p.rank)
        if proc is not None:
            procs[p.rank] = proc
            try:
                proc.send_signal(signal.SIGTERM)
            except psutil.Error:
                pass
    gone, alive = psutil.wait_procs(list(procs.values()), timeout=timeout)
    for proc in alive:
        try:
            proc.kill()
        except psutil.Error:
            pass
    psutil.wait_procs(alive, timeout=5)
    for p in cfg.parties:
        _pid_file(d, p.rank).unlink(missing_ok=True)
        states.append(
            NodeState(
                p.rank,
                p.id,
                p.control_url,
                procs[p.rank].pid if p.rank in procs else None,
                False,
                False,
                note="stopped" if p.rank in procs else "was not running",
            )
        )
    return states


def status(directory: str | Path) -> list[dict]:
    """Each node's health, protocol, uptime, resident assets and memory."""
    d = Path(directory).expanduser().resolve()
    cfg = load_cluster(d / "cluster.toml")
    identity = cfg.default_identity()
    out = []
    for p in cfg.parties:
        nc = NodeClient(cfg, p, identity)
        try:
            st = nc.status()
            out.append({"rank": p.rank, "id": p.id, "url": p.control_url, "healthy": True, **st})
        except E.MisuanError as exc:
            out.append({"rank": p.rank, "id": p.id, "url": p.control_url, "healthy": False, "error": str(exc)})
        finally:
            nc.close()
    return out


class LocalCluster:
    """A local cluster started by :func:`local_cluster`."""

    def __init__(self, directory: Path, started: bool):
        self.dir = directory
        self.cluster_file = directory / "cluster.toml"
        self.started = started
        self._clients: list[Client] = []

    def __repr__(self) -> str:
        return f"LocalCluster({str(self.dir)!r})"

    @property
    def config(self) -> ClusterConfig:
        return load_cluster(self.cluster_file)

    def client(self, identity: Identity | str | Path | None = None) -> Client:
        """A client acting as ``identity`` (default: the cluster's admin key file)."""
        c = Client(self.config, identity)
        self._clients.append(c)
        return c

    def principal(self, name: str) -> Identity:
        """Principal ``name``'s identity for this local cluster: its key pair is made
        here (``D/keys/NAME.key``) and registered on every node by the admin.
        Local clusters only: on a real deployment each principal makes its key on
        its own machine (``misuan key new``) and the admin registers the public key."""
        from ..identity import load_identity, new_identity

        path = self.dir / "keys" / f"{name}.key"
        ident = load_identity(path) if path.exists() else new_identity(name)
        if not path.exists():
            ident.save(path)
        with Client(self.config) as admin:
            admin.fanout(lambda i: admin.nodes[i].register_principal(name, ident.public_key))
        return ident

    def stop(self) -> None:
        for c in self._clients:
            c.close()
        self._clients.clear()
        down(self.dir)


@contextmanager
def local_cluster(
    parties: int = 3,
    *,
    dir: str | Path | None = None,
    tls: bool = False,
    protocol: str | None = None,
    timeouts: Timeouts | None = None,
    keep: bool = False,
    ids: list[str] | None = None,
    bench: bool = False,
) -> Iterator[LocalCluster]:
    """Start local nodes for the duration of a ``with`` block.

    Without ``dir`` the cluster lives in a temporary directory that is removed
    afterwards. Nodes that were already running in ``dir`` are left running.
    """
    import shutil
    import tempfile

    tmp = None
    if dir is None:
        tmp = Path(tempfile.mkdtemp(prefix="misuan-cluster-"))
        dir = tmp
    d = Path(dir).expanduser().resolve()
    states = up(d, parties=parties, tls=tls, protocol=protocol, timeouts=timeouts, ids=ids, bench=bench)
    started = any(s.started_now for s in states)
    lc = LocalCluster(d, started)
    try:
        yield lc
    finally:
        if started and not keep:
            lc.stop()
        else:
            for c in lc._clients:
                c.close()
        if tmp is not None and not keep:
            shutil.rmtree(tmp, ignore_errors=True)
