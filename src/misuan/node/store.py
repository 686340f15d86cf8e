"""Encrypted share store: AES-256-GCM with a per-node key, atomic writes.

Each stored object is one file::

    b"MSE1" | nonce (12 bytes) | AES-256-GCM(plaintext, aad=key name)

The key name is bound as associated data, so a file swapped for another one
fails authentication as surely as a flipped bit or a truncation does. Writes
go to a temp file in the same directory, are fsynced, then renamed over the
target, so a crash mid-write leaves the old file intact.
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from .._fs import atomic_write
from ..errors import ConfigError, IntegrityError, InvalidInput, NotFound

MAGIC = b"MSE1"
KEY_BYTES = 32
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
#: AES-GCM encrypts up to 2^36 bytes per message; stay well below for memory.
MAX_OBJECT = 1 << 34
KEYCHECK = "keycheck.chk"


def create_key_file(path: Path) -> None:
    """Write a fresh random 32-byte key, readable by the owner only."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(secrets.token_bytes(KEY_BYTES))


def check_key_name(key: str) -> str:
    parts = key.split("/")
    if not parts or not all(_NAME.match(p) for p in parts) or any(p in (".", "..") for p in parts):
        raise InvalidInput("invalid storage key (letters, digits, '.', '_', '-' and '/' separators only)")
    return key


class ShareStore:
    """Files of encrypted shares under ``root``, addressed by ``a/b/c`` keys."""

    def __init__(self, root: Path, key_file: Path):
        self.root = Path(root)
        try:
            key = Path(key_file).read_bytes()
        except OSError as exc:
            raise ConfigError(f"cannot read storage key {key_file}: {exc.strerror}") from None
        if len(key) != KEY_BYTES:
            raise ConfigError(f"storage key {key_file} must hold exactly {KEY_BYTES} bytes")
        self._aead = AESGCM(key)

    def __repr__(self) -> str:
        return f"ShareStore({str(self.root)!r}, key=HIDDEN)"

    def path_of(self, key: str) -> Path:
        return self.root.joinpath(*check_key_name(key).split("/"))

    def write(self, key: str, data: bytes) -> int:
        if len(data) > MAX_OBJECT:
            raise InvalidInput("object too large for the share store")
        path = self.path_of(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        nonce = secrets.token_bytes(12)
        blob = self._aead.encrypt(nonce, data, key.encode())
        atomic_write(path, [MAGIC, nonce, blob])
        return len(blob) + 16

    def read(self, key: str) -> bytes:
        path = self.path_of(key)
        try:
            raw = path.read_bytes()
        except FileNotFoundError:
            raise NotFound(f"no stored object {key!r}") from None
        if len(raw) < 4 + 12 + 16 or raw[:4] != MAGIC:
            raise IntegrityError(f"share file {path} is truncated or not a misuan share file")
        try:
            return self._aead.decrypt(raw[4:16], raw[16:], key.encode())
        except InvalidTag:
            raise IntegrityError(f"share file {path} failed authentication (tampered, truncated or wrong node key)") from None

    def exists(self, key: str) -> bool:
        return self.path_of(key).is_file()

    def delete_tree(self, key: str) -> None:
        path = self.path_of(key)
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink(missing_ok=True)

    def usage_bytes(self) -> int:
        return sum(p.stat().st_size for p in self.root.rglob("*") if p.is_file()) if self.root.exists() else 0

    # ---------------------------------------------------------- key check

    def ensure_key_check(self) -> None:
        """Bind the store to its key: the first start writes a check object;
        later starts must decrypt it, so a wrong key refuses to start."""
        if self.exists(KEYCHECK):
            try:
                if self.read(KEYCHECK) != b"misuan-key-check":
                    raise IntegrityError("key check mismatch")
            except IntegrityError:
                raise ConfigError(
                    f"storage key does not open this node's share store ({self.root}); wrong node key"
                ) from None
        else:
            self.root.mkdir(parents=True, exist_ok=True)
            self.write(KEYCHECK, b"misuan-key-check")
