"""``misuan data``: register node-local files as datasets (the inputs of PSI jobs) and share them."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.table import Table

data_app = typer.Typer(no_args_is_help=True, help="Datasets: files on a node, registered by their owner as PSI inputs, and their grants.")

out = Console()
DEFAULT_CLUSTER = Path.home() / ".misuan" / "cluster" / "cluster.toml"
PartyOpt = typer.Option(..., "--party", "-p", help="the node (party id or rank) that holds the file")
ClusterOpt = typer.Option(None, "--cluster", "-c", help="cluster file (default: ~/.misuan/cluster/cluster.toml)")
KeyOpt = typer.Option(None, "--key-file", envvar="MISUAN_KEY", help="your key file (default: the cluster file's key_file)")
JsonOpt = typer.Option(False, "--json", help="machine-readable output")


def _node(cluster: Optional[Path], key_file: Optional[Path], party: str):
    from ..psi.client import party_rank
    from ..sdk import connect

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
    client, node = _node(cluster, key_file, party)
    with client:
        info = node.dataset_register(name, path, replace)
    if as_json:
        _emit(info)
    else:
        out.print(f"{info['ref']} on {party}: {info['size_bytes']:,} bytes, sha256 {info['sha256'][:16]}…")


@data_app.command("list")
def data_list(party: str = PartyOpt, cluster: Optional[Path] = ClusterOpt, key_file: Optional[Path] = KeyOpt, as_json: bool = JsonOpt):
    """Your datasets on a node and those shared with you."""
    client, node = _node(cluster, key_file, party)
    with client:
        rows = node.dataset_list()
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
    client, node = _node(cluster, key_file, party)
    with client:
        _emit(node.dataset_show(name, owner))


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
    client, node = _node(cluster, key_file, party)
    with client:
        node.dataset_grant(name, to, receive)
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
    client, node = _node(cluster, key_file, party)
    with client:
        had = node.dataset_revoke(name, to)
    if as_json:
        _emit({"name": name, "revoked": to, "had_grant": had})
    else:
        out.print(f"{to} may no longer use {name}" if had else f"{to} had no grant on {name}")


@data_app.command("rm")
def data_rm(name: str, party: str = PartyOpt, cluster: Optional[Path] = ClusterOpt, key_file: Optional[Path] = KeyOpt):
    """Forget your dataset NAME on a node (the file itself stays)."""
    client, node = _node(cluster, key_file, party)
    with client:
        node.dataset_remove(name)
    out.print(f"removed dataset {name} on {party}")
