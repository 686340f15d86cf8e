"""``misuan cluster init|up|down|status``: create, start, inspect and stop clusters."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from .common import DirOpt, JsonOpt, _emit_json, _fmt_bytes, err, out


def cluster_init(
    dir: Path = DirOpt,
    parties: int = typer.Option(3, "--parties", "-n"),
    hosts: Optional[str] = typer.Option(None, "--hosts", help="comma-separated host per party"),
    tls: Optional[bool] = typer.Option(None, "--tls/--no-tls", help="TLS for control API and links (default: on unless all loopback)"),
    protocol: Optional[str] = typer.Option(None, "--protocol", help="ABY3 (3 parties) | CHEETAH (2) | SEMI2K"),
    ids: Optional[str] = typer.Option(None, "--ids", help="comma-separated party names (default node0,node1,...)"),
    separate: Optional[bool] = typer.Option(
        None,
        "--separate/--local",
        help="only the public cluster file, each operator runs `misuan node init` on its own host (default: when a host is not loopback)",
    ),
    force: bool = typer.Option(False, "--force"),
    as_json: bool = JsonOpt,
):
    """Write a cluster file; for a local cluster also the admin key and every node's keys and certificate."""
    from ..cluster.init import init_cluster

    res = init_cluster(
        dir,
        parties=parties,
        hosts=hosts.split(",") if hosts else None,
        tls=tls,
        protocol=protocol,
        force=force,
        ids=ids.split(",") if ids else None,
        separate=separate,
    )
    info = {"dir": str(res.dir), "cluster_file": str(res.cluster_file), "parties": res.parties, "protocol": res.protocol, "tls": res.tls}
    if as_json:
        _emit_json(info)
    else:
        out.print(f"cluster initialised in {res.dir}: {res.parties} parties, {res.protocol}, TLS {'on' if res.tls else 'off'}")


def _states_table(title: str, states) -> Table:
    t = Table(title=title)
    for c in ("rank", "id", "url", "pid", "state", "note"):
        t.add_column(c)
    for s in states:
        t.add_row(str(s.rank), s.id, s.url, str(s.pid or "-"), "healthy" if s.healthy else ("running" if s.running else "stopped"), s.note)
    return t


def cluster_up(
    dir: Path = DirOpt,
    parties: int = typer.Option(3, "--parties", "-n"),
    tls: bool = typer.Option(False, "--tls/--no-tls", help="TLS when the cluster is created here"),
    as_json: bool = JsonOpt,
):
    """Start every local node (creating the cluster if needed); wait until linked."""
    from ..cluster.local import up

    if not as_json:
        with err.status("starting nodes and checking the SPU link…"):
            states = up(dir, parties=parties, tls=tls)
    else:
        states = up(dir, parties=parties, tls=tls)
    if as_json:
        _emit_json([s.__dict__ for s in states])
    else:
        out.print(_states_table(f"misuan cluster {dir}", states))


def cluster_down(dir: Path = DirOpt, as_json: bool = JsonOpt):
    """Stop every local node; harmless when nothing runs."""
    from ..cluster.local import down

    states = down(dir)
    if as_json:
        _emit_json([s.__dict__ for s in states])
    else:
        out.print(_states_table(f"misuan cluster {dir}", states))


def cluster_status(dir: Path = DirOpt, as_json: bool = JsonOpt):
    """Health, protocol, uptime, resident assets and memory of each node."""
    from ..cluster.local import status

    rows = status(dir)
    if as_json:
        _emit_json(rows)
        return
    t = Table(title=f"misuan cluster {dir}")
    for c in ("rank", "id", "health", "protocol", "uptime", "sessions", "models (resident)", "rss", "workers rss", "store"):
        t.add_column(c)
    for r in rows:
        if not r["healthy"]:
            t.add_row(str(r["rank"]), r["id"], "[red]down[/red]", "-", "-", "-", "-", "-", "-", "-")
            continue
        resident = {(m["model"], m["version"]): m for m in r.get("resident", [])}
        assets = (
            ", ".join(
                f"{a['model']}@{a['version']}"
                + (
                    f" [resident {_fmt_bytes(resident[(a['model'], a['version'])].get('rss_bytes'))}]"
                    if (a["model"], a["version"]) in resident
                    else ""
                )
                for a in r["assets"]
            )
            or "-"
        )
        t.add_row(
            str(r["rank"]),
            r["id"],
            "[green]ok[/green]",
            f"{r['protocol']}/{r['field']}",
            f"{r['uptime_s']:.0f} s",
            str(len(r["sessions"])),
            assets,
            _fmt_bytes(r["rss_bytes"]),
            _fmt_bytes(r["workers_rss_bytes"]),
            _fmt_bytes(r["store_bytes"]),
        )
    out.print(t)
    if any(not r["healthy"] for r in rows):
        raise typer.Exit(1)


def register(cluster_app: typer.Typer) -> None:
    cluster_app.command("init")(cluster_init)
    cluster_app.command("up")(cluster_up)
    cluster_app.command("down")(cluster_down)
    cluster_app.command("status")(cluster_status)
