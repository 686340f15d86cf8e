"""What every ``misuan`` command shares: the default cluster directory, the common options,
the two consoles, JSON output and byte formatting, and the client a command connects with."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console

out = Console()
err = Console(stderr=True)
DEFAULT_DIR = Path.home() / ".misuan" / "cluster"

DirOpt = typer.Option(DEFAULT_DIR, "--dir", "-d", help="cluster directory")
JsonOpt = typer.Option(False, "--json", help="machine-readable output")
ClusterOpt = typer.Option(None, "--cluster", "-c", help="cluster file (default: <default dir>/cluster.toml)")
KeyOpt = typer.Option(None, "--key-file", envvar="MISUAN_KEY", help="your key file (default: the cluster file's key_file)")


def _emit_json(obj) -> None:
    sys.stdout.write(json.dumps(obj, indent=2, default=str) + "\n")


def _fmt_bytes(n: int | None) -> str:
    if n is None:
        return "-"
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


def _client(cluster: Optional[Path], key: Optional[Path]):
    from ..sdk import connect

    return connect(cluster or DEFAULT_DIR / "cluster.toml", key)
