"""What the console shows, gathered from the nodes with the user's own identity.

Every node is asked concurrently, each call with its own deadline
(:attr:`StatusSettings.node_timeout_s`), so a dead or hung node shows as
``down`` within that time while the others answer. Answers are cached briefly
so several open pages do not multiply the load on the nodes. Only metadata is
returned: counts, sizes, timings, byte counts, names — never a prompt, an
answer or a share.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .. import errors as E
from ..audit_heads import SignedHead

if TYPE_CHECKING:  # pragma: no cover
    from ..client.client import Client
    from ..client.transport import NodeClient

#: asset kinds the console lists (``kb`` once retrieval is installed on the nodes)
ASSET_KINDS = ("model", "kb")


@dataclass(frozen=True)
class StatusSettings:
    #: a node that has not answered within this is shown down
    node_timeout_s: float = 2.0
    #: node status answers are reused for this long
    cache_s: float = 1.0
    #: assets, jobs and audit answers are reused for this long
    slow_cache_s: float = 5.0
    #: audit rows read for the jobs summary
    audit_rows: int = 1000
    #: assets whose grants are looked up (the owner's own, newest first)
    max_grant_lookups: int = 20


class _Cache:
    """One value per key, recomputed when older than its lifetime."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._values: dict[str, tuple[float, Any]] = {}
        self._locks: dict[str, threading.Lock] = {}

    def get(self, key: str, max_age: float, make: Callable[[], Any]) -> Any:
        with self._lock:
            lock = self._locks.setdefault(key, threading.Lock())
        with lock:  # one computation per key at a time; waiters take its result
            hit = self._values.get(key)
            if hit is not None and time.monotonic() - hit[0] < max_age:
                return hit[1]
            value = make()
            self._values[key] = (time.monotonic(), value)
            return value


def _short_error(exc: BaseException) -> str:
    if isinstance(exc, E.NodeUnavailable):
        return "unreachable"
    if isinstance(exc, (E.NodeTimeout, TimeoutError)):
        return "no answer in time"
    if isinstance(exc, E.AuthError):
        return "refused this key"
    return type(exc).__name__


def _node_view(node: NodeClient, st: dict, rtt_ms: float) -> dict:
    kinds: dict[str, int] = {}
    for s in st["sessions"]:
        kinds[s["kind"]] = kinds.get(s["kind"], 0) + 1
    return {
        "rank": node.party.rank,
        "id": node.party.id,
        "url": node.party.control_url,
        "state": "up",
        "rtt_ms": round(rtt_ms, 1),
        "protocol": st["protocol"],
        "field": st["field"],
        "tls": st["tls"],
        "version": st["version"],
        "uptime_s": st["uptime_s"],
        "rss_bytes": st["rss_bytes"],
        "workers_rss_bytes": st["workers_rss_bytes"],
        "store_bytes": st["store_bytes"],
        "sessions": len(st["sessions"]),
        "sessions_by_kind": kinds,
        "assets": len(st["assets"]),
        "resident": [{k: r.get(k) for k in ("name", "version", "state", "requests", "rss_bytes", "load_seconds")} for r in st["resident"]],
    }


