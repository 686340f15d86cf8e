"""SPU brpc links between nodes (the data plane).

A link is opened per session on ports the nodes reserve for it, so a broken
session never poisons another. With TLS, every party presents its node
certificate and verifies its peers against the cluster CA (mutual TLS), and
brpc itself listens only behind a :class:`~misuan.mpc.tls_gate.TlsGate`, which
refuses every connection that does not open with a TLS handshake (brpc alone
would also serve plaintext on the same port).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from spu import libspu

from .tls_gate import TlsGate


@dataclass(frozen=True)
class LinkTLS:
    cert: Path
    key: Path
    ca: Path


@dataclass(frozen=True)
class SendRetry:
    """How brpc retries a failed send (yacl's ``retry_opts``); ``None`` in a
    :class:`LinkSpec` keeps yacl's defaults."""

    interval_ms: int
    interval_incr_ms: int
    max_interval_ms: int
    max_retry: int


@dataclass(frozen=True)
class LinkSpec:
    """Everything a party needs to join one session's link."""

    link_id: str
    rank: int
    addresses: tuple[str, ...]
    recv_timeout_ms: int
    connect_timeout_s: float
    tls: LinkTLS | None = None
    #: skip yacl's per-message acknowledgements (safe when the protocol only sends
    #: asynchronously, as ABY3 does; CHEETAH's OT uses synchronous sends, which need them)
    async_only: bool = False
    #: wait between connection attempts (attempts: ``connect_timeout_s`` / this)
    connect_interval_ms: int = 20
    send_retry: SendRetry | None = None


def _fill_ssl(opts, tls: LinkTLS) -> None:
    opts.cert.certificate_path = str(tls.cert)
    opts.cert.private_key_path = str(tls.key)
    opts.verify.ca_file_path = str(tls.ca)
    opts.verify.verify_depth = 1


def make_desc(spec: LinkSpec, listen: str | None = None) -> libspu.link.Desc:
    """The link description; ``listen`` replaces this party's own address (brpc binds it)."""
    desc = libspu.link.Desc()
    desc.id = spec.link_id
    for i, addr in enumerate(spec.addresses):
        desc.add_party(f"p{i}", listen if listen is not None and i == spec.rank else addr)
    desc.recv_timeout_ms = spec.recv_timeout_ms
    desc.connect_retry_interval_ms = spec.connect_interval_ms
    desc.connect_retry_times = max(1, int(spec.connect_timeout_s * 1000 / spec.connect_interval_ms))
    # SPU's message keys are already unique per (sender, receiver, counter); yacl's
    # extra sequence ids only add one acknowledgement RPC per message. Without them
    # a round trip on loopback took 0.66 ms instead of 0.84-0.92 ms (3 parties, 2 cores),
    # but yacl then refuses synchronous sends.
    desc.disable_msg_seq_id = spec.async_only
    if spec.send_retry is not None:
        r = spec.send_retry
        desc.retry_opts.retry_interval_ms = r.interval_ms
        desc.retry_opts.retry_interval_incr_ms = r.interval_incr_ms
        desc.retry_opts.max_retry_interval_ms = r.max_interval_ms
        desc.retry_opts.max_retry = r.max_retry
    if spec.tls is not None:
        desc.enable_ssl = True
        _fill_ssl(desc.server_ssl_opts, spec.tls)
        _fill_ssl(desc.client_ssl_opts, spec.tls)
    return desc


def split_host_port(address: str) -> tuple[str, int]:
    host, _, port = address.rpartition(":")
    return host.strip("[]"), int(port)


def open_link(spec: LinkSpec) -> tuple[libspu.link.Context, TlsGate | None]:
    """Open the brpc link; blocks until every peer answered or the timeout passed.

    With TLS, also returns the gate that owns this party's link port: keep it
    (the link is unreachable without it) and close it after the link.
    """
    if spec.tls is None:
        return libspu.link.create_brpc(make_desc(spec), spec.rank), None
    gate = TlsGate(*split_host_port(spec.addresses[spec.rank]))
    try:
        return libspu.link.create_brpc(make_desc(spec, listen=gate.backend), spec.rank), gate
    except BaseException:
        gate.close()
        raise
