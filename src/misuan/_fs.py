"""Filesystem helpers: atomic writes."""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any


@contextmanager
def atomic_open(
    path: Path, mode: str = "wb", perm: int = 0o600, *, suffix: str = ".tmp", strict_dir_sync: bool = True, **kwargs: Any
) -> Iterator[IO]:
    """Open a hidden temp file beside ``path``; on a clean exit fsync it and rename it
    over ``path`` (readers see the old or the new file, never half), then fsync the
    directory. On any exception the temp file is removed and ``path`` is untouched.

    ``strict_dir_sync=False`` ignores a directory that cannot be fsynced (some
    filesystems a user may point an output at refuse it)."""
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}{suffix}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, perm)
    try:
        with open(fd, mode, **kwargs) as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent, strict=strict_dir_sync)


def atomic_write(path: Path, data: bytes | list[bytes], mode: int = 0o600) -> None:
    """Write ``data`` to ``path`` so readers see the old or the new file, never half."""
    with atomic_open(path, "wb", mode) as fh:
        for part in [data] if isinstance(data, (bytes, bytearray, memoryview)) else data:
            fh.write(part)


def fsync_dir(directory: Path, *, strict: bool = True) -> None:
    """Make a rename in ``directory`` durable; ``strict=False`` ignores an OSError."""
    try:
        dfd = os.open(directory, os.O_RDONLY)
    except OSError:
        if strict:
            raise
        return
    try:
        os.fsync(dfd)
    except OSError:
        if strict:
            raise
    finally:
        os.close(dfd)