class ClusterStatus:
    """The console's view of one cluster, as the principal of ``client`` sees it."""

    def __init__(self, client: Client, cluster_dir: Path | None = None, settings: StatusSettings = StatusSettings()):
        self.client = client
        #: where the nodes' state may be (a local cluster: the cluster file's directory)
        self.cluster_dir = cluster_dir if cluster_dir is not None else (client.cluster.path.parent if client.cluster.path else None)
        self.settings = settings
        self._cache = _Cache()
        n = client.cluster.world_size
        self._pool = ThreadPoolExecutor(max_workers=2 * n + 2, thread_name_prefix="misuan-console")

    def __repr__(self) -> str:
        return f"ClusterStatus({self.client.cluster.name!r}, principal={self.client.identity.principal!r})"

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)

    # ------------------------------------------------------------ fan-out with a deadline

    def _each(self, fn: Callable[[NodeClient], Any]) -> list[tuple[Any, BaseException | None]]:
        """``fn(node)`` on every node at once; a node that has not answered in time gets TimeoutError."""
        futures = [self._pool.submit(fn, node) for node in self.client.nodes]
        wait(futures, timeout=self.settings.node_timeout_s + 0.5)
        out: list[tuple[Any, BaseException | None]] = []
        for f in futures:
            if not f.done():
                f.cancel()
                out.append((None, TimeoutError()))
            elif f.exception() is not None:
                out.append((None, f.exception()))
            else:
                out.append((f.result(), None))
        return out

    def _get(self, node: NodeClient, path: str, **params) -> Any:
        return node.request("GET", path, params=params or None, timeout=self.settings.node_timeout_s).json()

    # ------------------------------------------------------------ nodes

    def nodes(self) -> dict:
        return self._cache.get("nodes", self.settings.cache_s, self._nodes)

    def _nodes(self) -> dict:
        def one(node: NodeClient) -> dict:
            t0 = time.perf_counter()
            st = self._get(node, "/v1/status")
            return _node_view(node, st, (time.perf_counter() - t0) * 1e3)

        rows = []
        for node, (view, exc) in zip(self.client.nodes, self._each(one)):
            if exc is None:
                rows.append(view)
            else:
                base = {"rank": node.party.rank, "id": node.party.id, "url": node.party.control_url}
                rows.append({**base, "state": "unauthorized" if isinstance(exc, E.AuthError) else "down", "error": _short_error(exc)})
        cl = self.client.cluster
        return {
            "cluster": cl.name,
            "principal": self.client.identity.principal,
            "protocol": cl.mpc.protocol,
            "field": cl.mpc.field,
            "parties": cl.world_size,
            "up": sum(r["state"] == "up" for r in rows),
            "nodes": rows,
            "ts": time.time(),
        }

    def _first_up(self) -> NodeClient | None:
        for row in self.nodes()["nodes"]:
            if row["state"] == "up":
                return self.client.nodes[row["rank"]]
        return None

    # ------------------------------------------------------------ models and KBs

    def assets(self) -> dict:
        return self._cache.get("assets", self.settings.slow_cache_s, self._assets)

    def _assets(self) -> dict:
        node = self._first_up()
        if node is None:
            return {"source": None, "kinds": {}}
        kinds: dict[str, dict] = {}
        lookups = self.settings.max_grant_lookups
        for kind in ASSET_KINDS:
            try:
                rows = self._get(node, f"/v1/{kind}s")
            except E.NotFound:  # this kind is not installed on the nodes
                kinds[kind] = {"available": False, "items": []}
                continue
            items = _group_versions(kind, rows)
            for item in items:
                if item["owner"] == self.client.identity.principal and lookups > 0:
                    lookups -= 1
                    item["grants"] = self._grants(node, kind, item[kind])
            kinds[kind] = {"available": True, "items": items}
        return {"source": node.party.id, "kinds": kinds}

    def _grants(self, node: NodeClient, kind: str, full: str) -> list[str] | None:
        """Who the owner granted the asset to, each with its scope where it has one
        (a KB: ``search``, ``rag`` or ``all``)."""
        try:
            info = self._get(node, f"/v1/{kind}s/{full}")
        except E.MisuanError:
            return None
        scopes = info.get("grant_scopes")
        if scopes is None or kind == "model":  # a model's grants have one scope: every use
            return info.get("grants")
        return [f"{p} ({scope})" for p, scope in sorted(scopes.items())]

    # ------------------------------------------------------------ jobs

    def jobs(self) -> dict:
        return self._cache.get("jobs", self.settings.slow_cache_s, self._jobs)

    def _jobs(self) -> dict:
        node = self._first_up()
        if node is None:
            return {"source": None}
        rows = self._get(node, "/v1/audit", n=self.settings.audit_rows)
        live = next((r for r in self.nodes()["nodes"] if r["rank"] == node.party.rank), {})
        return {"source": node.party.id, "rows_read": len(rows), "live_sessions": live.get("sessions_by_kind", {}), **summarize_jobs(rows)}

    # ------------------------------------------------------------ audit

    def audit(self) -> dict:
        return self._cache.get("audit", self.settings.slow_cache_s, self._audit)

    def _audit(self) -> dict:
        d = self.cluster_dir
        if d is not None and any(d.glob("node*/state.db")):
            return self._audit_local(d)
        return self._audit_heads()

    def _audit_local(self, d: Path) -> dict:
        """The full check of ``misuan audit verify`` (this machine holds the nodes' state)."""
        from ..node.audit_verify import default_receipts, verify_cluster

        try:
            reports = verify_cluster(d, default_receipts(d))
        except E.MisuanError as exc:
            return {"mode": "chains", "ok": False, "error": str(exc), "nodes": []}
        nodes = [r.public() for r in reports]
        for n in nodes:
            n.pop("path", None)
        return {"mode": "chains", "ok": all(n["ok"] for n in nodes), "nodes": nodes}

    def _audit_heads(self) -> dict:
        """Remote nodes: each node's signed audit head, checked against the key cluster.toml publishes."""
        cl = self.client.cluster
        nodes = []
        for node, (head, exc) in zip(self.client.nodes, self._each(lambda n: n.audit_head())):
            row: dict = {"party": node.party.id}
            if exc is not None:
                row.update(ok=None, reason=_short_error(exc))
            else:
                row.update(rows=head["seq"], head=head["hash"], **_check_signed(cl.name, node, head))
            nodes.append(row)
        checked = [n["ok"] for n in nodes if n["ok"] is not None]
        return {"mode": "heads", "ok": bool(checked) and all(checked), "nodes": nodes}


