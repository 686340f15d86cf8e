"""``misuan key``, ``misuan principal``, ``misuan node init``, ``misuan cluster trust``:
identities and keys, each made on the machine of whoever it belongs to."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.table import Table

out = Console()
KEY_DIR = Path.home() / ".misuan" / "keys"
JsonOpt = typer.Option(False, "--json", help="machine-readable output")
ClusterOpt = typer.Option(None, "--cluster", "-c", help="cluster file (default: ~/.misuan/cluster/cluster.toml)")
KeyOpt = typer.Option(None, "--key-file", envvar="MISUAN_KEY", help="your key file (default: the cluster file's key_file)")

key_app = typer.Typer(no_args_is_help=True, help="Make and show principal key pairs (on the principal's own machine).")
principal_app = typer.Typer(no_args_is_help=True, help="Register and revoke principals' public keys on every node.")


def _emit(obj) -> None:
    sys.stdout.write(json.dumps(obj, indent=2, default=str) + "\n")


def _client(cluster: Optional[Path], key: Optional[Path]):
    from ..sdk import connect

    return connect(cluster or Path.home() / ".misuan" / "cluster" / "cluster.toml", key)


@key_app.command("new")
def key_new(
    name: str,
    out_file: Optional[Path] = typer.Option(None, "--out", "-o", help="key file (default ~/.misuan/keys/NAME.key)"),
    as_json: bool = JsonOpt,
):
    """Make principal NAME's Ed25519 key pair here; print the public key to register."""
    from ..identity import new_identity

    ident = new_identity(name)
    path = ident.save(out_file or KEY_DIR / f"{name}.key")
    if as_json:
        _emit({"principal": name, "public_key": ident.public_key, "key_file": str(path)})
    else:
        out.print(f"key file {path} (keep it; mode 0600)\npublic key of {name}: {ident.public_key}", markup=False, highlight=False)


@key_app.command("show")
def key_show(key_file: Path, as_json: bool = JsonOpt):
    """Print the principal and public key of a key file."""
    from ..identity import load_identity

    ident = load_identity(key_file)
    if as_json:
        _emit({"principal": ident.principal, "public_key": ident.public_key})
    else:
        out.print(f"{ident.principal} {ident.public_key}", markup=False, highlight=False)


@principal_app.command("add")
def principal_add(
    name: str,
    public_key: Optional[str] = typer.Option(
        None, "--public-key", help="ed25519:... as printed by `misuan key new` on the principal's machine"
    ),
    make_key: Optional[Path] = typer.Option(None, "--make-key", help="local clusters only: make NAME's key pair here, into this file"),
    cluster: Optional[Path] = ClusterOpt,
    key_file: Optional[Path] = KeyOpt,
    as_json: bool = JsonOpt,
):
    """Register principal NAME's public key on every node (the admin only)."""
    from ..errors import InvalidInput
    from ..identity import new_identity

    if (public_key is None) == (make_key is None):
        raise InvalidInput("give exactly one of --public-key and --make-key")
    if make_key is not None:
        ident = new_identity(name)
        ident.save(make_key)
        public_key = ident.public_key
    with _client(cluster, key_file) as client:
        res = client.fanout(lambda i: client.nodes[i].register_principal(name, public_key))
    info = {"principal": name, "public_key": public_key, "nodes": len(res), **({"key_file": str(make_key)} if make_key else {})}
    if as_json:
        _emit(info)
    else:
        out.print(f"registered {name} ({public_key}) on {len(res)} nodes", markup=False, highlight=False)


@principal_app.command("revoke")
def principal_revoke(name: str, cluster: Optional[Path] = ClusterOpt, key_file: Optional[Path] = KeyOpt, as_json: bool = JsonOpt):
    """Revoke NAME's key on every node (the admin, or NAME itself). The name stays taken."""
    with _client(cluster, key_file) as client:
        client.fanout(lambda i: client.nodes[i].revoke_principal(name))
    if as_json:
        _emit({"principal": name, "revoked": True})
    else:
        out.print(f"revoked {name} on every node")


@principal_app.command("list")
def principal_list(cluster: Optional[Path] = ClusterOpt, key_file: Optional[Path] = KeyOpt, as_json: bool = JsonOpt):
    """Registered principals (all for the admin, yourself otherwise), as node 0 has them."""
    with _client(cluster, key_file) as client:
        rows = client.nodes[0].principals()
    if as_json:
        _emit(rows)
        return
    t = Table(title="principals")
    for c in ("principal", "public key", "revoked"):
        t.add_column(c)
    for r in rows:
        t.add_row(r["principal"], r["public_key"], "yes" if r["revoked"] else "")
    out.print(t)


def node_init(
    dir: Path = typer.Option(..., "--dir", "-d", help="this node's directory (created)"),
    cluster: Path = typer.Option(..., "--cluster", "-c", help="the cluster file"),
    rank: int = typer.Option(..., "--rank"),
    admin_key: str = typer.Option(..., "--admin-key", help="the cluster admin's public key (ed25519:...)"),
    force: bool = typer.Option(False, "--force"),
    as_json: bool = JsonOpt,
):
    """Make this node's storage key, TLS key pair and certificate here, on its own host."""
    from ..cluster.init import init_node

    node_toml = init_node(dir, cluster, rank, admin_key, force=force, check_files=False)
    cert = node_toml.parent / "tls" / "node.pem"
    info = {"node_toml": str(node_toml), "certificate": str(cert) if cert.exists() else None}
    if as_json:
        _emit(info)
    else:
        out.print(
            f"node {rank} initialised: {node_toml}"
            + (f"\nshare this certificate with the other operators: {cert}" if cert.exists() else "")
        )


def cluster_trust(
    certs: list[Path] = typer.Argument(..., help="every node's certificate, in rank order"),
    dir: Path = typer.Option(Path.home() / ".misuan" / "cluster", "--dir", "-d", help="cluster directory"),
    as_json: bool = JsonOpt,
):
    """Write the cluster's trust bundle (pki/nodes.pem) from the nodes' certificates."""
    from ..cluster.init import trust

    path = trust(dir, certs)
    if as_json:
        _emit({"trust_bundle": str(path)})
    else:
        out.print(f"trust bundle {path}: give it (with cluster.toml) to every node and client")


def register(app: typer.Typer, node_app: typer.Typer, cluster_app: typer.Typer) -> None:
    app.add_typer(key_app, name="key")
    app.add_typer(principal_app, name="principal")
    node_app.command("init")(node_init)
    cluster_app.command("trust")(cluster_trust)
