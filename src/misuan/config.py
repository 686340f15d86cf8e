"""Typed, frozen configuration; the only module that reads config files.

Two files describe a deployment:

* ``cluster.toml`` (public, shared with every node and client): the parties,
  their control URLs and link addresses, the MPC protocol and field, TLS and
  timeouts. A client may find its key file through it (``key_file``).
* ``node.toml`` (one per node, private to that node's operator): which party
  this node is, where its state lives, its TLS key pair and storage key.

Both are parsed once, at the entry point, into frozen dataclasses. Every
consistency problem raises :class:`~misuan.errors.ConfigError` with a one-line
reason, so a node refuses to start and says why.
"""

from __future__ import annotations

import ipaddress
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse

import tomllib

from .errors import ConfigError, InvalidInput
from .identity import parse_public_key

#: parties each protocol needs (SPU's own constraints).
PROTOCOL_PARTIES: dict[str, tuple[int, ...]] = {
    "ABY3": (3,),
    "CHEETAH": (2,),
    "SEMI2K": (2, 3, 4, 5),
}
FIELDS = ("FM32", "FM64", "FM128")
DEFAULT_PROTOCOL = {3: "ABY3", 2: "CHEETAH"}


@dataclass(frozen=True)
class MpcSettings:
    """What every party must agree on to compute together."""

    protocol: str = "ABY3"
    field: str = "FM64"
    fxp_fraction_bits: int = 18

    def check(self, parties: int) -> None:
        if self.protocol not in PROTOCOL_PARTIES:
            raise ConfigError(f"unknown protocol {self.protocol!r}; expected one of {sorted(PROTOCOL_PARTIES)}")
        if parties not in PROTOCOL_PARTIES[self.protocol]:
            raise ConfigError(
                f"protocol {self.protocol} needs {_or(PROTOCOL_PARTIES[self.protocol])} parties, the cluster file lists {parties}"
            )
        if self.field not in FIELDS:
            raise ConfigError(f"unknown field {self.field!r}; expected one of {list(FIELDS)}")
        limit = {"FM32": 14, "FM64": 30, "FM128": 60}[self.field]
        if not 1 <= self.fxp_fraction_bits <= limit:
            raise ConfigError(f"fxp_fraction_bits must be in 1..{limit} for {self.field}, got {self.fxp_fraction_bits}")


@dataclass(frozen=True)
class Timeouts:
    """Timeouts shared by clients and nodes (seconds unless named _ms)."""

    #: how long a party waits for one message from a peer before the run fails.
    link_recv_ms: int = 60_000
    #: how long a party tries to reach its peers when a session links.
    link_connect_s: float = 20.0
    #: HTTP connect timeout of the control plane.
    http_connect_s: float = 5.0
    #: HTTP read timeout for quick control calls.
    http_read_s: float = 60.0
    #: a session nobody touched for this long is freed.
    session_idle_s: float = 600.0
    #: how often a node fetches its peers' signed audit heads (it records one
    #: only when the peer logged something new since the last one it recorded).
    audit_peer_s: float = 15.0


#: how long a node keeps an idle control-plane connection open, and how long a
#: client reuses one: clients let go first, so no request races a closing socket.
NODE_KEEP_ALIVE_S = 30
CLIENT_KEEP_ALIVE_S = 10.0


@dataclass(frozen=True)
class PartySpec:
    """One party (node) of the cluster, as everyone sees it."""

    rank: int
    id: str
    control_url: str
    link_host: str
    #: inclusive range of ports this party uses for per-session SPU links.
    link_ports: tuple[int, int]
    #: the node's audit signing key (Ed25519, hex) if the operator published it;
    #: otherwise peers and clients pin the key at first sight.
    audit_key: str | None = None

    @property
    def control_port(self) -> int:
        return urlparse(self.control_url).port or (443 if self.control_url.startswith("https") else 80)

    @property
    def control_host(self) -> str:
        return urlparse(self.control_url).hostname or ""

    def link_address(self, port: int) -> str:
        return f"{self.link_host}:{port}"


