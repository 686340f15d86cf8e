"""A minimal protobuf reader for the two SPU messages the node daemon inspects.

The daemon validates share headers and program names without loading
``libspu`` (≈ 220 MB of resident memory); workers, which run SPU, do load it.
Only the wire format is used: varints and length-delimited fields.
"""

from __future__ import annotations

from ..errors import InvalidInput


def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if pos >= len(buf) or shift > 63:
            raise InvalidInput("malformed protobuf")
        b = buf[pos]
        pos += 1
        value |= (b & 0x7F) << shift
        if b < 0x80:
            return value, pos
        shift += 7


def fields(buf: bytes) -> list[tuple[int, int | bytes]]:
    """(field number, value) pairs: ints for varints, bytes for length-delimited fields."""
    out: list[tuple[int, int | bytes]] = []
    pos = 0
    while pos < len(buf):
        key, pos = _varint(buf, pos)
        num, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _varint(buf, pos)
            out.append((num, value))
        elif wire == 2:
            n, pos = _varint(buf, pos)
            if pos + n > len(buf):
                raise InvalidInput("malformed protobuf")
            out.append((num, bytes(buf[pos : pos + n])))
            pos += n
        elif wire == 1:
            pos += 8
        elif wire == 5:
            pos += 4
        else:
            raise InvalidInput("malformed protobuf")
    return out


def value_meta(meta: bytes) -> tuple[tuple[int, ...], int, str]:
    """(shape, visibility, storage_type) of a ValueMetaProto."""
    shape: tuple[int, ...] = ()
    visibility, storage = 0, ""
    for num, value in fields(meta):
        if num == 3 and isinstance(value, int):
            visibility = value
        elif num == 4 and isinstance(value, bytes):
            dims: list[int] = []
            for n2, v2 in fields(value):
                if n2 == 1 and isinstance(v2, bytes):  # packed
                    pos = 0
                    while pos < len(v2):
                        d, pos = _varint(v2, pos)
                        dims.append(d)
                elif n2 == 1 and isinstance(v2, int):
                    dims.append(v2)
            shape = tuple(dims)
        elif num == 5 and isinstance(value, bytes):
            storage = value.decode(errors="replace")
    return shape, visibility, storage


def executable_names(data: bytes) -> tuple[tuple[str, ...], tuple[str, ...], bool]:
    """(input names, output names, has code) of an ExecutableProto
    (fields: 1 name, 2 input_names, 4 output_names, 6 code — spu 0.9.5)."""
    ins, outs, code = [], [], False
    for num, value in fields(data):
        if num == 2 and isinstance(value, bytes):
            ins.append(value.decode(errors="replace"))
        elif num == 4 and isinstance(value, bytes):
            outs.append(value.decode(errors="replace"))
        elif num == 6 and isinstance(value, bytes) and value:
            code = True
    return tuple(ins), tuple(outs), code
