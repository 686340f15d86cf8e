"""Principals are Ed25519 key pairs; every request to a node is signed.

A principal makes its key pair on its own machine (:func:`new_identity`) and
keeps the private key there, in a 0600 key file. Nodes hold only public keys
(registered by the cluster admin, see ``node/auth.py``), so no node — and no
operator reading a node's disk — can act as a principal.

A request carries::

    Authorization: Misuan <principal>:<unix time>:<nonce>:<signature>
    X-Misuan-Content-SHA256: <hex SHA-256 of the body>

and the signature (base64url, Ed25519) covers :func:`signed_message`: the
target node's party id, the method, the path with its query, the body hash,
the time and the nonce. A node accepts a request only for itself, within
:data:`MAX_SKEW_S` of its clock, and each nonce once.
"""

from __future__ import annotations

import base64
import hashlib
import re
import secrets
import time
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from ._fs import atomic_write
from .errors import AuthError, ConfigError, InvalidInput

PRINCIPAL_RE = re.compile(r"^[a-z][a-z0-9_-]{0,63}$")
#: names no one can register: the node core's own (``system``) and the admin's.
ADMIN = "admin"
RESERVED = frozenset({"system", "node", "peer", "anonymous"})
SCHEME = "Misuan"
BODY_HEADER = "X-Misuan-Content-SHA256"
MAX_SKEW_S = 300
EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()
_PUB_PREFIX = "ed25519:"


def check_principal(name: str) -> str:
    if not PRINCIPAL_RE.match(name or ""):
        raise InvalidInput("principal names are 1-64 chars: a-z first, then a-z 0-9 _ -")
    return name


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def parse_public_key(text: str) -> Ed25519PublicKey:
    """``ed25519:<base64url of the 32 raw bytes>`` → key, or :class:`InvalidInput`."""
    try:
        if not text.startswith(_PUB_PREFIX):
            raise ValueError
        raw = _unb64(text[len(_PUB_PREFIX) :])
        if len(raw) != 32:
            raise ValueError
        return Ed25519PublicKey.from_public_bytes(raw)
    except (ValueError, TypeError):
        raise InvalidInput("a public key looks like ed25519:<43 base64url characters>") from None


def format_public_key(key: Ed25519PublicKey) -> str:
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    return _PUB_PREFIX + _b64(key.public_bytes(Encoding.Raw, PublicFormat.Raw))


def signed_message(party: str, method: str, target: str, body_sha256: str, ts: int, nonce: str) -> bytes:
    return "\n".join(("misuan-request-v1", party, method.upper(), target, body_sha256, str(ts), nonce)).encode()


@dataclass(frozen=True)
class Identity:
    """A principal's name and private key (lives on the principal's machine only)."""

    principal: str
    _key: Ed25519PrivateKey = field(repr=False)

    def __repr__(self) -> str:
        return f"Identity({self.principal!r}, key=HIDDEN)"

    @property
    def public_key(self) -> str:
        return format_public_key(self._key.public_key())

    def sign_request(self, party: str, method: str, target: str, body_sha256: str, *, now: float | None = None) -> dict[str, str]:
        """The headers that authenticate one request to node ``party``."""
        ts = int(now if now is not None else time.time())
        nonce = secrets.token_hex(12)
        sig = _b64(self._key.sign(signed_message(party, method, target, body_sha256, ts, nonce)))
        return {"Authorization": f"{SCHEME} {self.principal}:{ts}:{nonce}:{sig}", BODY_HEADER: body_sha256}

    def sign(self, data: bytes) -> str:
        return _b64(self._key.sign(data))

    def save(self, path: str | Path) -> Path:
        """Write the key file (0600, atomically); refuses to overwrite."""
        from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat

        path = Path(path).expanduser()
        if path.exists():
            raise ConfigError(f"{path} already exists; refusing to overwrite a key")
        raw = self._key.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())
        text = f'principal = "{self.principal}"\nprivate_key = "ed25519:{_b64(raw)}"\n'
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(path, text.encode(), 0o600)
        return path


def new_identity(principal: str) -> Identity:
    return Identity(check_principal(principal), Ed25519PrivateKey.generate())


def load_identity(path: str | Path) -> Identity:
    """Read a key file written by :meth:`Identity.save`; one-line errors."""
    import stat

    import tomllib

    path = Path(path).expanduser()
    try:
        mode = stat.S_IMODE(path.stat().st_mode)
        raw = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"key file not found: {path}") from None
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
        raise ConfigError(f"{path} is not a misuan key file") from None
    if mode & 0o077:
        raise ConfigError(f"key file {path} must not be readable by group/others (mode {mode:o}; chmod 600)")
    name, key = raw.get("principal"), raw.get("private_key")
    try:
        if not isinstance(name, str) or not isinstance(key, str) or not key.startswith(_PUB_PREFIX):
            raise ValueError
        check_principal(name)
        priv = Ed25519PrivateKey.from_private_bytes(_unb64(key[len(_PUB_PREFIX) :]))
    except (ValueError, InvalidInput):
        raise ConfigError(f"{path} is not a misuan key file") from None
    return Identity(name, priv)


@dataclass(frozen=True)
class SignedRequest:
    """The parsed ``Authorization`` header of a request."""

    principal: str
    ts: int
    nonce: str
    signature: bytes


_AUTH_RE = re.compile(r"^Misuan ([a-z][a-z0-9_-]{0,63}):(\d{1,12}):([0-9a-f]{24}):([A-Za-z0-9_-]{86})$")


def parse_authorization(header: str | None) -> SignedRequest:
    m = _AUTH_RE.match(header or "")
    if m is None:
        raise AuthError("missing or malformed request signature")
    return SignedRequest(m[1], int(m[2]), m[3], _unb64(m[4]))


def verify_signature(key: Ed25519PublicKey, signature: bytes, message: bytes) -> bool:
    try:
        key.verify(signature, message)
    except InvalidSignature:
        return False
    return True


__all__ = [
    "ADMIN",
    "BODY_HEADER",
    "EMPTY_SHA256",
    "Identity",
    "check_principal",
    "load_identity",
    "new_identity",
    "parse_public_key",
]
