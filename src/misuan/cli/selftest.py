"""``misuan selftest``: a secret matrix product and softmax on real node processes."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from .common import JsonOpt, _emit_json, _fmt_bytes, err, out


def selftest_cmd(
    dir: Optional[Path] = typer.Option(None, "--dir", "-d", help="use/bring up the cluster in this directory (default: a temporary one)"),
    parties: int = typer.Option(3, "--parties", "-n"),
    as_json: bool = JsonOpt,
):
    """Secret matrix product + softmax on real node processes, checked against plaintext."""
    from ..selftest import selftest

    if as_json:
        res = selftest(dir, parties=parties)
        _emit_json(res)
    else:
        with err.status(f"bringing up {parties} nodes and computing softmax(x @ w) under MPC…"):
            res = selftest(dir, parties=parties)
        t = Table(title="misuan selftest")
        t.add_column("check")
        t.add_column("value")
        t.add_row("program", res["program"])
        t.add_row("parties / protocol", f"{res['parties']} / {res['protocol']} (node pids {', '.join(map(str, res['node_pids']))})")
        t.add_row("max |secure - plaintext|", f"{res['max_abs_error']:.2e} (tolerance {res['tolerance']:.0e})")
        t.add_row("time (total / link / compute)", f"{res['seconds']:.2f} s / {res['link_seconds']:.2f} s / {res['compute_seconds']:.2f} s")
        t.add_row("bytes exchanged (sent, all nodes)", f"{_fmt_bytes(res['send_bytes'])} in {res['rounds']} rounds")
        t.add_row("result", "[green]PASS[/green]" if res["ok"] else "[red]FAIL[/red]")
        out.print(t)
    if not res["ok"]:
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    app.command("selftest")(selftest_cmd)
