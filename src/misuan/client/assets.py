"""List, show, remove, grant and revoke stored assets of any kind (models, knowledge
bases) across every node."""

from __future__ import annotations

from .. import errors as E
from .client import Client


def list_assets(client: Client, kind: str) -> list[dict]:
    """Assets of ``kind`` (and versions) registered on *every* node, as this principal sees them."""
    per_node = client.fanout(lambda i: client.nodes[i].list_models(kind))
    keys = [{(m[kind], m["version"]) for m in rows} for rows in per_node]
    common = set.intersection(*keys) if keys else set()
    sizes: dict[tuple[str, int], int] = {}
    for rows in per_node:
        for m in rows:
            key = (m[kind], m["version"])
            sizes[key] = max(sizes.get(key, 0), m.get("share_bytes") or 0)
    out = [{**m, "share_bytes": sizes[(m[kind], m["version"])]} for m in per_node[0] if (m[kind], m["version"]) in common]
    partial = sorted(set.union(*keys) - common) if keys else []
    for full, version in partial:
        owner, _, name = full.partition("/")
        out.append({kind: full, "owner": owner, "name": name, "version": version, "state": "incomplete (not on every node)"})
    return out


def show_asset(client: Client, kind: str, name: str, version: int | None = None) -> dict:
    """An asset's public record, checked identical on every node."""
    name = client.model_ref(name)
    views = client.fanout(lambda i: client.nodes[i].show_model(name, version, kind))
    first = views[0]
    mismatched = [
        i
        for i, v in enumerate(views)
        if v["version"] != first["version"] or [t["commitment"] for t in v["tensors"]] != [t["commitment"] for t in first["tensors"]]
    ]
    if mismatched:
        raise E.IntegrityError(f"nodes {mismatched} hold a different {name}@{first['version']} than node 0")
    info = {k: v for k, v in first.items() if k != "tensors"}
    info["tensors"] = [{k: t[k] for k in ("name", "shape", "commitment")} for t in first["tensors"]]
    info["share_sha256_per_node"] = [[t["share_sha256"] for t in v["tensors"]] for v in views]
    info["share_bytes_per_node"] = [v["share_bytes"] for v in views]
    return info


def remove_asset(client: Client, kind: str, name: str, version: int | None = None) -> list[int]:
    name = client.model_ref(name)
    removed = client.fanout(lambda i: client.nodes[i].remove_model(name, version, kind))
    return sorted(set().union(*map(set, removed)))


def grant_asset(client: Client, kind: str, name: str, to: str, scope: str | None = None) -> None:
    name = client.model_ref(name)
    client.fanout(lambda i: client.nodes[i].grant(name, to, kind, scope))


def revoke_asset(client: Client, kind: str, name: str, to: str) -> bool:
    name = client.model_ref(name)
    return any(client.fanout(lambda i: client.nodes[i].revoke(name, to, kind)))


__all__ = ["grant_asset", "list_assets", "remove_asset", "revoke_asset", "show_asset"]