def _check_signed(cluster: str, node: NodeClient, head: dict) -> dict:
    key = node.party.audit_key
    if key is None:
        return {"ok": None, "reason": "no audit key published in cluster.toml"}
    if head.get("public_key") != key:
        return {"ok": False, "reason": "the node serves another audit key than cluster.toml publishes"}
    try:
        SignedHead(cluster, node.party.id, int(head["seq"]), str(head["hash"]), int(head["ts_ms"]), str(head["signature"])).verify(key)
    except (E.IntegrityError, KeyError, ValueError):
        return {"ok": False, "reason": "head not signed by the node's audit key"}
    return {"ok": True, "reason": "signed head verified"}


def _group_versions(kind: str, rows: list[dict]) -> list[dict]:
    """One item per asset name, newest version first, with every version and its size."""
    by_name: dict[str, dict] = {}
    for r in rows:
        full = r.get(kind) or f"{r.get('owner')}/{r.get('name')}"
        item = by_name.setdefault(
            full, {kind: full, "owner": r.get("owner"), "name": r.get("name"), "kind": r.get("kind"), "versions": [], "grants": None}
        )
        item["versions"].append(
            {"version": r.get("version"), "share_bytes": r.get("share_bytes"), "params": r.get("params"), "created": r.get("created")}
        )
    for item in by_name.values():
        item["versions"].sort(key=lambda v: v["version"] or 0, reverse=True)
        item["latest"] = item["versions"][0]["version"]
    return sorted(by_name.values(), key=lambda i: i[kind])


#: audit operations of each job kind: (op prefix of a counted step, op prefixes of its other rows)
JOB_OPS: dict[str, tuple[str, tuple[str, ...]]] = {
    "inference": ("model.run.", ("model.request.",)),
    "search": ("kb.run.", ("kb.request.",)),
    "psi": ("psi.job", ("psi.start",)),
}


def _detail(row: dict) -> dict:
    try:
        d = json.loads(row.get("detail") or "{}")
    except ValueError:
        return {}
    return d if isinstance(d, dict) else {}


def _job_kind(op: str) -> tuple[str, bool] | None:
    """(job kind, whether the row is a counted step) of an audit operation."""
    for kind, (step, others) in JOB_OPS.items():
        if op.startswith(step):
            return kind, kind != "psi"
        if any(op.startswith(p) for p in others):
            return kind, False
    return None


def summarize_jobs(rows: list[dict], recent: int = 12) -> dict:
    """Counts, timings and bytes of inference requests, searches and PSI runs from audit rows.

    A job is one request (inference, search) or one PSI job id. Only numbers, asset
    names and states are read out of a row (its request id only to group rows)."""
    jobs: dict[tuple[str, str], dict] = {}
    for row in sorted(rows, key=lambda r: r["seq"]):
        found = _job_kind(row["op"])
        if found is None:
            continue
        kind, step = found
        d = _detail(row)
        key = (kind, row["asset"] if kind == "psi" else str(d.get("request", row["seq"])))
        seconds = float(d.get("seconds") or 0.0)
        job = jobs.setdefault(key, {"kind": kind, "asset": row["asset"], "start": row["ts"] - seconds, "end": row["ts"]})
        job.setdefault("steps", 0)
        job["start"], job["end"] = min(job["start"], row["ts"] - seconds), max(job["end"], row["ts"])
        job["steps"] += step
        job["mpc_s"] = job.get("mpc_s", 0.0) + seconds
        job["bytes"] = job.get("bytes", 0) + int(d.get("send_bytes") or 0) + int(row.get("bytes_in") or 0) + int(row.get("bytes_out") or 0)
        if row["status"] != "ok" or "refused" in d:
            job["status"] = "refused" if row["status"] == "ok" else row["status"]
        job.setdefault("status", "running" if kind == "psi" else "ok")
    totals = {k: {"count": 0, "failed": 0, "steps": 0, "mpc_s": 0.0, "bytes": 0} for k in JOB_OPS}
    for job in jobs.values():
        t = totals[job["kind"]]
        t["count"] += 1
        t["failed"] += job["status"] not in ("ok", "done", "running")
        t["steps"] += job["steps"]
        t["mpc_s"] = round(t["mpc_s"] + job["mpc_s"], 3)
        t["bytes"] += job["bytes"]
    latest = sorted(jobs.values(), key=lambda j: j["start"], reverse=True)[:recent]
    for job in latest:
        job["wall_s"] = round(job.pop("end") - job["start"], 3)
        job["start"] = round(job["start"], 3)
        job["mpc_s"] = round(job["mpc_s"], 3)
    return {"totals": totals, "recent": latest}
