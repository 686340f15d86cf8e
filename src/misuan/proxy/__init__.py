"""An OpenAI-compatible HTTP proxy on the user's own machine (端云协同).

Existing OpenAI clients switch to confidential inference by changing their base URL:
the proxy renders the chat template, tokenizes and secret-shares here, and only shares
leave the machine. The HTTP code depends on :class:`misuan.inference.ChatBackend` only
(through a :class:`~misuan.proxy.provider.BackendProvider`), never on an engine.

``create_app(provider, settings)`` builds the ASGI app; ``misuan proxy`` serves it.
Imported lazily so ``import misuan.proxy`` costs nothing.
"""

from importlib import import_module

_EXPORTS = {
    "create_app": ".app",
    "ProxySettings": ".settings",
    "BackendProvider": ".provider",
    "ClientProvider": ".provider",
    "ModelCard": ".provider",
}

__all__ = list(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(import_module(_EXPORTS[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