@dataclass(frozen=True)
class ClusterConfig:
    """The public description of a cluster (``cluster.toml``)."""

    name: str
    mpc: MpcSettings
    tls: bool
    parties: tuple[PartySpec, ...]
    timeouts: Timeouts = field(default_factory=Timeouts)
    #: trust bundle: every node's pinned self-signed certificate (when tls).
    ca_cert: Path | None = None
    #: the key file of the principal a client acts as by default (local clusters:
    #: the admin's; absent on nodes and in shared copies of the file).
    key_file: Path | None = None
    #: where a client keeps the nodes' signed audit receipts (None: the default).
    receipts_dir: Path | None = None
    #: the file this was read from.
    path: Path | None = None

    @property
    def receipts_path(self) -> Path:
        """The receipts directory: the configured one, else one per cluster under ~/.misuan/audit/."""
        if self.receipts_dir is not None:
            return self.receipts_dir
        import hashlib

        fp = hashlib.sha256("\n".join(f"{p.id} {p.control_url}" for p in self.parties).encode()).hexdigest()[:12]
        return Path.home() / ".misuan" / "audit" / f"{self.name}-{fp}"

    @property
    def world_size(self) -> int:
        return len(self.parties)

    def party(self, rank: int) -> PartySpec:
        if not 0 <= rank < len(self.parties):
            raise ConfigError(f"party rank {rank} is not in this cluster (0..{len(self.parties) - 1})")
        return self.parties[rank]

    def default_identity(self):
        """The :class:`~misuan.identity.Identity` in ``key_file``."""
        from .identity import load_identity

        if self.key_file is None:
            raise ConfigError("the cluster file names no key_file; pass a key file (--key-file or MISUAN_KEY)")
        return load_identity(self.key_file)


