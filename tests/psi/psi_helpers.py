"""Helpers for the PSI tests: CSV writing and an independent plaintext reference."""

from __future__ import annotations

import csv
import unicodedata
from collections.abc import Iterable, Sequence
from pathlib import Path


def write_csv(path: Path, header: Sequence[str], rows: Iterable[Sequence[str]]) -> Path:
    """Write a CSV with the csv module (quotes where needed)."""
    with open(path, "w", encoding="utf-8", newline="") as fh:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow(header)
        writer.writerows(rows)
    return path


def read_csv(path: Path) -> tuple[list[str], list[list[str]]]:
    with open(path, encoding="utf-8", newline="") as fh:
        rows = list(csv.reader(fh))
    return rows[0], rows[1:]


def reference_key(cells: Sequence[str], casefold: bool = False) -> tuple[str, ...] | None:
    """The documented key policy, written independently of the engine."""
    out = []
    for cell in cells:
        value = unicodedata.normalize("NFC", cell).strip()
        if casefold:
            value = unicodedata.normalize("NFC", value.casefold())
        if not value:
            return None
        out.append(value)
    return tuple(out)
