"""A minimal protobuf reader for the two SPU messages the node daemon inspects.

The daemon validates share headers and program names without loading
``libspu`` (≈ 220 MB of resident memory); workers, which run SPU, do load it.
Only the wire format is used: varints and length-delimited fields.

The reader is strict where a lenient one would read a message differently from
libspu's C++ parser (a parser differential lets a program smuggle names past
the node's checks): a field key is a varint of at most 5 bytes below 2^32 with
a field number in 1..2^29-1 (protobuf's ``ReadTag`` truncates longer keys to 32
bits), a length fits in a signed 32-bit int, and every varint is canonical
(no redundant trailing zero bytes). Anything else is :class:`InvalidInput`. The
session worker also re-checks the names with libspu's own parse before a run.
"""

from __future__ import annotations

from ..errors import InvalidInput

_MAX_FIELD = (1 << 29) - 1
_MAX_LEN = (1 << 31) - 1


def _varint(buf: bytes, pos: int, max_bytes: int = 10, limit: int = 1 << 64) -> tuple[int, int]:
    value = shift = 0
    start = pos
    while True:
        if pos >= len(buf) or pos - start >= max_bytes:
            raise InvalidInput("malformed protobuf")
        b = buf[pos]
        pos += 1
        value |= (b & 0x7F) << shift
        if b < 0x80:
            if (b == 0 and pos - start > 1) or value >= limit:  # non-canonical or out of range
                raise InvalidInput("malformed protobuf")
            return value, pos
        shift += 7


def fields(buf: bytes) -> list[tuple[int, int | bytes]]:
    """(field number, value) pairs: ints for varints, bytes for length-delimited fields."""
    out: list[tuple[int, int | bytes]] = []
    pos = 0
    while pos < len(buf):
        key, pos = _varint(buf, pos, max_bytes=5, limit=1 << 32)
        num, wire = key >> 3, key & 7
        if not 1 <= num <= _MAX_FIELD:
            raise InvalidInput("malformed protobuf")
        if wire == 0:
            value, pos = _varint(buf, pos)
            out.append((num, value))
        elif wire == 2:
            n, pos = _varint(buf, pos, limit=_MAX_LEN + 1)
            if pos + n > len(buf):
                raise InvalidInput("malformed protobuf")
            out.append((num, bytes(buf[pos : pos + n])))
            pos += n
        elif wire in (1, 5):
            pos += 8 if wire == 1 else 4
            if pos > len(buf):
                raise InvalidInput("malformed protobuf")
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


#: SPU's DataType codes of the dtypes misuan programs take
DTYPE_CODES = {"float32": 11, "int32": 6, "int64": 8, "float64": 12, "bool": 1}


def value_dtype(meta: bytes) -> int:
    """The ``data_type`` code of a ValueMetaProto (0 when absent)."""
    for num, value in fields(meta):
        if num == 1 and isinstance(value, int):
            return value
    return 0


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
