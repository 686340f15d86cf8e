"""Names in sessions: session ids, variable names, and the reserved namespaces."""

from __future__ import annotations

import re

from ..errors import InvalidInput

SESSION_ID_RE = re.compile(r"^[A-Za-z0-9_-]{8,64}$")
VAR_RE = re.compile(r"^[A-Za-z0-9_.:-]{1,128}$")
#: names a client may use in its own sessions: no ':', which starts the node's
#: reserved namespaces (``w:`` stored weights, ``r:<request>:`` requests).
CLIENT_VAR_RE = re.compile(r"^[A-Za-z0-9_.-]{1,128}$")


def check_session_id(sid: str) -> str:
    if not SESSION_ID_RE.match(sid or ""):
        raise InvalidInput("session ids are 8-64 chars of letters, digits, '_' or '-'")
    return sid


def check_var_name(name: str) -> str:
    if not VAR_RE.match(name or ""):
        raise InvalidInput("variable names are 1-128 chars of letters, digits, '_', '.', ':' or '-'")
    return name


def check_client_var_name(name: str) -> str:
    if not CLIENT_VAR_RE.match(name or ""):
        raise InvalidInput("variable names are 1-128 chars of letters, digits, '_', '.' or '-' (':' is reserved)")
    return name


#: placeholder for the request id in compiled programs; the worker substitutes
#: it after the hash check, so one executable serves every request.
REQ = "$"
WEIGHT_PREFIX = "w:"
REQUEST_PREFIX = "r:"


def weight_var(tensor: str) -> str:
    """A stored weight's variable in a resident runtime (never readable by anyone)."""
    return f"{WEIGHT_PREFIX}{tensor}"


def request_var(request: str, name: str) -> str:
    """A request's input or output variable in a resident runtime."""
    return f"{REQUEST_PREFIX}{request}:{name}"


def bind_request(names, request: str) -> list[str]:
    """A compiled program's variable names with the placeholder bound to ``request``."""
    placeholder, bound = request_var(REQ, ""), request_var(request, "")
    return [n.replace(placeholder, bound) for n in names]
