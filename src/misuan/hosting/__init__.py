"""Encrypted model hosting (密态托管): publish, list, show, remove, grant, revoke, verify.

The edge functions are imported on first use, so the nodes can import
:mod:`misuan.hosting.protocol` (what both sides agree on) without the client.
"""

from importlib import import_module

_EXPORTS = {
    "publish_model": ".publish",
    "PublishResult": ".publish",
    "list_models": ".client",
    "show_model": ".client",
    "remove_model": ".client",
    "grant_model": ".client",
    "revoke_model": ".client",
    "verify_model": ".client",
}

__all__ = list(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(import_module(_EXPORTS[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
