"""``misuan`` command line: the root app, the core command groups, then every capability's
commands from :data:`misuan.registry.CLI`. Every command that prints a result takes --json."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

import typer

from .. import registry
from ..errors import MisuanError
from . import audit, cluster, identity, node, selftest
from .common import ClusterOpt, JsonOpt, KeyOpt, _client, _emit_json, _fmt_bytes, err, out
from .data import data_app

app = typer.Typer(add_completion=False, no_args_is_help=True, help="misuan (密算): confidential computing for large models on SPU.")
node_app = typer.Typer(no_args_is_help=True, help="Run a compute node (one party).")
cluster_app = typer.Typer(no_args_is_help=True, help="Create, start, inspect and stop clusters.")
psi_app = typer.Typer(no_args_is_help=True, help="Private set intersection (隐私求交) between two parties' nodes.")
app.add_typer(node_app, name="node")
app.add_typer(cluster_app, name="cluster")
audit.register(app)
app.add_typer(psi_app, name="psi")
app.add_typer(data_app, name="data")
identity.register(app, node_app, cluster_app)  # before node/cluster: `node init`, `cluster trust` list first
node.register(node_app)
cluster.register(cluster_app)
selftest.register(app)

# ------------------------------------------------------------------ PSI


@psi_app.command("run")
def psi_run(
    party: list[str] = typer.Option(
        ...,
        "--party",
        help="PARTY=INPUT (give two): a dataset on that party's node (NAME, or OWNER/NAME shared with you), "
        "or a path starting with / ~ or . inside data/<you>/ on that node (registered as your dataset first)",
    ),
    key: list[str] = typer.Option(..., "--key", help="key column (repeat for a compound key)"),
    protocol: str = typer.Option("rr22", "--protocol", help="rr22 | kkrt | ecdh"),
    receiver: str = typer.Option("both", "--receiver", help="who gets the result: a party name or 'both'"),
    join: str = typer.Option("inner", "--join", help="inner | left | difference"),
    out_path: Path = typer.Option(..., "--out", help="output CSV (with --receiver both: OUT.<party>.csv per party)"),
    duplicates: str = typer.Option("refuse", "--duplicates", help="refuse | first | all"),
    casefold: bool = typer.Option(False, "--casefold", help="compare keys case-insensitively"),
    cluster: Optional[Path] = ClusterOpt,
    key_file: Optional[Path] = KeyOpt,
    as_json: bool = JsonOpt,
):
    """Intersect two parties' tables; each file stays on its own node."""
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    parties = {}
    for item in party:
        name, sep, path = item.partition("=")
        if not sep or not name or not path:
            raise MisuanError(f"--party takes PARTY=DATASET or PARTY=PATH, got {item!r}")
        parties[name] = path
    with _client(cluster, key_file) as client:
        kw = dict(protocol=protocol, receiver=receiver, join=join, out=out_path, duplicates=duplicates, casefold=casefold)
        if as_json:
            res = client.psi(parties, key, **kw)
        else:
            with Progress(TextColumn("{task.description}"), BarColumn(), TimeElapsedColumn(), console=err, transient=True) as bar:
                task = bar.add_task("PSI", total=1.0)
                res = client.psi(
                    parties, key, progress=lambda f, stage: bar.update(task, completed=f, description=f"PSI ({protocol}): {stage}"), **kw
                )
    if as_json:
        _emit_json(res.to_dict())
        return
    a, b = res.parties
    out_desc = ", ".join(f"{k}: {v}" for k, v in res.outputs.items())
    inter = "hidden from the non-receiver" if res.intersection is None else f"{res.intersection:,}"
    out.print(
        f"PSI {res.protocol} ({res.join}): {a} {res.input_rows[0]:,} rows, {b} {res.input_rows[1]:,} rows, "
        f"intersection {inter}; {res.seconds:.1f} s, {_fmt_bytes(res.bytes_sent)} sent → {out_desc}"
    )


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
