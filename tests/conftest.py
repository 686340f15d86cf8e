"""Shared fixtures: real local clusters (node processes linked by SPU)."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("JAX_PLATFORMS", "cpu")

from misuan.config import Timeouts  # noqa: E402

#: short timeouts so fault tests finish fast (a lost peer is noticed in ~5 s).
FAST = Timeouts(link_recv_ms=5_000, link_connect_s=8.0, http_connect_s=2.0, http_read_s=10.0, session_idle_s=120.0)


@pytest.fixture(scope="session")
def cluster3(tmp_path_factory):
    """A 3-party ABY3 cluster of real node processes, shared by the session."""
    from misuan.cluster.local import local_cluster

    with local_cluster(3, dir=tmp_path_factory.mktemp("aby3"), timeouts=FAST) as lc:
        yield lc


@pytest.fixture(scope="session")
def client3(cluster3):
    c = cluster3.client()
    yield c


def client_as(lc, name: str):
    """A client acting as principal ``name`` on the local cluster ``lc`` (its key
    made and registered on first use).

    The one place tests obtain another principal's credentials, so the identity
    scheme can change without touching every test."""
    return lc.client(lc.principal(name))


def node_service(d, rank: int = 0, bench: bool = False):
    """A real NodeService over node ``rank`` of the cluster dir ``d`` (made if missing),
    running the registry's capabilities, as ``misuan node serve`` does."""
    from pathlib import Path

    from misuan import registry
    from misuan.cluster.init import init_cluster
    from misuan.config import load_node
    from misuan.node.service import NodeService

    d = Path(d)
    if not (d / "cluster.toml").exists():
        init_cluster(d, parties=3)
    cfg = load_node(d / f"node{rank}" / "node.toml")
    return NodeService(cfg, registry.node_capabilities(bench or cfg.bench))


def app_routes(tmp_dir) -> list:
    """Every route of a node's app, as the registry wires it."""
    from misuan.node.app import create_app

    def flat(routes):
        for r in routes:
            inner = getattr(r, "original_router", None)  # an included router (mounted without a prefix)
            yield from flat(inner.routes) if inner is not None else [r]

    return list(flat(create_app(node_service(tmp_dir)).routes))
