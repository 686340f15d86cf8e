"""misuan (密算): large-model confidential computing on SecretFlow SPU.

The curated public API::

    import misuan
    with misuan.local_cluster(parties=3) as cluster:   # starts and stops local nodes
        y = cluster.client().run(fn, x, w)             # fn: a JAX function of your own inputs
    client = misuan.connect("D/cluster.toml")          # an already running cluster (as its key_file's principal)
    alice = misuan.connect("D/cluster.toml", "alice.key")   # as another principal (misuan.new_identity / load_identity)
"""

from __future__ import annotations

__version__ = "0.1.0"

from .errors import (
    AuthError,
    ClusterError,
    ComputeError,
    ConfigError,
    Conflict,
    IntegrityError,
    InvalidInput,
    MisuanError,
    NodeError,
    NodeTimeout,
    NodeUnavailable,
    NotFound,
    PermissionDenied,
)

_LAZY = {
    "Client": "sdk",
    "ClusterSession": "client.client",
    "RunStats": "client.client",
    "connect": "sdk",
    "LocalCluster": "cluster.local",
    "local_cluster": "cluster.local",
    "Identity": "identity",
    "new_identity": "identity",
    "load_identity": "identity",
}


def __getattr__(name: str):
    # The SDK pulls in jax and spu; import it on first use so that node
    # workers and the CLI's light commands start fast.
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module 'misuan' has no attribute {name!r}")


__all__ = [
    "__version__",
    "Client",
    "ClusterSession",
    "RunStats",
    "connect",
    "LocalCluster",
    "local_cluster",
    "Identity",
    "new_identity",
    "load_identity",
    "MisuanError",
    "AuthError",
    "ClusterError",
    "ComputeError",
    "ConfigError",
    "Conflict",
    "IntegrityError",
    "InvalidInput",
    "NodeError",
    "NodeTimeout",
    "NodeUnavailable",
    "NotFound",
    "PermissionDenied",
]
