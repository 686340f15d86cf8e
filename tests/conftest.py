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
