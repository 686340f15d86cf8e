"""``misuan model``: encrypted model hosting (密态托管) from the command line.

Only typer, rich and the CLI's common options are imported here; the client and the
hosting edge functions load when a command runs, so ``misuan --help`` stays fast."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from ..cli.common import ClusterOpt, JsonOpt, KeyOpt, _client, _emit_json, _fmt_bytes, err, out


def model_publish(
    path: Path = typer.Argument(..., help="GGUF file or Hugging Face model directory"),
    name: str = typer.Option(..., "--name", "-n"),
    cluster: Optional[Path] = ClusterOpt,
    key_file: Optional[Path] = KeyOpt,
    receipt: Optional[Path] = typer.Option(None, "--receipt", help="where to keep the commitment receipt (default ~/.misuan/receipts/)"),
    as_json: bool = JsonOpt,
):
    """Secret-share a model on this machine and stream share i to node i only."""
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn, TransferSpeedColumn

    from . import publish_model

    with _client(cluster, key_file) as client:
        if as_json:
            res = publish_model(client, path, name, receipt=receipt or True)
            _emit_json(res.to_dict())
            return
        with Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            DownloadColumn(),
            TransferSpeedColumn(),
            TimeRemainingColumn(),
            console=err,
            transient=True,
        ) as bar:
            task = bar.add_task(f"loading {path.name}", total=None)

            def progress(done: int, total: int, tensor: str) -> None:
                bar.update(task, completed=done, total=total, description=f"publishing {name}: {tensor}")

            res = publish_model(client, path, name, progress=progress, receipt=receipt or True)
    out.print(
        f"published [bold]{res.name}@{res.version}[/bold]: {res.tensors} tensors, {res.parameters:,} parameters, "
        f"{_fmt_bytes(res.share_bytes_per_node)} max per node, {res.seconds:.1f} s (load {res.load_seconds:.1f} s); receipt {res.receipt}"
    )


def model_list(cluster: Optional[Path] = ClusterOpt, key_file: Optional[Path] = KeyOpt, as_json: bool = JsonOpt):
    """Models registered on every node that you own or were granted."""
    from . import list_models

    with _client(cluster, key_file) as client:
        rows = list_models(client)
    if as_json:
        _emit_json(rows)
        return
    t = Table(title="models")
    for c in ("name", "version", "architecture", "parameters", "owner", "max share bytes/node", "state"):
        t.add_column(c)
    for r in rows:
        t.add_row(
            r["model"],
            str(r["version"]),
            str(r.get("architecture", "-")),
            f"{r.get('params') or 0:,}",
            str(r.get("owner", "-")),
            _fmt_bytes(r.get("share_bytes")),
            r.get("state", "ready"),
        )
    out.print(t)


def model_show(
    name: str,
    version: Optional[int] = typer.Option(None, "--version", "-v"),
    cluster: Optional[Path] = ClusterOpt,
    key_file: Optional[Path] = KeyOpt,
    as_json: bool = JsonOpt,
):
    """Public config, tensors and commitments of a hosted model (checked identical on every node)."""
    from . import show_model

    with _client(cluster, key_file) as client:
        info = show_model(client, name, version)
    if as_json:
        _emit_json(info)
        return
    cfg = info["config"]
    out.print(f"[bold]{info['name']}@{info['version']}[/bold] (versions {info['versions']}), owner {info['owner']}, kind {info['kind']}")
    out.print(
        f"  {cfg.get('n_layers')} layers, dim {cfg.get('dim')}, heads {cfg.get('n_heads')}/{cfg.get('n_kv_heads')}, vocab {cfg.get('vocab_size')}, "
        f"{cfg.get('n_params', 0):,} parameters, {len(info['tensors'])} tensors"
    )
    out.print(f"  share bytes per node: {', '.join(_fmt_bytes(b) for b in info['share_bytes_per_node'])}")
    if "grants" in info:
        out.print(f"  granted to: {', '.join(info['grants']) or '-'}")


def model_rm(
    name: str,
    version: Optional[int] = typer.Option(None, "--version", "-v"),
    cluster: Optional[Path] = ClusterOpt,
    key_file: Optional[Path] = KeyOpt,
    as_json: bool = JsonOpt,
):
    """Remove a model (or one version) and its shares from every node (owner only)."""
    from . import remove_model

    with _client(cluster, key_file) as client:
        removed = remove_model(client, name, version)
    if as_json:
        _emit_json({"name": name, "removed_versions": removed})
    else:
        out.print(f"removed {name} versions {removed} from every node")


def model_grant(
    name: str,
    to: str = typer.Option(..., "--to"),
    cluster: Optional[Path] = ClusterOpt,
    key_file: Optional[Path] = KeyOpt,
    as_json: bool = JsonOpt,
):
    """Allow PRINCIPAL to run inference on NAME (owner only)."""
    from . import grant_model

    with _client(cluster, key_file) as client:
        grant_model(client, name, to)
    _emit_json({"name": name, "granted": to}) if as_json else out.print(f"{to} may now use {name}")


def model_revoke(
    name: str,
    to: str = typer.Option(..., "--from", "--to"),
    cluster: Optional[Path] = ClusterOpt,
    key_file: Optional[Path] = KeyOpt,
    as_json: bool = JsonOpt,
):
    """Withdraw PRINCIPAL's grant on NAME (owner only)."""
    from . import revoke_model

    with _client(cluster, key_file) as client:
        had = revoke_model(client, name, to)
    _emit_json({"name": name, "revoked": to, "had_grant": had}) if as_json else out.print(
        f"{to} may no longer use {name}" if had else f"{to} had no grant on {name}"
    )


def model_verify(
    name: str,
    path: Path = typer.Argument(..., help="the owner's plaintext model"),
    version: Optional[int] = typer.Option(None, "--version", "-v"),
    cluster: Optional[Path] = ClusterOpt,
    key_file: Optional[Path] = KeyOpt,
    as_json: bool = JsonOpt,
):
    """Owner-only: check the hosted shares reconstruct to your weights (random probes, nothing revealed to nodes)."""
    from . import verify_model

    with _client(cluster, key_file) as client:
        res = verify_model(client, name, path, version)
    if as_json:
        _emit_json(res)
    else:
        verdict = "[green]OK[/green]" if res["ok"] else f"[red]MISMATCH[/red] in {res['mismatched'][:5]}"
        out.print(f"{name}@{res['version']}: {res['tensors']} tensors, max |hosted - yours| = {res['max_abs_error']:.2e} → {verdict}")
    if not res["ok"]:
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    model_app = typer.Typer(
        no_args_is_help=True, help="Encrypted model hosting (密态托管): publish, list, show, rm, grant, revoke, verify."
    )
    for name, command in (
        ("publish", model_publish),
        ("list", model_list),
        ("show", model_show),
        ("rm", model_rm),
        ("grant", model_grant),
        ("revoke", model_revoke),
        ("verify", model_verify),
    ):
        model_app.command(name)(command)
    app.add_typer(model_app, name="model")
