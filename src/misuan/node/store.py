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

from .._fs import atomic_write, fsync_dir
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
        self._key = key

    def __repr__(self) -> str:
        return f"ShareStore({str(self.root)!r}, key=HIDDEN)"

    def path_of(self, key: str) -> Path:
        return self.root.joinpath(*check_key_name(key).split("/"))

    def write(self, key: str, data: bytes, aad: str | None = None) -> int:
        if len(data) > MAX_OBJECT:
            raise InvalidInput("object too large for the share store")
        path = self.path_of(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        nonce = secrets.token_bytes(12)
        blob = self._aead.encrypt(nonce, data, (aad or key).encode())
        atomic_write(path, [MAGIC, nonce, blob])
        return len(blob) + 16

    def writer(self, key: str, aad: str) -> "StreamWriter":
        """Encrypt a stream into ``key``; nothing is visible there before ``commit``."""
        return StreamWriter(self._key, self.path_of(key), aad)

    def read(self, key: str, aad: str | None = None) -> bytes:
        path = self.path_of(key)
        try:
            raw = path.read_bytes()
        except FileNotFoundError:
            raise NotFound(f"no stored object {key!r}") from None
        if len(raw) < 4 + 12 + 16 or raw[:4] != MAGIC:
            raise IntegrityError(f"share file {path} is truncated or not a misuan share file")
        try:
            return self._aead.decrypt(raw[4:16], raw[16:], (aad or key).encode())
        except InvalidTag:
            raise IntegrityError(f"share file {path} failed authentication (tampered, truncated or wrong node key)") from None

    def exists(self, key: str) -> bool:
        return self.path_of(key).is_file()

    def move_tree(self, src: str, dst: str) -> None:
        """Rename a directory of objects (atomic on one filesystem)."""
        target = self.path_of(dst)
        if target.exists():
            raise InvalidInput(f"{dst!r} already exists in the share store")
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(self.path_of(src), target)
        fsync_dir(target.parent)

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
                raise ConfigError(f"storage key does not open this node's share store ({self.root}); wrong node key") from None
        else:
            self.root.mkdir(parents=True, exist_ok=True)
            self.write(KEYCHECK, b"misuan-key-check")


class StreamWriter:
    """AES-256-GCM over a stream, to a temp file renamed into place on commit.

    The file has the same layout as :meth:`ShareStore.write` (magic, nonce,
    ciphertext, tag), so :meth:`ShareStore.read` opens both.
    """

    def __init__(self, key: bytes, path: Path, aad: str):
        import hashlib

        from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
        self._fh = open(os.open(self._tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "wb")
        nonce = secrets.token_bytes(12)
        self._enc = Cipher(algorithms.AES(key), modes.GCM(nonce)).encryptor()
        self._enc.authenticate_additional_data(aad.encode())
        self._fh.write(MAGIC + nonce)
        self.sha256 = hashlib.sha256()
        self.bytes = 0

    def __repr__(self) -> str:
        return f"StreamWriter({str(self.path)!r}, HIDDEN)"

    def update(self, data: bytes | memoryview) -> None:
        self.sha256.update(data)
        self.bytes += len(data)
        if self.bytes > MAX_OBJECT:
            self.abort()
            raise InvalidInput("object too large for the share store")
        self._fh.write(self._enc.update(data))

    def commit(self) -> str:
        """Finish, fsync, rename into place; returns the plaintext's sha256."""
        self._fh.write(self._enc.finalize())
        self._fh.write(self._enc.tag)
        self._fh.flush()
        os.fsync(self._fh.fileno())
        self._fh.close()
        os.replace(self._tmp, self.path)
        fsync_dir(self.path.parent)
        return self.sha256.hexdigest()

    def abort(self) -> None:
        if not self._fh.closed:
            self._fh.close()
        self._tmp.unlink(missing_ok=True)
