"""The web console at ``/console``: static files shipped in the package and the
JSON endpoints under ``/console/api/`` that the page polls.

No build step, nothing fetched from another origin: the page is a few files
(``console/index.html``, ``app.js``, ``app.css`` and an icon) served with a strict Content
Security Policy (``default-src 'self'``, no inline script or style). The API
answers same-origin requests only, and asks for the proxy's API key when one is
set. Everything shown comes from :class:`~misuan.proxy.status.ClusterStatus`,
i.e. from the nodes, asked with the user's own identity.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response

from ..errors import MisuanError
from .status import ClusterStatus

CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
    "font-src 'none'; object-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
#: headers on every console response
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
    "X-Frame-Options": "DENY",
}
#: the page's files and their media types: nothing else is served
FILES = {
    "index.html": "text/html; charset=utf-8",
    "app.js": "text/javascript; charset=utf-8",
    "app.css": "text/css; charset=utf-8",
    "favicon.svg": "image/svg+xml",
}


#: where the page's files are shipped (package data)
STATIC = Path(__file__).with_name("console")


def _file(name: str) -> bytes:
    return (STATIC / name).read_bytes()


def _same_origin(request: Request) -> None:
    """Refuse requests a page of another origin makes (the browser says so in these headers)."""
    if request.headers.get("sec-fetch-site") in ("cross-site", "same-site"):
        raise HTTPException(403, "the console API answers its own page only")
    origin = request.headers.get("origin")
    if origin is not None and urlsplit(origin).netloc != request.headers.get("host"):
        raise HTTPException(403, "the console API answers its own page only")


def console_router(status: ClusterStatus, *, api_key: str | None = None) -> APIRouter:
    """Routes of the console; ``api_key``: the proxy's, required by the API when set."""
    r = APIRouter()

    def allowed(request: Request) -> None:
        _same_origin(request)
        if api_key is None:
            return
        given = request.headers.get("authorization", "")
        if not hmac.compare_digest(given.encode(), f"Bearer {api_key}".encode()):
            raise HTTPException(401, "this proxy needs its API key", headers={"WWW-Authenticate": "Bearer"})

    def page(name: str) -> Response:
        return Response(_file(name), media_type=FILES[name], headers={**SECURITY_HEADERS, "Cache-Control": "no-cache"})

    def data(make: Callable[[], dict]) -> JSONResponse:
        headers = {**SECURITY_HEADERS, "Cache-Control": "no-store"}
        try:
            return JSONResponse(make(), headers=headers)
        except MisuanError as exc:  # a node failed while asked: said in the answer, which the page shows
            return JSONResponse({"error": type(exc).__name__, "message": str(exc)}, headers=headers)

    @r.get("/console", include_in_schema=False)
    def console_root():
        return RedirectResponse("/console/", headers=SECURITY_HEADERS)

    @r.get("/console/", include_in_schema=False)
    def console_index():
        return page("index.html")

    @r.get("/console/app.js", include_in_schema=False)
    def console_js():
        return page("app.js")

    @r.get("/console/app.css", include_in_schema=False)
    def console_css():
        return page("app.css")

    @r.get("/console/favicon.svg", include_in_schema=False)
    def console_icon():
        return page("favicon.svg")

    deps = [Depends(allowed)]

    @r.get("/console/api/cluster", dependencies=deps, include_in_schema=False)
    def api_cluster():
        return data(status.nodes)

    @r.get("/console/api/assets", dependencies=deps, include_in_schema=False)
    def api_assets():
        return data(status.assets)

    @r.get("/console/api/jobs", dependencies=deps, include_in_schema=False)
    def api_jobs():
        return data(status.jobs)

    @r.get("/console/api/audit", dependencies=deps, include_in_schema=False)
    def api_audit():
        return data(status.audit)

    return r


def console_for(provider: object, *, api_key: str | None = None) -> APIRouter:
    """The console of a proxy whose backend provider reaches a cluster through a
    :class:`~misuan.client.client.Client` (its ``client``); no routes otherwise."""
    client = getattr(provider, "client", None)
    if client is None or not hasattr(client, "nodes"):
        return APIRouter()
    return console_router(ClusterStatus(client), api_key=api_key)
