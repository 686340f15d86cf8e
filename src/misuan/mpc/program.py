"""Parsing SPU executables received from the network (protobuf, never pickle)."""

from __future__ import annotations

from spu import libspu

from ..errors import InvalidInput


def parse_executable(data: bytes) -> libspu.Executable:
    """Parse untrusted executable bytes."""
    exe = libspu.Executable()
    try:
        exe.ParseFromString(data)
    except Exception:
        raise InvalidInput("program is not a valid SPU executable") from None
    if not exe.code:
        raise InvalidInput("program is empty")
    return exe
