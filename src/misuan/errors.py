"""One exception tree for misuan.

Every error a user can see derives from :class:`MisuanError`. Library errors
(spu, httpx, sqlite3, cryptography) are translated at the boundary where they
occur, so callers only ever catch misuan types. Messages are one line and never
contain secret values (shares, weights, prompts, answers).
"""

from __future__ import annotations


class MisuanError(Exception):
    """Base class of every misuan error."""

    #: HTTP status a node answers with when this error crosses its API.
    http_status: int = 500

    def __str__(self) -> str:  # keep messages on one line
        return " ".join(super().__str__().split())


class ConfigError(MisuanError):
    """A config or cluster file is missing, malformed or inconsistent."""


class InvalidInput(MisuanError):
    """Untrusted input was rejected. The message never echoes secret content."""

    http_status = 422


class AuthError(MisuanError):
    """Missing or wrong credentials."""

    http_status = 401


class PermissionDenied(MisuanError):
    """Authenticated, but not allowed to do this."""

    http_status = 403


class NotFound(MisuanError):
    """Unknown session, variable, asset or job."""

    http_status = 404


class Conflict(MisuanError):
    """The request conflicts with current state (e.g. a busy session)."""

    http_status = 409


class IntegrityError(MisuanError):
    """Stored data failed authentication (tampered, truncated or wrong key)."""

    http_status = 500


class ComputeError(MisuanError):
    """An MPC computation failed (peer lost, link timeout, program error)."""

    http_status = 502


class ClusterError(MisuanError):
    """Cluster tooling failed (start, stop, ports, processes)."""


class NodeError(MisuanError):
    """A specific node failed; the message names it."""

    def __init__(self, message: str, *, party: int | None = None, url: str | None = None):
        super().__init__(message)
        self.party = party
        self.url = url


class NodeUnavailable(NodeError):
    """A node could not be reached."""


class NodeTimeout(NodeError):
    """A node did not answer within the configured timeout."""


#: every misuan error by name (a PSI party reports its error by class name, any of the tree)
ALL_ERRORS: dict[str, type[MisuanError]] = {
    cls.__name__: cls
    for cls in (
        MisuanError,
        ConfigError,
        InvalidInput,
        AuthError,
        PermissionDenied,
        NotFound,
        Conflict,
        IntegrityError,
        ComputeError,
        ClusterError,
        NodeError,
        NodeUnavailable,
        NodeTimeout,
    )
}
#: errors that cross a wire by name (node HTTP answers, worker IPC replies): the one map
#: both ends translate with. Anything else arrives as its side's generic error.
WIRE_ERRORS: dict[str, type[MisuanError]] = {
    cls.__name__: cls for cls in (InvalidInput, AuthError, PermissionDenied, NotFound, Conflict, IntegrityError, ComputeError, ConfigError)
}
#: HTTP statuses of answers that name no misuan error
HTTP_ERRORS: dict[int, type[MisuanError]] = {401: AuthError, 403: PermissionDenied, 404: NotFound, 409: Conflict, 422: InvalidInput}


def from_wire(name: str | None, default: type[MisuanError]) -> type[MisuanError]:
    """The error class a wire answer names (``default`` when it names none we know)."""
    return WIRE_ERRORS.get(name or "", default)


def from_name(name: str | None, default: type[MisuanError]) -> type[MisuanError]:
    """The error class of any name in the tree (``default`` when it names none)."""
    return ALL_ERRORS.get(name or "", default)
