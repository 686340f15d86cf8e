"""The curated public API (``misuan.__all__``) changes only on purpose."""

import misuan

PUBLIC = [
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


def test_all_is_pinned_and_every_name_resolves():
    assert sorted(misuan.__all__) == sorted(PUBLIC)
    for name in PUBLIC:
        assert getattr(misuan, name) is not None, name


def test_errors_share_one_tree_and_one_wire_map():
    from misuan.errors import WIRE_ERRORS, from_wire

    assert all(
        issubclass(getattr(misuan, n), misuan.MisuanError)
        for n in PUBLIC
        if n.endswith(("Error", "Denied", "Found", "Input", "Conflict", "Timeout", "Unavailable"))
    )
    for name, cls in WIRE_ERRORS.items():
        assert from_wire(name, misuan.ComputeError) is cls
    assert from_wire("SomethingElse", misuan.ComputeError) is misuan.ComputeError
