"""Minimal, strict safetensors reader returning float32 numpy arrays.

Written out (rather than ``safetensors.numpy``) so BF16 checkpoints load
without torch and every header field is bounds-checked before use.
Format: 8-byte little-endian header length, JSON header
``{name: {"dtype", "shape", "data_offsets": [begin, end]}, "__metadata__": {...}}``,
then the raw little-endian tensor bytes.
"""

from __future__ import annotations

import json
import mmap
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from misuan.errors import InvalidInput

_DTYPES = {"F32": np.dtype("<f4"), "F16": np.dtype("<f2"), "BF16": np.dtype("<u2"), "F64": np.dtype("<f8")}
_MAX_HEADER = 100 * 1024 * 1024


class SafetensorsFile:
    """A memory-mapped safetensors file; use as a context manager."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        try:
            self._fh = open(self.path, "rb")
            self._map = mmap.mmap(self._fh.fileno(), 0, access=mmap.ACCESS_READ)
        except (OSError, ValueError) as exc:
            raise InvalidInput(f"{self.path.name}: cannot read safetensors file ({type(exc).__name__})") from None
        self.header = self._read_header()

    def _bad(self, why: str) -> InvalidInput:
        return InvalidInput(f"{self.path.name}: corrupt safetensors file ({why})")

    def _read_header(self) -> dict[str, dict]:
        size = len(self._map)
        if size < 8:
            raise self._bad("too short")
        n = int.from_bytes(self._map[:8], "little")
        if n > _MAX_HEADER or 8 + n > size:
            raise self._bad("bad header length")
        try:
            header = json.loads(bytes(self._map[8 : 8 + n]))
        except ValueError:
            raise self._bad("header is not JSON") from None
        if not isinstance(header, dict):
            raise self._bad("header is not an object")
        header.pop("__metadata__", None)
        data_len = size - 8 - n
        for name, info in header.items():
            try:
                begin, end = (int(x) for x in info["data_offsets"])
                shape = [int(s) for s in info["shape"]]
                dtype = str(info["dtype"])
            except (KeyError, TypeError, ValueError):
                raise self._bad(f"bad entry for {name}") from None
            if not 0 <= begin <= end <= data_len or any(s < 0 for s in shape):
                raise self._bad(f"bad offsets for {name}")
            if dtype in _DTYPES and (end - begin) != int(np.prod(shape)) * _DTYPES[dtype].itemsize:
                raise self._bad(f"size mismatch for {name}")
        self._data_start = 8 + n
        return header

    def names(self) -> list[str]:
        """Tensor names in the file."""
        return list(self.header)

    def get(self, name: str) -> np.ndarray:
        """Tensor ``name`` as a float32 array (F32, F16, BF16, F64 accepted)."""
        info = self.header[name]
        dtype = info["dtype"]
        if dtype not in _DTYPES:
            raise InvalidInput(f"{self.path.name}: tensor {name} has unsupported dtype {dtype}")
        begin, end = info["data_offsets"]
        raw = np.frombuffer(
            self._map,
            dtype=_DTYPES[dtype],
            count=(end - begin) // _DTYPES[dtype].itemsize,
            offset=self._data_start + begin,
        )
        if dtype == "BF16":
            values = (raw.astype(np.uint32) << 16).view(np.float32)
        else:
            values = raw.astype(np.float32)
        return values.reshape(info["shape"])

    def close(self) -> None:
        """Release the mapping."""
        self._map.close()
        self._fh.close()

    def __enter__(self) -> SafetensorsFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def iter_tensors(paths: list[Path]) -> Iterator[tuple[str, np.ndarray]]:
    """Every tensor of every file, as float32 ``(name, array)`` pairs."""
    for path in paths:
        with SafetensorsFile(path) as f:
            for name in f.names():
                yield name, f.get(name)
