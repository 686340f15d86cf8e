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
