"""``misuan`` command line: the root app, the core command groups, then every capability's
commands from :data:`misuan.registry.CLI`. Every command that prints a result takes --json."""

from __future__ import annotations

import sys

import typer

from .. import registry
from ..errors import MisuanError
from ..proxy import cli as proxy_cli
from . import audit, cluster, identity, node, selftest

app = typer.Typer(add_completion=False, no_args_is_help=True, help="misuan (密算): confidential computing for large models on SPU.")
node_app = typer.Typer(no_args_is_help=True, help="Run a compute node (one party).")
cluster_app = typer.Typer(no_args_is_help=True, help="Create, start, inspect and stop clusters.")
app.add_typer(node_app, name="node")
app.add_typer(cluster_app, name="cluster")
audit.register(app)
identity.register(app, node_app, cluster_app)  # before node/cluster: `node init`, `cluster trust` list first
node.register(node_app)
cluster.register(cluster_app)
selftest.register(app)
proxy_cli.register(app)


def main() -> None:
    try:
        app(standalone_mode=True)
    except MisuanError as exc:
        sys.stderr.write(f"error: {exc}\n")
        sys.exit(1)


for register in registry.CLI:
    register(app)

if __name__ == "__main__":
    main()