@dataclass(frozen=True)
class NodeConfig:
    """One node's private config (``node.toml``)."""

    rank: int
    cluster: ClusterConfig
    state_dir: Path
    listen_host: str
    listen_port: int
    #: the cluster admin's public key (``ed25519:...``): the one principal this
    #: node knows from its config; the admin registers every other principal.
    admin_key: str
    #: AES-256-GCM key of the share store (file, 0600, 32 bytes).
    storage_key_file: Path
    tls_cert: Path | None = None
    tls_key: Path | None = None
    log_level: str = "info"
    #: directories of PSI inputs: principal P may register files under <dir>/P/ only.
    data_dirs: tuple[Path, ...] = ()
    #: OpenMP threads per session worker for SPU's matrix products; 0 = auto
    #: (:meth:`compute_threads_or_auto`).
    compute_threads: int = 0
    #: benchmark programs (``bench.*``) are registered only when this is on: they
    #: add weight copies to a shared runtime, so never on a production node.
    bench: bool = False

    @property
    def party(self) -> PartySpec:
        return self.cluster.party(self.rank)

    def compute_threads_or_auto(self, cpu_count: int | None = None) -> int:
        """Threads for SPU's matrix products in one session worker.

        SPU asks Eigen for 4 OpenMP threads per product whatever the machine; with
        several parties on one host that oversubscribes the cores, and spinning
        OpenMP threads then starve the other parties (3 parties on 2 cores: a
        32-row prefill layer 2.8 -> 1.8 s with 1 thread, the 32-token one-hot
        embedding 12.9 -> 2.8 s). Auto: the host's cores shared among the parties
        whose link host is this node's, between 1 and SPU's 4."""
        if self.compute_threads > 0:
            return self.compute_threads
        cores = cpu_count or os.cpu_count() or 1
        here = self.party.link_host
        local = sum(1 for p in self.cluster.parties if p.link_host == here)
        return max(1, min(4, cores // local))  # local >= 1: this node itself


# ---------------------------------------------------------------- loading


def _or(values: tuple[int, ...]) -> str:
    return " or ".join(str(v) for v in values)


def _read_toml(path: Path) -> dict:
    try:
        with open(path, "rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {path}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path} is not valid TOML: {exc}") from None
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}") from None


def _get(d: dict, key: str, typ: type | tuple[type, ...], where: str, default=...):
    if key not in d:
        if default is ...:
            raise ConfigError(f"{where}: missing key {key!r}")
        return default
    value = d[key]
    if typ is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if not isinstance(value, typ) or (isinstance(value, bool) and typ is not bool):
        raise ConfigError(f"{where}: {key!r} has the wrong type ({type(value).__name__})")
    return value


def _resolve(base: Path, p: str | None) -> Path | None:
    if p is None:
        return None
    path = Path(p).expanduser()
    return path if path.is_absolute() else (base / path).resolve()


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _audit_key(p: dict, where: str) -> str | None:
    key = _get(p, "audit_key", str, where, None)
    if key is None:
        return None
    from .audit_heads import check_public_key

    return check_public_key(key, where)


def load_cluster(path: str | Path, *, check_files: bool = True) -> ClusterConfig:
    """Read and validate a ``cluster.toml`` (``check_files=False``: while a cluster is
    being set up, before its trust bundle exists)."""
    path = Path(path).expanduser().resolve()
    raw = _read_toml(path)
    where = str(path)
    c = raw.get("cluster")
    if not isinstance(c, dict):
        raise ConfigError(f"{where}: missing [cluster] table")
    mpc = MpcSettings(
        protocol=_get(c, "protocol", str, where, "ABY3").upper(),
        field=_get(c, "field", str, where, "FM64").upper(),
        fxp_fraction_bits=_get(c, "fxp_fraction_bits", int, where, 18),
    )
    t = raw.get("timeouts", {})
    if not isinstance(t, dict):
        raise ConfigError(f"{where}: [timeouts] must be a table")
    timeouts = Timeouts(
        link_recv_ms=_get(t, "link_recv_ms", int, where, Timeouts.link_recv_ms),
        link_connect_s=_get(t, "link_connect_s", float, where, Timeouts.link_connect_s),
        http_connect_s=_get(t, "http_connect_s", float, where, Timeouts.http_connect_s),
        http_read_s=_get(t, "http_read_s", float, where, Timeouts.http_read_s),
        session_idle_s=_get(t, "session_idle_s", float, where, Timeouts.session_idle_s),
        audit_peer_s=_get(t, "audit_peer_s", float, where, Timeouts.audit_peer_s),
    )
    if timeouts.audit_peer_s <= 0:
        raise ConfigError(f"{where}: 'audit_peer_s' must be > 0")
    plist = raw.get("parties")
    if not isinstance(plist, list) or not plist:
        raise ConfigError(f"{where}: no [[parties]] listed")
    parties = []
    for i, p in enumerate(plist):
        pw = f"{where}: party #{i}"
        if not isinstance(p, dict):
            raise ConfigError(f"{pw} must be a table")
        rank = _get(p, "rank", int, pw, i)
        if rank != i:
            raise ConfigError(f"{pw}: parties must be listed in rank order (found rank {rank})")
        ports = _get(p, "link_ports", list, pw)
        if len(ports) != 2 or not all(isinstance(x, int) for x in ports) or not 0 < ports[0] <= ports[1] < 65536:
            raise ConfigError(f"{pw}: link_ports must be [first, last] port numbers")
        url = _get(p, "control_url", str, pw)
        u = urlparse(url)
        if u.scheme not in ("http", "https") or not u.hostname or not u.port:
            raise ConfigError(f"{pw}: control_url must look like http(s)://host:port, got {url!r}")
        parties.append(
            PartySpec(
                rank=rank,
                id=_get(p, "id", str, pw, f"node{i}"),
                control_url=url.rstrip("/"),
                link_host=_get(p, "link_host", str, pw),
                link_ports=(ports[0], ports[1]),
                audit_key=_audit_key(p, pw),
            )
        )
    mpc.check(len(parties))
    tls = _get(c, "tls", bool, where, False)
    base = path.parent
    ca = _resolve(base, _get(c, "ca_cert", str, where, None))
    if tls:
        schemes = {urlparse(p.control_url).scheme for p in parties}
        if schemes != {"https"}:
            raise ConfigError(f"{where}: tls = true needs https control URLs for every party")
        if ca is None:
            raise ConfigError(f"{where}: tls = true but no ca_cert given")
        if check_files and not ca.is_file():
            raise ConfigError(f"{where}: trust bundle {ca} is missing (misuan cluster trust)")
    ids = [p.id for p in parties]
    if len(set(ids)) != len(ids):
        raise ConfigError(f"{where}: party ids must be unique")
    return ClusterConfig(
        name=_get(c, "name", str, where, "misuan"),
        mpc=mpc,
        tls=tls,
        parties=tuple(parties),
        timeouts=timeouts,
        ca_cert=ca,
        key_file=_resolve(base, _get(c, "key_file", str, where, None)),
        receipts_dir=_resolve(base, _get(c, "receipts_dir", str, where, None)),
        path=path,
    )


def _check_secret_file(path: Path, what: str, size: int | None = None) -> None:
    if not path.is_file():
        raise ConfigError(f"{what} {path} is missing")
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        raise ConfigError(f"{what} {path} must not be readable by group/others (mode {mode:o}; chmod 600)")
    if size is not None and path.stat().st_size != size:
        raise ConfigError(f"{what} {path} must hold exactly {size} bytes")


def load_node(path: str | Path) -> NodeConfig:
    """Read and validate a ``node.toml`` and the cluster file it names."""
    path = Path(path).expanduser().resolve()
    raw = _read_toml(path)
    where = str(path)
    n = raw.get("node")
    if not isinstance(n, dict):
        raise ConfigError(f"{where}: missing [node] table")
    base = path.parent
    cluster_path = _resolve(base, _get(n, "cluster", str, where))
    cluster = load_cluster(cluster_path)
    rank = _get(n, "rank", int, where)
    party = cluster.party(rank)
    cfg = NodeConfig(
        rank=rank,
        cluster=cluster,
        state_dir=_resolve(base, _get(n, "state_dir", str, where, ".")),
        listen_host=_get(n, "listen_host", str, where, party.control_host),
        listen_port=_get(n, "listen_port", int, where, party.control_port),
        admin_key=_get(n, "admin_key", str, where),
        storage_key_file=_resolve(base, _get(n, "storage_key", str, where, "storage.key")),
        tls_cert=_resolve(base, _get(n, "tls_cert", str, where, None)),
        tls_key=_resolve(base, _get(n, "tls_key", str, where, None)),
        log_level=_get(n, "log_level", str, where, "info"),
        data_dirs=tuple(_resolve(base, d) for d in _get(n, "data_dirs", list, where, ["data"]) if isinstance(d, str)),
        compute_threads=_get(n, "compute_threads", int, where, 0),
        bench=_get(n, "bench", bool, where, False),
    )
    if cfg.compute_threads < 0:
        raise ConfigError(f"{where}: 'compute_threads' must be >= 0 (0 = auto)")
    try:
        parse_public_key(cfg.admin_key)
    except InvalidInput as exc:
        raise ConfigError(f"{where}: admin_key: {exc}") from None
    _check_secret_file(cfg.storage_key_file, "storage key", 32)
    if cluster.tls:
        for what, p in (("TLS certificate", cfg.tls_cert), ("TLS private key", cfg.tls_key)):
            if p is None:
                raise ConfigError(f"{where}: the cluster uses TLS but no {what.lower()} is configured")
            if not p.is_file():
                raise ConfigError(f"{what} {p} is missing")
    elif not all(is_loopback(h) for h in (party.control_host, party.link_host, cfg.listen_host)):
        # without TLS, credentials and shares would cross the network in clear:
        # every address this node listens on must be loopback
        raise ConfigError(f"{where}: party {rank} listens beyond loopback without TLS; the cluster must use TLS (cluster init --tls)")
    return cfg
