"""``misuan cluster init``: write a cluster file and everything each node needs.

Layout of a cluster directory ``D``::

    D/cluster.toml          public: parties, URLs, link ports, protocol, TLS
    D/admin.token           the admin principal's bearer token (0600)
    D/pki/ca.pem, ca.key    the cluster CA (keep ca.key offline in production)
    D/node<i>/node.toml     node i's private config
    D/node<i>/cluster.secret, storage.key, tls/node.pem, tls/node.key   (0600 keys)
    D/node<i>/audit.key, audit.pub   made by node i itself on first start (never copied)
    D/receipts/             the signed audit receipts the admin's client keeps

For a multi-host deployment, copy ``cluster.toml`` + ``pki/ca.pem`` and the
directory ``node<i>`` to host i; clients need ``cluster.toml``, ``pki/ca.pem``
and a token.
"""

from __future__ import annotations

import re
import secrets
import socket
from dataclasses import dataclass
from pathlib import Path

import tomli_w

from .._fs import atomic_write
from ..config import DEFAULT_PROTOCOL, MpcSettings, Timeouts, is_loopback, load_cluster
from ..errors import ClusterError, ConfigError
from ..node import auth
from ..node.store import create_key_file
from ..pki import make_ca, make_node_cert

LINK_PORTS_PER_NODE = 16


@dataclass(frozen=True)
class InitResult:
    dir: Path
    cluster_file: Path
    parties: int
    protocol: str
    tls: bool


