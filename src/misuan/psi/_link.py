"""Open the job's own SPU brpc link to the peer (optionally mutual TLS)."""

from __future__ import annotations

from typing import Any

from misuan.errors import ComputeError, InvalidInput, NodeTimeout
from misuan.mpc.tls_gate import TlsGate
from misuan.psi._rendezvous import wait_for_peer
from misuan.psi.spec import PsiLink, split_address

_MIN_RECV_TIMEOUT_MS = 60_000
_MAX_RECV_TIMEOUT_MS = 900_000
_MS_PER_INPUT_MB = 1_000


def auto_recv_timeout_ms(input_bytes: int) -> int:
    """Default per-message timeout: 60 s + 1 s per MB of input, capped at 15 min.

    Both sides heartbeat during their local phases (libpsi every 5 s, misuan
    every second), so this only bounds the gaps inside the protocol, which
    libpsi bucketises (2^20 keys per bucket).
    """
    extra = (input_bytes // (1 << 20)) * _MS_PER_INPUT_MB
    return int(min(_MAX_RECV_TIMEOUT_MS, _MIN_RECV_TIMEOUT_MS + extra))


def check_tls_files(link: PsiLink) -> None:
    if link.tls is not None:
        for path in (link.tls.cert_path, link.tls.key_path, link.tls.ca_path):
            if not path.is_file():
                raise InvalidInput(f"TLS file {path.name!r} does not exist")


#: the rendezvous already waited for the peer, so connecting should succeed at
#: once: brpc retries briefly (5 x 200 ms to connect, 5 sends) so a failure surfaces in seconds
_CONNECT_S, _CONNECT_INTERVAL_MS = 1.0, 200


def build_desc(link: PsiLink, recv_timeout_ms: int, listen: str | None = None) -> Any:
    """The ``spu.libspu.link.Desc`` for ``link`` (:func:`misuan.mpc.link.make_desc`; imports spu lazily).

    ``listen`` replaces this party's own address (where brpc binds).
    """
    from misuan.mpc.link import LinkSpec, LinkTLS, SendRetry, make_desc

    check_tls_files(link)
    spec = LinkSpec(
        link_id=f"psi-{link.job_id}",
        rank=link.self_rank,
        addresses=link.addresses,
        recv_timeout_ms=recv_timeout_ms,
        connect_timeout_s=_CONNECT_S,
        tls=None if link.tls is None else LinkTLS(link.tls.cert_path, link.tls.key_path, link.tls.ca_path),
        connect_interval_ms=_CONNECT_INTERVAL_MS,
        send_retry=SendRetry(interval_ms=100, interval_incr_ms=400, max_interval_ms=2_000, max_retry=5),
    )
    return make_desc(spec, listen=listen)


def open_link(link: PsiLink, recv_timeout_ms: int) -> tuple[Any, TlsGate | None]:
    """Wait for the peer, then create and connect the brpc link context.

    With TLS, brpc listens behind a :class:`TlsGate` on this party's port (brpc
    alone would also serve plaintext there); the gate is returned with the
    context: close it after stopping the link.

    Raises:
        NodeTimeout: the peer never showed up.
        ComputeError: the brpc link could not be set up (e.g. TLS refused).
    """
    check_tls_files(link)
    wait_for_peer(link)
    if link.tls is None:
        return _create(link, build_desc(link, recv_timeout_ms)), None
    host, port = split_address(link.addresses[link.self_rank])
    try:
        gate = TlsGate(host, port)
    except OSError:
        raise ComputeError(f"PSI link cannot listen on port {port}") from None
    try:
        return _create(link, build_desc(link, recv_timeout_ms, listen=gate.backend)), gate
    except BaseException:
        gate.close()
        raise


def _create(link: PsiLink, desc: Any) -> Any:
    from spu.libspu import link as spu_link

    try:
        return spu_link.create_brpc(desc, link.self_rank)
    except RuntimeError as exc:
        if "connect to mesh failed" in str(exc):
            raise NodeTimeout(
                f"PSI link to peer (rank {link.peer_rank}) could not be established"
                + (" (TLS handshake refused?)" if link.tls is not None else ""),
                party=link.peer_rank,
                url=link.addresses[link.peer_rank],
            ) from None
        raise ComputeError(f"PSI link setup failed: {summarize_error(exc)}") from None


def summarize_error(exc: BaseException) -> str:
    """First informative line of a yacl/libpsi error, without stack trace, <= 160 chars.

    libpsi only ever sees key digests (never raw keys), so its messages cannot
    carry a user's key or row.
    """
    for line in str(exc).splitlines():
        line = line.strip()
        if line and line != "what:" and not line.startswith(("stacktrace", "#")):
            if line.startswith("[") and "] " in line:
                line = line.split("] ", 1)[1]
            return line[:160]
    return type(exc).__name__
