"""Run the proxy app with uvicorn (the CLI's foreground server, and tests' background one)."""

from __future__ import annotations

import threading
from contextlib import contextmanager
from typing import Iterator

import uvicorn

from .app import create_app
from .provider import BackendProvider, ClientProvider
from .settings import ProxySettings


def _server(provider: BackendProvider, settings: ProxySettings) -> uvicorn.Server:
    settings.check()
    app = create_app(provider, settings)
    config = uvicorn.Config(app, host=settings.host, port=settings.port, log_level="warning", timeout_graceful_shutdown=5)
    return uvicorn.Server(config)


def serve(client, settings: ProxySettings) -> None:
    """Serve in the foreground until interrupted."""
    _server(ClientProvider(client), settings).run()


@contextmanager
def serving(provider: BackendProvider, settings: ProxySettings) -> Iterator[str]:
    """Serve in a background thread; yields the base URL (``http://host:port/v1``)."""
    server = _server(provider, settings)
    thread = threading.Thread(target=server.run, name="misuan-proxy", daemon=True)
    thread.start()
    try:
        while not server.started:
            if not thread.is_alive():
                raise RuntimeError("the proxy did not start")
            threading.Event().wait(0.02)
        yield f"http://{settings.host}:{settings.port}/v1"
    finally:
        server.should_exit = True
        thread.join(10)