def port_free(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def ephemeral_port_range() -> tuple[int, int]:
    """The kernel's range for outgoing connections' local ports (inclusive)."""
    try:
        lo, hi = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(lo), int(hi)
    except (OSError, ValueError):
        return 32768, 60999  # Linux default


def find_port_block(n: int, taken: set[int] = frozenset(), lo: int = 20000, hi: int = 60000) -> int:
    """A random base port with ``n`` consecutive free ports on loopback.

    Blocks avoid the ephemeral range: a port there can be taken at any moment as
    the local end of some outgoing connection, and a node restarting after a
    crash then finds its own port busy (seen as a flaky restart in the fault tests).
    """
    eph_lo, eph_hi = ephemeral_port_range()
    if eph_lo - lo > 4 * n:
        hi = min(hi, eph_lo)
    elif hi - eph_hi > 4 * n:
        lo = max(lo, eph_hi + 1)
    rng = secrets.SystemRandom()
    for _ in range(200):
        base = rng.randrange(lo, hi - n)
        block = range(base, base + n)
        if not taken.intersection(block) and all(port_free(p) for p in block):
            return base
    raise ClusterError(f"could not find {n} free consecutive ports on this machine")


def cluster_doc(
    name: str,
    mpc: MpcSettings,
    tls: bool,
    parties: list[dict],
    timeouts: Timeouts,
) -> dict:
    doc = {
        "cluster": {
            "name": name,
            "protocol": mpc.protocol,
            "field": mpc.field,
            "fxp_fraction_bits": mpc.fxp_fraction_bits,
            "tls": tls,
            "token_file": "admin.token",
            # this copy's client keeps the nodes' signed audit receipts here
            "receipts_dir": "receipts",
        },
        "timeouts": {
            "link_recv_ms": timeouts.link_recv_ms,
            "link_connect_s": timeouts.link_connect_s,
            "http_connect_s": timeouts.http_connect_s,
            "http_read_s": timeouts.http_read_s,
            "session_idle_s": timeouts.session_idle_s,
            "audit_peer_s": timeouts.audit_peer_s,
        },
        "parties": parties,
    }
    if tls:
        doc["cluster"]["ca_cert"] = "pki/ca.pem"
    return doc


def write_toml(path: Path, doc: dict, mode: int = 0o644) -> None:
    atomic_write(path, tomli_w.dumps(doc).encode(), mode)


def init_cluster(
    directory: str | Path,
    *,
    parties: int = 3,
    hosts: list[str] | None = None,
    tls: bool | None = None,
    protocol: str | None = None,
    field: str = "FM64",
    fxp_fraction_bits: int = 18,
    timeouts: Timeouts | None = None,
    base_port: int | None = None,
    force: bool = False,
    name: str = "misuan",
    ids: list[str] | None = None,
) -> InitResult:
    """Create a cluster directory. Refuses to overwrite an existing one unless ``force``."""
    d = Path(directory).expanduser().resolve()
    cluster_file = d / "cluster.toml"
    if cluster_file.exists() and not force:
        raise ClusterError(f"{cluster_file} already exists (use --force to overwrite)")
    protocol = (protocol or DEFAULT_PROTOCOL.get(parties, "SEMI2K")).upper()
    mpc = MpcSettings(protocol=protocol, field=field.upper(), fxp_fraction_bits=fxp_fraction_bits)
    try:
        mpc.check(parties)
    except ConfigError as exc:
        raise ClusterError(str(exc)) from None
    hosts = list(hosts) if hosts else ["127.0.0.1"] * parties
    if len(hosts) != parties:
        raise ClusterError(f"--hosts lists {len(hosts)} hosts for {parties} parties")
    local = all(is_loopback(h) for h in hosts)
    if tls is None:
        tls = not local
    if not tls and not local:
        raise ClusterError("nodes on other hosts need TLS (drop --no-tls)")
    timeouts = timeouts or Timeouts()
    ids = list(ids) if ids else [f"node{i}" for i in range(parties)]
    if len(ids) != parties or len(set(ids)) != parties or not all(re.match(r"^[a-z][a-z0-9_-]{0,31}$", i) for i in ids):
        raise ClusterError("--ids needs one distinct lowercase name per party (a-z first, then a-z 0-9 _ -)")

    per_node = 1 + LINK_PORTS_PER_NODE
    taken: set[int] = set()
    plist = []
    for i, host in enumerate(hosts):
        if base_port is not None:
            base = base_port + i * per_node
        elif is_loopback(host):
            base = find_port_block(per_node, taken)
        else:
            base = 7700 + i * per_node if hosts.count(host) > 1 else 7700
        taken.update(range(base, base + per_node))
        scheme = "https" if tls else "http"
        plist.append(
            {
                "rank": i,
                "id": ids[i],
                "control_url": f"{scheme}://{host}:{base}",
                "link_host": host,
                "link_ports": [base + 1, base + LINK_PORTS_PER_NODE],
            }
        )

    d.mkdir(parents=True, exist_ok=True)
    secret = secrets.token_hex(32).encode()
    atomic_write(d / "admin.token", (auth.issue_token(secret, auth.ADMIN) + "\n").encode(), 0o600)
    if tls:
        (d / "pki").mkdir(exist_ok=True)
        make_ca(d / "pki" / "ca.pem", d / "pki" / "ca.key", name)
    for i, host in enumerate(hosts):
        nd = d / f"node{i}"
        nd.mkdir(exist_ok=True)
        atomic_write(nd / "cluster.secret", secret, 0o600)
        key = nd / "storage.key"
        if key.exists():
            if not force:
                raise ClusterError(f"{key} already exists")
            key.unlink()
        create_key_file(key)
        node = {
            "rank": i,
            "cluster": "../cluster.toml",
            "state_dir": ".",
            "listen_host": "127.0.0.1" if is_loopback(host) else "0.0.0.0",
            "secret_file": "cluster.secret",
            "storage_key": "storage.key",
            # files PSI jobs may read: the whole machine for a local cluster
            # (the operator is its only user), a data dir on shared hosts
            "data_dirs": ["/"] if is_loopback(host) else ["data"],
        }
        if tls:
            (nd / "tls").mkdir(exist_ok=True)
            make_node_cert(d / "pki" / "ca.pem", d / "pki" / "ca.key", nd / "tls" / "node.pem", nd / "tls" / "node.key", ids[i], [host])
            node["tls_cert"] = "tls/node.pem"
            node["tls_key"] = "tls/node.key"
        write_toml(nd / "node.toml", {"node": node}, 0o600)
    write_toml(cluster_file, cluster_doc(name, mpc, tls, plist, timeouts))
    cfg = load_cluster(cluster_file)  # validate what we wrote
    return InitResult(d, cluster_file, cfg.world_size, cfg.mpc.protocol, cfg.tls)
