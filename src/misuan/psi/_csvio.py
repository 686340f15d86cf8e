"""Strict CSV reading shared by the prepare and output stages.

Both stages must see exactly the same rows in the same order (row numbers link
them), so there is one set of rules. UTF-8 (a leading BOM is ignored), RFC 4180
quoting (commas, quotes and newlines inside quoted fields are fine), the first
record is the header, every data row must have as many fields as the header.
Blank lines are skipped, except in a one-column file, where an empty line is a
row with an empty value. Error messages name line numbers, never content.

Two readers implement the rules:

- :func:`open_csv` streams records through the ``csv`` module (any valid file);
- :func:`open_plain` is the fast path for "plain" files, which have no quote
  character, no NUL and no carriage return outside ``\\r\\n`` (see
  :class:`~misuan.psi._snapshot.Snapshot`). For those, every physical line is a
  record and a comma always separates fields, so lines are split in C instead of
  parsed in Python, and rows can be copied to the output byte for byte.
"""

from __future__ import annotations

import csv
import io
import itertools
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from misuan.errors import InvalidInput

_BOM = "\ufeff"
_BLOCK_BYTES = 8 << 20


@dataclass(frozen=True)
class CsvSource:
    """An open CSV: its header, a row iterator and a byte-position probe."""

    header: tuple[str, ...]
    rows: Iterator[list[str]]
    position: Callable[[], int]


@dataclass(frozen=True)
class PlainSource:
    """An open plain CSV: its header and batches of raw data lines (no newline)."""

    header: tuple[str, ...]
    batches: Iterator[list[str]]
    position: Callable[[], int]


def _check_header(header: list[str] | None) -> tuple[str, ...]:
    if header is None or not any(cell.strip() for cell in header):
        raise InvalidInput("input file is empty (no header)")
    return tuple(header)


def _data_rows(reader: Any, width: int) -> Iterator[list[str]]:
    while True:
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error:
            raise InvalidInput(f"input is not valid CSV near line {reader.line_num}") from None
        except UnicodeDecodeError:
            raise InvalidInput("input is not valid UTF-8") from None
        if len(row) != width:
            if not row:
                if width == 1:
                    yield [""]
                continue
            raise InvalidInput(f"line {reader.line_num} has {len(row)} fields but the header has {width}")
        yield row


@contextmanager
def open_csv(path: Path) -> Iterator[CsvSource]:
    """Open ``path`` for strict, streaming reading with the ``csv`` module."""
    with open(path, "rb") as raw:
        text = io.TextIOWrapper(raw, encoding="utf-8-sig", newline="")
        reader = csv.reader(text, strict=True)
        try:
            header = _check_header(next(reader, None))
        except csv.Error:
            raise InvalidInput("input header is not valid CSV") from None
        except UnicodeDecodeError:
            raise InvalidInput("input is not valid UTF-8") from None
        yield CsvSource(header, _data_rows(reader, len(header)), raw.tell)


def _decode(data: bytes) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidInput("input is not valid UTF-8") from None


def _line_blocks(raw: io.BufferedReader) -> Iterator[list[str]]:
    """Lists of physical lines (without line ends), one list per block of whole lines."""
    carry = b""
    while True:
        block = raw.read(_BLOCK_BYTES)
        if not block:
            break
        block = carry + block
        cut = block.rfind(b"\n") + 1
        carry = block[cut:]
        if cut:
            text = _decode(block[:cut])
            if "\r" in text:
                text = text.replace("\r\n", "\n")  # plain files have no other CR
            lines = text.split("\n")
            lines.pop()  # the empty string after the block's final newline
            yield lines
    if carry:
        yield [_decode(carry).removesuffix("\r")]


def _plain_batches(blocks: Iterator[list[str]], first: list[str], width: int) -> Iterator[list[str]]:
    """Validated data lines, block by block (``first``: the data lines of block one)."""
    commas = width - 1
    line_no = 2  # line 1 is the header
    for lines in itertools.chain((first,), blocks):
        counts = [line.count(",") for line in lines]
        if counts.count(commas) != len(counts):
            kept = []
            for offset, (line, count) in enumerate(zip(lines, counts)):
                if count == commas:
                    kept.append(line)
                elif line:
                    raise InvalidInput(f"line {line_no + offset} has {count + 1} fields but the header has {width}")
            lines = kept
        line_no += len(counts)
        if lines:
            yield lines


@contextmanager
def open_plain(path: Path) -> Iterator[PlainSource]:
    """Open a plain CSV (see module docstring) and read it in blocks of whole lines."""
    with open(path, "rb") as raw:
        blocks = _line_blocks(raw)
        first = next(blocks, [""])
        header_line = first[0].removeprefix(_BOM)
        header = _check_header(header_line.split(",") if header_line.strip() else None)
        yield PlainSource(header, _plain_batches(blocks, first[1:], len(header)), raw.tell)


def writer_for(stream: io.TextIOBase) -> Any:
    """The CSV writer used for every output file (minimal quoting, ``\\n`` lines)."""
    return csv.writer(stream, lineterminator="\n")
