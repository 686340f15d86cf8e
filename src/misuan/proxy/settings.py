"""The proxy's frozen configuration, and the one rule checked before it listens."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from .. import errors as E

LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")


def is_loopback(host: str) -> bool:
    if host.strip("[]") in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True)
class ProxySettings:
    host: str = "127.0.0.1"
    port: int = 8080
    #: clients must send ``Authorization: Bearer <api_key>`` when set
    api_key: str | None = None
    #: origins allowed by CORS (none: CORS off)
    cors_origins: tuple[str, ...] = ()
    #: extra names the ``Host`` header may carry (loopback names and ``host`` always may)
    allowed_hosts: tuple[str, ...] = ()
    #: requests that may wait behind the one generation a model runs; more get 429
    max_waiting: int = 4
    #: an SSE comment at least this often while a step runs (clients' read timeouts)
    keepalive_s: float = 5.0
    #: how long a stream waits for the backend's own input checks before it answers 200
    check_grace_s: float = 0.3
    #: ``retry-after`` seconds on 429/503
    retry_after_s: int = 5
    #: answer length when a request names none (capped to a quarter of the model's context)
    default_max_tokens: int = 128

    def check(self) -> None:
        """Refuse to listen beyond this machine without an API key."""
        if not is_loopback(self.host) and not self.api_key:
            raise E.ConfigError(
                f"refusing to listen on {self.host}: any host that can reach it could use your models as you; "
                "pass --api-key (or bind 127.0.0.1)"
            )
        if self.max_waiting < 0 or self.keepalive_s <= 0 or self.keepalive_s > 10:
            raise E.ConfigError("max_waiting must be >= 0 and keepalive_s in (0, 10]")

    def host_allowed(self, host_header: str | None) -> bool:
        """The ``Host`` check against DNS rebinding (any host when bound to every interface,
        where the API key is required anyway)."""
        if self.host in ("0.0.0.0", "::"):
            return True
        if not host_header:
            return False
        name = host_header.rsplit(":", 1)[0] if not host_header.endswith("]") else host_header
        if host_header.startswith("["):
            name = host_header[: host_header.index("]") + 1]
        return name.strip("[]").lower() in {*LOOPBACK_NAMES, self.host.strip("[]").lower(), *(h.lower() for h in self.allowed_hosts)}
