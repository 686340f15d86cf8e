"""Snapshot the user's input file into the job directory, detecting concurrent changes.

The engine never reads the user's file twice and never writes next to it: it
copies it once into the node-owned job directory and works only on that copy.
A change to the source *while it is being copied* is detected by comparing the
file's identity and metadata (device, inode, size, mtime in ns) before and
after the copy, and the number of bytes copied; the job then fails with
``InvalidInput`` instead of intersecting a torn file. Changes made after the
snapshot do not affect the job; the snapshot's SHA-256 is reported so the
audit log can name exactly what was intersected.
"""

from __future__ import annotations

import hashlib
import os
import stat
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from misuan.errors import InvalidInput

_CHUNK = 1 << 20


@dataclass(frozen=True)
class Snapshot:
    """A private, immutable copy of one party's input.

    ``plain`` is true when the file has no quote character, no NUL byte and no
    carriage return outside ``\\r\\n``: then every line is one record and the
    fast reader of :mod:`misuan.psi._csvio` applies.
    """

    path: Path
    size: int
    sha256: str
    plain: bool


class _PlainScan:
    """Tracks, chunk by chunk, whether a file is "plain" (see :class:`Snapshot`)."""

    def __init__(self) -> None:
        self.special = False
        self.cr = 0
        self.crlf = 0
        self.last = b""

    def update(self, chunk: bytes) -> None:
        if b'"' in chunk or b"\0" in chunk:
            self.special = True
        if b"\r" in chunk:
            self.cr += chunk.count(b"\r")
            self.crlf += chunk.count(b"\r\n")
        if self.last == b"\r" and chunk[:1] == b"\n":
            self.crlf += 1
        self.last = chunk[-1:]

    @property
    def plain(self) -> bool:
        return not self.special and self.cr == self.crlf


def _identity(st: os.stat_result) -> tuple[int, int, int, int]:
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)


def snapshot_input(source: Path, target: Path, on_progress: Callable[[float], None] | None = None) -> Snapshot:
    """Copy ``source`` to ``target`` (mode 0600) and hash it.

    Args:
        source: the user's CSV (must be a regular file).
        target: destination inside the job directory (must not exist).
        on_progress: called with the copied fraction after each chunk.

    Raises:
        InvalidInput: missing/unreadable/not a regular file, or changed while copied.
    """
    try:
        fd = os.open(source, os.O_RDONLY)
    except FileNotFoundError:
        raise InvalidInput("input file does not exist") from None
    except PermissionError:
        raise InvalidInput("input file is not readable by this node") from None
    except OSError as exc:
        raise InvalidInput(f"input file cannot be opened ({exc.strerror})") from None
    digest = hashlib.sha256()
    scan = _PlainScan()
    copied = 0
    try:
        before = os.fstat(fd)
        if not stat.S_ISREG(before.st_mode):
            raise InvalidInput("input is not a regular file")
        out_fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            while True:
                chunk = os.read(fd, _CHUNK)
                if not chunk:
                    break
                digest.update(chunk)
                scan.update(chunk)
                view = memoryview(chunk)
                while view:
                    view = view[os.write(out_fd, view) :]
                copied += len(chunk)
                if on_progress is not None and before.st_size:
                    on_progress(min(1.0, copied / before.st_size))
        finally:
            os.close(out_fd)
        after_fd = os.fstat(fd)
    finally:
        os.close(fd)
    try:
        after_path = os.stat(source)
    except OSError:
        after_path = None
    if (
        copied != before.st_size
        or _identity(after_fd) != _identity(before)
        or after_path is None
        or _identity(after_path) != _identity(before)
    ):
        raise InvalidInput("input file changed while it was being read; retry when it is stable")
    return Snapshot(path=target, size=copied, sha256=digest.hexdigest(), plain=scan.plain)
