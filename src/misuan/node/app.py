"""The node's HTTP control API (FastAPI). Thin: it validates, authenticates
and delegates to :class:`~misuan.node.service.NodeService`."""

from __future__ import annotations

import dataclasses
import errno
import hashlib
import hmac
from contextlib import asynccontextmanager

from fastapi import Depends, FastAPI, Header, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool

from ..errors import AuthError, InvalidInput, MisuanError, NotFound
from ..identity import BODY_HEADER, SCHEME
from . import auth
from . import schemas as S
from .asset_routes import RouteDeps, asset_router, uploads_router
from .assets import check_asset_name
from .auth import BodyHash
from .reveal import reveal_declared_output
from .runtimes import hand_over
from .service import NodeService
from .witness import ReceiptMiddleware

MAX_BODY = 1 << 31  # 2 GiB per binary request


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


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

    app = FastAPI(title="misuan node", version="1", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)
    app.add_middleware(ReceiptMiddleware, witness=service.witness)

    @app.exception_handler(MisuanError)
    async def _misuan_error(_req: Request, exc: MisuanError):
        headers = {"WWW-Authenticate": SCHEME} if isinstance(exc, AuthError) else None
        return _error(exc.http_status, type(exc).__name__, str(exc), headers, getattr(exc, "peer", None))

    @app.exception_handler(OSError)
    async def _os_error(_req: Request, exc: OSError):
        # The node's own I/O failed (e.g. a full disk while a model uploads): say so
        # in one line, without paths; the request's partial files are gone.
        if exc.errno == errno.ENOSPC:
            return _error(507, "NodeError", "no space left on the node's disk")
        return _error(500, "NodeError", f"node I/O error: {exc.strerror or type(exc).__name__}")

    @app.exception_handler(RequestValidationError)
    async def _invalid(_req: Request, exc: RequestValidationError):
        # Name the field; never echo the submitted value.
        parts = []
        for e in exc.errors()[:5]:
            loc = ".".join(str(x) for x in e.get("loc", ()) if x not in ("body",))
            parts.append(f"{loc or 'body'}: {e.get('msg', 'invalid')}")
        return _error(422, "InvalidInput", "; ".join(parts))

    def signer(request: Request) -> tuple[str, str]:
        """Check the request's signature (headers only, before any body is read)."""
        raw = request.scope.get("raw_path") or request.url.path.encode()
        query = request.scope.get("query_string") or b""
        target = raw.decode("latin-1") + ("?" + query.decode("latin-1") if query else "")
        declared = request.headers.get(BODY_HEADER)
        return service.auth.verify(request.method, target, request.headers.get("authorization"), declared), declared

    async def principal(request: Request) -> str:
        """The principal that signed this request, its body included."""
        who, declared = signer(request)
        body = await body_bytes(request)
        digest = hashlib.sha256(body).hexdigest() if len(body) < 1 << 20 else await run_in_threadpool(_sha256, body)
        if not hmac.compare_digest(digest, declared):
            raise AuthError("request body does not match its signature")
        return who

    def streaming_principal(request: Request) -> tuple[str, BodyHash]:
        """For streamed bodies: the route feeds the body to the hash and checks it at the end."""
        who, declared = signer(request)
        return who, BodyHash(declared)

    async def body_bytes(request: Request) -> bytes:
        size = request.headers.get("content-length")
        if size is not None and (not size.isdigit() or int(size) > MAX_BODY):
            raise InvalidInput("request body too large or of unknown length")
        return await request.body()

    sm = service.sessions

    def mount(router) -> None:
        # onto the app itself, not as an included router (which FastAPI 0.165 keeps as one
        # opaque entry): app.routes stays the flat list of every route the route checks read
        app.router.routes.extend(router.routes)

    @app.get("/v1/health", response_model=S.Health)
    def health():
        return service.health()

    @app.get("/v1/principals")
    def principals(who: str = Depends(principal)):
        return service.auth.list(who)

    @app.post("/v1/principals", status_code=201)
    def register_principal(req: S.PrincipalCreate, who: str = Depends(principal)):
        return service.auth.register(who, req.principal, req.public_key)

    @app.delete("/v1/principals/{name}")
    def revoke_principal(name: str, who: str = Depends(principal)):
        return service.auth.revoke(who, name)

    @app.get("/v1/whoami")
    def whoami(who: str = Depends(principal)):
        return {"principal": who, "party": service.cfg.party.id}

    @app.get("/v1/status", response_model=S.Status)
    def status(who: str = Depends(principal)):
        return service.status(who)

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
        data = reveal_declared_output(sm, sm.get(sid, who), name, who)
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

    # ---------------------------------------------------------------- assets (one router per kind)

    deps = RouteDeps(principal=principal, streaming_principal=streaming_principal, body_bytes=body_bytes)
    for kind, reg in service.assets.items():
        mount(asset_router(reg, service.runtimes[kind], deps))
    if service.assets:
        mount(uploads_router(service.assets, deps))

    @app.post("/v1/runtimes/handover")
    def runtime_handover(req: S.HandOver, who: str = Depends(principal)):
        rts = service.runtimes
        if req.source.kind not in rts or req.target.kind not in rts:
            raise NotFound("unknown asset kind")
        check_asset_name(req.source.name, req.source.kind)
        check_asset_name(req.target.name, req.target.kind)
        hand_over(rts[req.source.kind], rts[req.target.kind], who, req.source.model_dump(), req.target.model_dump(), req.vars)
        return {"handed_over": req.vars}

    @app.get("/v1/runtimes/{rid}/alive")
    def runtime_alive(rid: str):
        # Unauthenticated, for peers: only whether this unguessable id is a live runtime here.
        return {"alive": any(rts.holds(rid) for rts in service.runtimes.values())}

    # ---------------------------------------------------------------- capabilities' own routes

    ctx = dataclasses.replace(service.context, principal=principal)
    for cap in service.capabilities.items:
        if cap.router is not None:
            mount(cap.router(ctx))

    @app.get("/v1/audit/head", response_model=S.AuditHead)
    def audit_head():
        # No principal: peers fetch it to cross-record heads; it shows a row count and a hash, signed.
        return service.witness.head_view()

    @app.get("/v1/audit", response_model=list[S.AuditRow])
    def audit_tail(n: int = 50, who: str = Depends(principal)):
        # the admin sees every row; anyone else only the rows of its own requests
        return service.audit.tail(max(1, min(n, 1000)), requester=None if who == auth.ADMIN else who)

    return app
