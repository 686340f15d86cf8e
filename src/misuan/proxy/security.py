"""The proxy's front door, as plain ASGI middleware (streams and disconnects pass through):
the ``Host`` check (DNS rebinding), CORS only for ``--cors-origin``, the API key."""

from __future__ import annotations

import hmac

from starlette.datastructures import Headers
from starlette.responses import PlainTextResponse, Response

from .errors import ApiError
from .settings import ProxySettings

#: request headers a CORS preflight may ask for (the ``openai`` package sends x-stainless-*)
CORS_HEADERS = ("authorization", "content-type")
EXPOSED = "x-misuan-protocol, x-misuan-bytes-sent, x-misuan-mpc-seconds, retry-after, x-should-retry"


class FrontDoor:
    def __init__(self, app, settings: ProxySettings):
        self.app = app
        self.settings = settings

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = Headers(scope=scope)
        if not self.settings.host_allowed(headers.get("host")):
            return await PlainTextResponse("unexpected Host header", status_code=421)(scope, receive, send)
        origin = headers.get("origin")
        cors = origin is not None and origin in self.settings.cors_origins
        if scope["method"] == "OPTIONS" and "access-control-request-method" in headers:
            return await self._preflight(headers, cors)(scope, receive, send)
        guarded = scope["path"].startswith("/v1/") or scope["path"] == "/health"  # /health names the models that run
        if guarded and not self._key_ok(headers.get("authorization")):
            err = ApiError(401, "Incorrect API key provided.", code="invalid_api_key")
            return await err.response()(scope, receive, send)
        if not cors:
            return await self.app(scope, receive, send)

        async def send_cors(message):
            if message["type"] == "http.response.start":
                extra = [
                    (b"access-control-allow-origin", origin.encode()),
                    (b"access-control-expose-headers", EXPOSED.encode()),
                    (b"vary", b"Origin"),
                ]
                message = {**message, "headers": [*message.get("headers", []), *extra]}
            await send(message)

        return await self.app(scope, receive, send_cors)

    def _key_ok(self, authorization: str | None) -> bool:
        key = self.settings.api_key
        if not key:
            return True
        scheme, _, given = (authorization or "").partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), key.encode())

    def _preflight(self, headers: Headers, cors: bool) -> Response:
        asked = [h.strip().lower() for h in headers.get("access-control-request-headers", "").split(",") if h.strip()]
        method = headers.get("access-control-request-method", "")
        if not cors or method not in ("GET", "POST") or any(h not in CORS_HEADERS and not h.startswith("x-stainless-") for h in asked):
            return PlainTextResponse("CORS request refused", status_code=400)
        return Response(
            status_code=204,
            headers={
                "access-control-allow-origin": headers["origin"],
                "access-control-allow-methods": "GET, POST",
                "access-control-allow-headers": ", ".join(asked) or "authorization, content-type",
                "access-control-max-age": "600",
                "vary": "Origin",
            },
        )
