"""PSI's commands: ``misuan psi run`` (a job between two nodes) and ``misuan data``
(register node-local files as datasets, the inputs of PSI jobs, and share them)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from ..cli.common import DEFAULT_DIR, ClusterOpt, JsonOpt, KeyOpt, _fmt_bytes, err, out

psi_app = typer.Typer(no_args_is_help=True, help="Private set intersection (隐私求交) between two parties' nodes.")
data_app = typer.Typer(no_args_is_help=True, help="Datasets: files on a node, registered by their owner as PSI inputs, and their grants.")

DEFAULT_CLUSTER = DEFAULT_DIR / "cluster.toml"
PartyOpt = typer.Option(..., "--party", "-p", help="the node (party id or rank) that holds the file")


def register(app: typer.Typer) -> None:
    """Add ``psi`` and ``data`` to the root CLI."""
    app.add_typer(psi_app, name="psi")
    app.add_typer(data_app, name="data")


# ------------------------------------------------------------------ psi


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

    from ..errors import MisuanError
    from ..sdk import connect
    from .client import run_psi

    parties = {}
    for item in party:
        name, sep, path = item.partition("=")
        if not sep or not name or not path:
            raise MisuanError(f"--party takes PARTY=DATASET or PARTY=PATH, got {item!r}")
        parties[name] = path
    with connect(cluster or DEFAULT_CLUSTER, key_file) as client:
        kw = dict(protocol=protocol, receiver=receiver, join=join, out=out_path, duplicates=duplicates, casefold=casefold)
        if as_json:
            res = run_psi(client, parties, key, **kw)
        else:
            with Progress(TextColumn("{task.description}"), BarColumn(), TimeElapsedColumn(), console=err, transient=True) as bar:
                task = bar.add_task("PSI", total=1.0)
                res = run_psi(
                    client,
                    parties,
                    key,
                    progress=lambda f, stage: bar.update(task, completed=f, description=f"PSI ({protocol}): {stage}"),
                    **kw,
                )
    if as_json:
        sys.stdout.write(json.dumps(res.to_dict(), indent=2, default=str) + "\n")
        return
    a, b = res.parties
    out_desc = ", ".join(f"{k}: {v}" for k, v in res.outputs.items())
    inter = "hidden from the non-receiver" if res.intersection is None else f"{res.intersection:,}"
    out.print(
        f"PSI {res.protocol} ({res.join}): {a} {res.input_rows[0]:,} rows, {b} {res.input_rows[1]:,} rows, "
        f"intersection {inter}; {res.seconds:.1f} s, {_fmt_bytes(res.bytes_sent)} sent → {out_desc}"
    )


# ------------------------------------------------------------------ data


def _node(cluster: Optional[Path], key_file: Optional[Path], party: str):
    from ..sdk import connect
    from .client import party_rank

    client = connect(cluster or DEFAULT_CLUSTER, key_file)
    try:
        return client, client.nodes[party_rank(client, party)]
    except BaseException:
        client.close()
        raise


def _emit(obj) -> None:
    sys.stdout.write(json.dumps(obj, indent=2) + "\n")


@data_app.command("register")
def data_register(
    name: str,
    path: str = typer.Argument(..., help="a file on that node inside data/<you>/ (absolute, or relative to data/<you>/)"),
    party: str = PartyOpt,
    replace: bool = typer.Option(False, "--replace", help="re-register NAME (new path or new content; grants are kept)"),
    cluster: Optional[Path] = ClusterOpt,
    key_file: Optional[Path] = KeyOpt,
    as_json: bool = JsonOpt,
):
    """Register a file on a node as your dataset NAME (the node pins its SHA-256)."""
    from .client import dataset_register

    client, node = _node(cluster, key_file, party)
    with client:
        info = dataset_register(node, name, path, replace)
    if as_json:
        _emit(info)
    else:
        out.print(f"{info['ref']} on {party}: {info['size_bytes']:,} bytes, sha256 {info['sha256'][:16]}…")


@data_app.command("list")
def data_list(party: str = PartyOpt, cluster: Optional[Path] = ClusterOpt, key_file: Optional[Path] = KeyOpt, as_json: bool = JsonOpt):
    """Your datasets on a node and those shared with you."""
    from .client import dataset_list

    client, node = _node(cluster, key_file, party)
    with client:
        rows = dataset_list(node)
    if as_json:
        _emit(rows)
        return
    t = Table(title=f"datasets on {party}")
    for col in ("dataset", "access", "bytes", "sha256"):
        t.add_column(col)
    for r in rows:
        t.add_row(r["ref"], r["access"], f"{r['size_bytes']:,}", r["sha256"][:16] + "…")
    out.print(t)


@data_app.command("show")
def data_show(
    name: str,
    party: str = PartyOpt,
    owner: Optional[str] = typer.Option(None, "--owner", help="another principal's dataset shared with you"),
    cluster: Optional[Path] = ClusterOpt,
    key_file: Optional[Path] = KeyOpt,
):
    """One dataset (the owner also sees its path and grants)."""
    from .client import dataset_show

    client, node = _node(cluster, key_file, party)
    with client:
        _emit(dataset_show(node, name, owner))


@data_app.command("grant")
def data_grant(
    name: str,
    party: str = PartyOpt,
    to: str = typer.Option(..., "--to"),
    receive: bool = typer.Option(
        False, "--receive", help="also let PRINCIPAL receive this dataset's rows (a left join then returns all of them)"
    ),
    cluster: Optional[Path] = ClusterOpt,
    key_file: Optional[Path] = KeyOpt,
    as_json: bool = JsonOpt,
):
    """Let PRINCIPAL use your dataset NAME as a PSI input (owner only)."""
    from .client import dataset_grant

    client, node = _node(cluster, key_file, party)
    with client:
        dataset_grant(node, name, to, receive)
    what = "use and receive the rows of" if receive else "use (never receive the rows of)"
    if as_json:
        _emit({"name": name, "granted": to, "receive": receive})
    else:
        out.print(f"{to} may now {what} {name} on {party}")


@data_app.command("revoke")
def data_revoke(
    name: str,
    party: str = PartyOpt,
    to: str = typer.Option(..., "--from", "--to"),
    cluster: Optional[Path] = ClusterOpt,
    key_file: Optional[Path] = KeyOpt,
    as_json: bool = JsonOpt,
):
    """Withdraw PRINCIPAL's grant on your dataset NAME."""
    from .client import dataset_revoke

    client, node = _node(cluster, key_file, party)
    with client:
        had = dataset_revoke(node, name, to)
    if as_json:
        _emit({"name": name, "revoked": to, "had_grant": had})
    else:
        out.print(f"{to} may no longer use {name}" if had else f"{to} had no grant on {name}")


@data_app.command("rm")
def data_rm(name: str, party: str = PartyOpt, cluster: Optional[Path] = ClusterOpt, key_file: Optional[Path] = KeyOpt):
    """Forget your dataset NAME on a node (the file itself stays)."""
    from .client import dataset_remove

    client, node = _node(cluster, key_file, party)
    with client:
        dataset_remove(node, name)
    out.print(f"removed dataset {name} on {party}")
