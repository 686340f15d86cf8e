"""Signed audit heads: what a node commits to about its own audit chain.

A node's *head* is ``(seq, hash)`` of the last row of its hash chain (``(0,
GENESIS)`` when empty). Each node signs its heads with its own Ed25519 key,
made by the node on first start in its state dir and never copied anywhere.
A signed head is non-repudiable: once a peer has recorded it, or a client
holds it as a receipt, the node's operator cannot rewrite or shorten the chain
below it without the mismatch showing in ``misuan audit verify``, and nobody
but the node can make one up.

Shared by the node (signing), the client (receipts) and the verifier.
"""

from __future__ import annotations

import base64
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from .errors import ConfigError, IntegrityError

GENESIS = "0" * 64
KEY_FILE = "audit.key"
PUB_FILE = "audit.pub"
RECEIPT_HEADER = "X-Misuan-Receipt"
#: a client's pinned node keys, in its receipts directory
PINS = "pins.json"
_HASH_RE = re.compile(r"^[0-9a-f]{64}$")
_KEY_RE = re.compile(r"^[0-9a-f]{64}$")


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def head_message(cluster: str, party: str, seq: int, hash_: str, ts_ms: int) -> bytes:
    """The exact bytes a head signature covers."""
    return b"misuan-audit-head/v1\n" + json.dumps([cluster, party, seq, hash_, ts_ms], separators=(",", ":")).encode()


@dataclass(frozen=True)
class SignedHead:
    cluster: str
    party: str
    seq: int
    hash: str
    ts_ms: int
    signature: str  # base64url, 64 bytes

    def verify(self, public_key: str) -> None:
        """Raise :class:`IntegrityError` unless ``public_key`` (hex) signed this head."""
        if self.seq < 0 or not _HASH_RE.match(self.hash):
            raise IntegrityError(f"{self.party}: malformed audit head")
        try:
            key = Ed25519PublicKey.from_public_bytes(bytes.fromhex(public_key))
            key.verify(_unb64(self.signature), head_message(self.cluster, self.party, self.seq, self.hash, self.ts_ms))
        except (InvalidSignature, ValueError, TypeError):
            raise IntegrityError(f"{self.party}: audit head {self.seq} is not signed by its pinned key") from None

    def receipt(self) -> str:
        """The compact form sent in the ``X-Misuan-Receipt`` header: ``seq.hash.ts_ms.sig``."""
        return f"{self.seq}.{self.hash}.{self.ts_ms}.{self.signature}"

    @classmethod
    def from_receipt(cls, cluster: str, party: str, text: str) -> "SignedHead":
        parts = text.strip().split(".")
        if len(parts) != 4 or not parts[0].isdigit() or not parts[2].isdigit() or not _HASH_RE.match(parts[1]):
            raise IntegrityError(f"{party}: malformed audit receipt")
        return cls(cluster, party, int(parts[0]), parts[1], int(parts[2]), parts[3])

    def to_dict(self) -> dict:
        return {"party": self.party, "seq": self.seq, "hash": self.hash, "ts_ms": self.ts_ms, "signature": self.signature}


def check_public_key(text: str, where: str) -> str:
    text = text.strip().lower()
    if not _KEY_RE.match(text):
        raise ConfigError(f"{where}: an audit key is 64 hex digits (an Ed25519 public key)")
    return text


def read_pins(directory: Path) -> dict[str, str]:
    try:
        pins = json.loads((directory / PINS).read_text())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot read audit key pins {directory / PINS}: {exc}") from None
    if not isinstance(pins, dict) or not all(isinstance(v, str) for v in pins.values()):
        raise ConfigError(f"{directory / PINS}: expected an object of party ids to hex keys")
    return pins


def read_receipts(path: Path, cluster: str, party: str) -> list[SignedHead]:
    out = []
    for n, line in enumerate(path.read_text().splitlines(), 1):
        parts = line.split()
        if len(parts) != 4:
            raise IntegrityError(f"{path}:{n}: malformed receipt line")
        out.append(SignedHead.from_receipt(cluster, party, ".".join(parts)))
    return out


class HeadSigner:
    """A node's audit signing key (``<state_dir>/audit.key``, 0600, raw 32 bytes)."""

    def __init__(self, state_dir: Path, cluster: str, party: str):
        self.cluster, self.party = cluster, party
        self._key = _load_or_create(Path(state_dir))
        raw = self._key.public_key().public_bytes_raw()
        self.public_key = raw.hex()
        pub = Path(state_dir) / PUB_FILE
        if not pub.exists() or pub.read_text().strip() != self.public_key:
            pub.write_text(self.public_key + "\n")  # public: what operators publish and pin

    def __repr__(self) -> str:
        return f"HeadSigner({self.party}, public_key={self.public_key[:16]}…)"

    def sign(self, seq: int, hash_: str, ts_ms: int) -> SignedHead:
        sig = self._key.sign(head_message(self.cluster, self.party, seq, hash_, ts_ms))
        return SignedHead(self.cluster, self.party, seq, hash_, ts_ms, _b64(sig))


def _load_or_create(state_dir: Path) -> Ed25519PrivateKey:
    path = state_dir / KEY_FILE
    if not path.exists():
        raw = Ed25519PrivateKey.generate().private_bytes_raw()
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            pass  # created concurrently: read it below
        else:
            with open(fd, "wb") as fh:
                fh.write(raw)
                fh.flush()
                os.fsync(fh.fileno())
    if os.stat(path).st_mode & 0o077:
        raise ConfigError(f"audit key {path} must not be readable by group/others (chmod 600)")
    data = path.read_bytes()
    if len(data) != 32:
        raise ConfigError(f"audit key {path} must hold exactly 32 bytes")
    return Ed25519PrivateKey.from_private_bytes(data)
