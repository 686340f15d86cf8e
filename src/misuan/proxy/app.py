"""``create_app(provider, settings)``: the proxy's FastAPI app (thin routers over a
:class:`~.provider.BackendProvider`)."""

from __future__ import annotations

from fastapi import FastAPI, Request

from . import chat, embeddings, models
from .console import console_for
from .errors import ApiError
from .gate import Gate
from .provider import BackendProvider
from .security import FrontDoor
from .settings import ProxySettings


def create_app(provider: BackendProvider, settings: ProxySettings | None = None) -> FastAPI:
    settings = settings or ProxySettings()
    app = FastAPI(title="misuan proxy", docs_url=None, redoc_url=None, openapi_url=None)
    gate = Gate(settings.max_waiting, settings.retry_after_s)
    app.state.provider, app.state.settings, app.state.gate = provider, settings, gate

    @app.exception_handler(ApiError)
    async def api_error(_request: Request, exc: ApiError):
        return exc.response()

    @app.get("/health")
    async def health() -> dict:
        return {"ok": True, "running": gate.load()}

    app.include_router(models.router(provider, settings.retry_after_s))
    app.include_router(chat.router(chat.Deps(provider, settings, gate)))
    app.include_router(embeddings.router(provider, settings.retry_after_s))
    app.include_router(console_for(provider, api_key=settings.api_key))
    app.add_middleware(FrontDoor, settings=settings)
    return app
