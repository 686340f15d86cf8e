"""``misuan node serve``: run one party's node in the foreground."""

from __future__ import annotations

import sys
from pathlib import Path

import typer

from ..errors import MisuanError


def node_serve(config: Path = typer.Option(..., "--config", "-c", help="node.toml")):
    """Run one node in the foreground."""
    from .. import registry
    from ..node.server import serve

    try:
        serve(config, lambda cfg: registry.node_capabilities(cfg.bench))
    except MisuanError as exc:
        sys.stderr.write(f"misuan node refuses to start: {exc}\n")
        raise typer.Exit(2)


def register(node_app: typer.Typer) -> None:
    node_app.command("serve")(node_serve)
