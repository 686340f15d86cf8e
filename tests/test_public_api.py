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


def test_every_error_class_has_a_name_in_the_one_map():
    import misuan.errors as E

    tree = {n: c for n, c in vars(E).items() if isinstance(c, type) and issubclass(c, E.MisuanError)}
    assert E.ALL_ERRORS == tree
    assert set(E.WIRE_ERRORS) <= set(E.ALL_ERRORS)
    assert E.from_name("NodeTimeout", E.ComputeError) is E.NodeTimeout
    assert E.from_name("__class__", E.ComputeError) is E.ComputeError
