"""Bearer tokens: one cluster secret, one token per principal.

A principal's token is ``<name>.<mac>`` with ``mac = HMAC-SHA256(secret,
"misuan-token:" + name)`` (base64url). Every node holds the cluster secret and
checks tokens without a shared user table; ``cluster init`` hands the
``admin`` token to the operator, and ``misuan token issue NAME`` derives more.
"""

from __future__ import annotations

import base64
import hmac
import re
from hashlib import sha256

from ..errors import AuthError, InvalidInput

PRINCIPAL_RE = re.compile(r"^[a-z][a-z0-9_-]{0,63}$")
ADMIN = "admin"


def check_principal(name: str) -> str:
    if not PRINCIPAL_RE.match(name or ""):
        raise InvalidInput("principal names are 1-64 chars: a-z first, then a-z 0-9 _ -")
    return name


def issue_token(secret: bytes, principal: str) -> str:
    check_principal(principal)
    mac = hmac.new(secret, b"misuan-token:" + principal.encode(), sha256).digest()
    return f"{principal}.{base64.urlsafe_b64encode(mac).decode().rstrip('=')}"


def principal_of(secret: bytes, token: str | None) -> str:
    """The principal a bearer token proves, or :class:`AuthError`."""
    if not token or "." not in token:
        raise AuthError("missing or malformed bearer token")
    name = token.split(".", 1)[0]
    if not PRINCIPAL_RE.match(name):
        raise AuthError("missing or malformed bearer token")
    if not hmac.compare_digest(issue_token(secret, name), token):
        raise AuthError("invalid bearer token")
    return name
