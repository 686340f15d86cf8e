"""What the node core checks about a request's inputs before a run.

A client uploads only a program's ``client`` inputs, each checked here against the
program's declared dtype, shape and visibility; everything else a run reads is
*carried* (written by an earlier run of the same request) or made by the nodes
from public values (the capability's ``ProgramDef.node_values``).
"""

from __future__ import annotations

from ..errors import InvalidInput
from .capability import NodeProgram, RequestState

__all__ = ["RequestState", "check_sources", "upload_meta"]


def upload_meta(frame: bytes) -> tuple[int, tuple[int, ...], int, str]:
    """(dtype code, shape, visibility, storage) of an uploaded share frame (misuan's
    ``MSH1``/``MSC1`` framing: magic, u32 meta length, ValueMetaProto, data)."""
    from ..mpc import _aby3, _pb

    if len(frame) < 8 or frame[:4] not in (b"MSH1", _aby3.COMPRESSED):
        raise InvalidInput("upload is not a misuan share frame")
    mlen = int.from_bytes(frame[4:8], "little")
    if mlen > 4000 or len(frame) < 8 + mlen:
        raise InvalidInput("share frame header too large or truncated")
    meta = bytes(frame[8 : 8 + mlen])
    try:
        shape, visibility, storage = _pb.value_meta(meta)
        return _pb.value_dtype(meta), shape, visibility, storage
    except InvalidInput:
        raise InvalidInput("share frame carries no valid meta") from None


def check_sources(prog: NodeProgram, state: RequestState, storage: str, first: str = "its first program") -> None:
    """Every client input was uploaded by the requester as a secret share of the
    declared dtype and shape (anything else would fail the run inside SPU, which fails
    the runtime for every user); every carried one was written by an earlier run of
    this request (not overwritten by an upload since)."""
    from ..mpc._pb import DTYPE_CODES

    for name in prog.client_inputs:
        if state.origin.get(name) != "client":
            raise InvalidInput(f"request input {name!r} is missing")
    for name, shape, dtype in prog.client_specs:
        got = state.uploads.get(name)
        want = (DTYPE_CODES.get(dtype, -1), tuple(shape), 1, storage)  # 1: VIS_SECRET
        if got != want:
            raise InvalidInput(f"request input {name!r} must be a secret {dtype} share of shape {tuple(shape)}")
    for name in prog.carried_inputs:
        if state.origin.get(name) != "node":
            raise InvalidInput(f"request input {name!r} must come from an earlier step of this request (run {first} first)")
    for name, shape, dtype in prog.carried_specs:
        got = state.imported.get(name)
        if got is not None and got != (DTYPE_CODES.get(dtype, -1), tuple(shape)):
            raise InvalidInput(f"imported input {name!r} must be a {dtype} share of shape {tuple(shape)}")
