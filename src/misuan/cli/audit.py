"""``misuan audit verify``: recompute and cross-check the nodes' hash-chained audit logs."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from .common import DirOpt, JsonOpt, _emit_json, out


def audit_verify(
    dir: Path = DirOpt,
    receipts: Optional[Path] = typer.Option(
        None, "--receipts", help="a client's receipts dir (default: the one cluster.toml names, if present)"
    ),
    as_json: bool = JsonOpt,
):
    """Recompute every node's audit chain and check it against its peers' records and the client's receipts."""
    from ..node.audit_verify import default_receipts, verify_cluster

    d = dir.expanduser().resolve()
    reports = verify_cluster(d, receipts.expanduser().resolve() if receipts else default_receipts(d))
    if as_json:
        _emit_json([r.public() for r in reports])
    else:
        t = Table(title="audit chains")
        for c in ("node", "rows", "peer heads", "receipts", "result", "first broken row", "reason"):
            t.add_column(c)
        for r in reports:
            result = "[green]ok[/green]" if r.ok else "[red]BROKEN[/red]"
            t.add_row(r.party, str(r.rows), str(r.peer_heads), str(r.receipts), result, str(r.first_broken or "-"), r.reason)
        out.print(t)
    if not all(r.ok for r in reports):
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    audit_app = typer.Typer(no_args_is_help=True, help="Verify the nodes' hash-chained audit logs.")
    audit_app.command("verify")(audit_verify)
    app.add_typer(audit_app, name="audit")
