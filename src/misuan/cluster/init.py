"""``misuan cluster init``: write a cluster file and everything each node needs.

Layout of a local cluster directory ``D`` (one machine plays every party)::

    D/cluster.toml          public: parties, URLs, link ports, protocol, TLS
    D/admin.key             the admin principal's Ed25519 key (0600)
    D/pki/nodes.pem         trust bundle: every node's self-signed certificate
    D/node<i>/node.toml     node i's private config (names the admin's public key)
    D/node<i>/storage.key, tls/node.pem, tls/node.key   (0600 keys)
    D/node<i>/audit.key, audit.pub   made by node i itself on first start (never copied)
    D/receipts/             the signed audit receipts the admin's client keeps

A multi-host cluster is set up without any machine holding another's keys:
``cluster init --hosts`` writes only ``cluster.toml``; each operator runs
``misuan node init`` on its own host (storage key, TLS key pair, self-signed
certificate, all made there); ``misuan cluster trust`` bundles the exchanged
certificates into ``pki/nodes.pem``, which every node and client then pins.
"""

from __future__ import annotations

import os
import re
import secrets
import socket
from dataclasses import dataclass
from pathlib import Path

import tomli_w

from .._fs import atomic_write
from ..config import DEFAULT_PROTOCOL, MpcSettings, Timeouts, is_loopback, load_cluster
from ..errors import ClusterError, ConfigError, InvalidInput
from ..identity import ADMIN, new_identity, parse_public_key
from ..node.store import create_key_file
from ..pki import make_node_cert, write_trust_bundle

LINK_PORTS_PER_NODE = 16
#: the cluster's trust bundle: every node's self-signed certificate (public)
TRUST_BUNDLE = "pki/nodes.pem"


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
    key_file: str | None = None,
) -> dict:
    doc = {
        "cluster": {
            "name": name,
            "protocol": mpc.protocol,
            "field": mpc.field,
            "fxp_fraction_bits": mpc.fxp_fraction_bits,
            "tls": tls,
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
    if key_file:
        doc["cluster"]["key_file"] = key_file
    if tls:
        doc["cluster"]["ca_cert"] = TRUST_BUNDLE
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
    bench: bool = False,
    separate: bool | None = None,
) -> InitResult:
    """Create a cluster directory. Refuses to overwrite an existing one unless ``force``.

    ``separate`` (default: when any host is not loopback) writes only the public
    cluster file, for operators who each make their node's keys on their own
    host; otherwise this machine plays every party and makes everything."""
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
    if separate if separate is not None else not local:
        # Multi-host: only the public cluster file. Each operator makes its node's
        # keys on its own host (`misuan node init`), the certificates are collected
        # into the trust bundle (`misuan cluster trust`): no machine holds another's keys.
        write_toml(cluster_file, cluster_doc(name, mpc, tls, plist, timeouts, key_file=None))
        load_cluster(cluster_file, check_files=False)  # validate what we wrote
        return InitResult(d, cluster_file, parties, mpc.protocol, tls)
    # The one-command local cluster: this machine is every party and the admin.
    admin_file = d / "admin.key"
    if admin_file.exists():
        if not force:
            raise ClusterError(f"{admin_file} already exists")
        admin_file.unlink()
    admin = new_identity(ADMIN)
    admin.save(admin_file)
    write_toml(cluster_file, cluster_doc(name, mpc, tls, plist, timeouts, key_file="admin.key"))
    for i in range(parties):
        init_node(d / f"node{i}", cluster_file, i, admin.public_key, force=force, bench=bench, check_files=False)
    if tls:
        write_trust_bundle(d / TRUST_BUNDLE, [d / f"node{i}" / "tls" / "node.pem" for i in range(parties)])
    cfg = load_cluster(cluster_file)  # validate what we wrote
    return InitResult(d, cluster_file, cfg.world_size, cfg.mpc.protocol, cfg.tls)


def init_node(
    directory: str | Path,
    cluster_file: str | Path,
    rank: int,
    admin_key: str,
    *,
    force: bool = False,
    bench: bool = False,
    check_files: bool = True,
) -> Path:
    """Make one node's private files on its own host: ``node.toml``, its storage key
    and (with TLS) its key pair and self-signed certificate. Returns the node.toml path."""
    cluster_file = Path(cluster_file).expanduser().resolve()
    cfg = load_cluster(cluster_file, check_files=check_files)
    party = cfg.party(rank)
    try:
        parse_public_key(admin_key)
    except InvalidInput as exc:
        raise ClusterError(f"admin key: {exc}") from None
    nd = Path(directory).expanduser().resolve()
    nd.mkdir(parents=True, exist_ok=True)
    node_toml = nd / "node.toml"
    if node_toml.exists() and not force:
        raise ClusterError(f"{node_toml} already exists (use --force to overwrite)")
    key = nd / "storage.key"
    if key.exists():
        if not force:
            raise ClusterError(f"{key} already exists")
        key.unlink()
    create_key_file(key)
    (nd / "data").mkdir(mode=0o700, exist_ok=True)
    local = is_loopback(party.control_host)
    node = {
        "rank": rank,
        "cluster": os.path.relpath(cluster_file, nd),
        "state_dir": ".",
        "listen_host": "127.0.0.1" if local else "0.0.0.0",
        "admin_key": admin_key,
        "storage_key": "storage.key",
        # where PSI inputs live: principal P may register files under data/P/ only
        "data_dirs": ["data"],
    }
    if bench:  # benchmark programs (never on a production node)
        node["bench"] = True
    if cfg.tls:
        (nd / "tls").mkdir(exist_ok=True)
        make_node_cert(nd / "tls" / "node.pem", nd / "tls" / "node.key", party.id, [party.control_host, party.link_host])
        node["tls_cert"] = "tls/node.pem"
        node["tls_key"] = "tls/node.key"
    write_toml(node_toml, {"node": node}, 0o600)
    return node_toml


def trust(directory: str | Path, certs: list[Path]) -> Path:
    """Write the cluster's trust bundle from every node's certificate (rank order)."""
    d = Path(directory).expanduser().resolve()
    cfg = load_cluster(d / "cluster.toml", check_files=False)
    if len(certs) != cfg.world_size:
        raise ClusterError(f"the cluster has {cfg.world_size} parties; give one certificate each, in rank order")
    out = d / TRUST_BUNDLE
    write_trust_bundle(out, certs)
    load_cluster(d / "cluster.toml")
    return out
