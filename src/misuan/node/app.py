"""The node's HTTP control API (FastAPI). Thin: it validates, authenticates
and delegates to :class:`~misuan.node.service.NodeService`."""

from __future__ import annotations

from contextlib import asynccontextmanager

from fastapi import Depends, FastAPI, Header, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool

from ..errors import AuthError, InvalidInput, MisuanError
from . import schemas as S
from .service import NodeService

MAX_BODY = 1 << 31  # 2 GiB per binary request


def _error(status: int, kind: str, message: str, headers: dict | None = None, peer: int | None = None) -> JSONResponse:
    body = {"error": kind, "message": message}
    if peer is not None:
        body["peer"] = peer
    return JSONResponse(body, status_code=status, headers=headers)


def create_app(service: NodeService) -> FastAPI:
    @asynccontextmanager
    async def lifespan(_app):
        service.start()
        try:
            yield
        finally:
            service.stop()

    app = FastAPI(title="misuan node", version="1", lifespan=lifespan, docs_url=None, redoc_url=None)

    @app.exception_handler(MisuanError)
    async def _misuan_error(_req: Request, exc: MisuanError):
        headers = {"WWW-Authenticate": "Bearer"} if isinstance(exc, AuthError) else None
        return _error(exc.http_status, type(exc).__name__, str(exc), headers, getattr(exc, "peer", None))

    @app.exception_handler(RequestValidationError)
    async def _invalid(_req: Request, exc: RequestValidationError):
        # Name the field; never echo the submitted value.
        parts = []
        for e in exc.errors()[:5]:
            loc = ".".join(str(x) for x in e.get("loc", ()) if x not in ("body",))
            parts.append(f"{loc or 'body'}: {e.get('msg', 'invalid')}")
        return _error(422, "InvalidInput", "; ".join(parts))

    def principal(authorization: str | None = Header(default=None)) -> str:
        if not authorization or not authorization.startswith("Bearer "):
            raise AuthError("missing bearer token")
        return service.authenticate(authorization[len("Bearer ") :].strip())

    async def body_bytes(request: Request) -> bytes:
        size = request.headers.get("content-length")
        if size is not None and int(size) > MAX_BODY:
            raise InvalidInput("request body too large")
        return await request.body()

    sm = service.sessions

    @app.get("/v1/health", response_model=S.Health)
    def health():
        return service.health()

    @app.get("/v1/status", response_model=S.Status)
    def status(_who: str = Depends(principal)):
        return service.status()

    @app.post("/v1/sessions", response_model=S.SessionCreated, status_code=201)
    def create_session(req: S.SessionCreate, who: str = Depends(principal)):
        sess = sm.create(req.session_id, who, req.kind)
        return {"session_id": sess.id, "link_address": service.cfg.party.link_address(sess.port)}

    @app.post("/v1/sessions/{sid}/link", response_model=S.Linked)
    def link_session(sid: str, req: S.SessionLink, who: str = Depends(principal)):
        return {"seconds": sm.link(sm.get(sid, who), req.addresses)}

    @app.post("/v1/sessions/{sid}/ping")
    def ping(sid: str, req: S.Ping, who: str = Depends(principal)):
        sm.ping(sm.get(sid, who), req.nonce)
        return {"ok": True}

    @app.put("/v1/sessions/{sid}/vars/{name}", response_model=S.VarStored)
    async def put_var(sid: str, name: str, request: Request, who: str = Depends(principal)):
        sess = sm.get(sid, who)
        data = await body_bytes(request)
        await run_in_threadpool(sm.set_var, sess, name, data)
        return {"name": name, "bytes": len(data)}

    @app.get("/v1/sessions/{sid}/vars/{name}")
    def get_var(sid: str, name: str, who: str = Depends(principal)):
        data = sm.get_var(sm.get(sid, who), name)
        return Response(content=data, media_type="application/octet-stream")

    @app.post("/v1/sessions/{sid}/run", response_model=S.RunResult)
    async def run(
        sid: str,
        request: Request,
        who: str = Depends(principal),
        x_misuan_program_sha256: str = Header(pattern=r"^[0-9a-f]{64}$"),
    ):
        sess = sm.get(sid, who)
        program = await body_bytes(request)
        return await run_in_threadpool(sm.run, sess, program, x_misuan_program_sha256)

    @app.delete("/v1/sessions/{sid}", response_model=S.Closed)
    def close_session(sid: str, who: str = Depends(principal)):
        return {"closed": sm.close(sid, who)}

    @app.get("/v1/audit", response_model=list[S.AuditRow])
    def audit_tail(n: int = 50, _who: str = Depends(principal)):
        return service.audit.tail(max(1, min(n, 1000)))

    return app
