"""The node's HTTP control API (FastAPI). Thin: it validates, authenticates
and delegates to :class:`~misuan.node.service.NodeService`."""

from __future__ import annotations

import errno
from contextlib import asynccontextmanager

from fastapi import Depends, FastAPI, Header, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool

from ..errors import AuthError, InvalidInput, MisuanError
from . import schemas as S
from .service import NodeService
from .witness import ReceiptMiddleware

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
    app.add_middleware(ReceiptMiddleware, witness=service.witness)

    @app.exception_handler(MisuanError)
    async def _misuan_error(_req: Request, exc: MisuanError):
        headers = {"WWW-Authenticate": "Bearer"} if isinstance(exc, AuthError) else None
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

    # ---------------------------------------------------------------- models

    reg = service.models
    rts = service.runtimes

    @app.get("/v1/models")
    def list_models(who: str = Depends(principal)):
        return reg.list(who)

    @app.get("/v1/models/{name}")
    def show_model(name: str, version: int | None = None, who: str = Depends(principal)):
        return reg.show(who, name, version)

    @app.get("/v1/models/{name}/tokenizer")
    def model_tokenizer(name: str, version: int | None = None, who: str = Depends(principal)):
        return Response(content=reg.tokenizer(who, name, version), media_type="application/json")

    @app.post("/v1/models/{name}/uploads", status_code=201)
    def begin_upload(name: str, req: S.UploadCreate, who: str = Depends(principal)):
        uid = reg.begin_upload(who, name, req.version, req.kind, req.config, req.tokenizer, [t.model_dump() for t in req.tensors])
        return {"upload_id": uid}

    @app.put("/v1/uploads/{uid}/tensors/{tensor}")
    async def put_tensor(uid: str, tensor: str, request: Request, who: str = Depends(principal)):
        writer, head, n = reg.tensor_writer(uid, who, tensor)
        try:
            buf = bytearray()
            async for chunk in request.stream():
                head.feed(chunk)
                buf += chunk
                if len(buf) >= 8 << 20:
                    await run_in_threadpool(writer.update, bytes(buf))
                    buf.clear()
            if buf:
                await run_in_threadpool(writer.update, bytes(buf))
            return await run_in_threadpool(reg.finish_tensor, uid, who, tensor, writer, head, n)
        except BaseException:
            writer.abort()
            raise

    @app.post("/v1/uploads/{uid}/prepare")
    def prepare_upload(uid: str, who: str = Depends(principal)):
        return reg.prepare(uid, who)

    @app.post("/v1/uploads/{uid}/commit")
    def commit_upload(uid: str, who: str = Depends(principal)):
        return reg.commit(uid, who)

    @app.delete("/v1/uploads/{uid}")
    def abort_upload(uid: str, who: str = Depends(principal)):
        reg.abort(uid, who)
        return {"aborted": True}

    @app.delete("/v1/models/{name}")
    def remove_model(name: str, version: int | None = None, who: str = Depends(principal)):
        removed = reg.remove(who, name, version)
        rts.unload(name, removed)
        return {"removed": removed}

    @app.put("/v1/models/{name}/grants/{to}")
    def grant(name: str, to: str, who: str = Depends(principal)):
        reg.grant(who, name, to)
        return {"granted": to}

    @app.delete("/v1/models/{name}/grants/{to}")
    def revoke(name: str, to: str, who: str = Depends(principal)):
        return {"revoked": reg.revoke(who, name, to)}

    @app.get("/v1/models/{name}/runtime")
    def runtime_state(name: str, version: int | None = None, who: str = Depends(principal)):
        return rts.state(who, name, version)

    @app.post("/v1/models/{name}/runtime")
    def runtime_prepare(name: str, req: S.RuntimePrepare, who: str = Depends(principal)):
        return rts.prepare(who, name, req.version, req.runtime_id)

    @app.post("/v1/models/{name}/runtime/{rid}/link")
    def runtime_link(name: str, rid: str, req: S.RuntimeLink, who: str = Depends(principal)):
        return rts.link_and_load(who, name, req.version, rid, req.addresses)

    @app.put("/v1/models/{name}/runtime/{rid}/requests/{req_id}/vars/{var}")
    async def runtime_put(name: str, rid: str, req_id: str, var: str, version: int, request: Request, who: str = Depends(principal)):
        data = await body_bytes(request)
        await run_in_threadpool(rts.put_input, who, name, version, rid, req_id, var, data)
        return {"name": var, "bytes": len(data)}

    @app.post("/v1/models/{name}/programs/compile")
    def program_compile(name: str, req: S.ProgramRun, who: str = Depends(principal)):
        return rts.compile(who, name, req.version, req.program, req.params)

    @app.post("/v1/models/{name}/runtime/{rid}/requests/{req_id}/run")
    def runtime_run(name: str, rid: str, req_id: str, req: S.ProgramRun, who: str = Depends(principal)):
        return rts.run(who, name, req.version, rid, req_id, req.program, req.params)

    @app.get("/v1/models/{name}/runtime/{rid}/requests/{req_id}/vars/{var}")
    def runtime_get(name: str, rid: str, req_id: str, var: str, version: int, who: str = Depends(principal)):
        return Response(content=rts.get_output(who, name, version, rid, req_id, var), media_type="application/octet-stream")

    @app.delete("/v1/models/{name}/runtime/{rid}/requests/{req_id}")
    def runtime_end(name: str, rid: str, req_id: str, version: int, who: str = Depends(principal)):
        rts.end_request(who, name, version, rid, req_id)
        return {"ended": True}

    # ---------------------------------------------------------------- PSI

    psi = service.psi

    @app.post("/v1/psi/jobs", status_code=201)
    def psi_create(req: S.PsiCreate, who: str = Depends(principal)):
        return psi.create(who, req.job_id, req.rank, req.spec, req.input_path)

    @app.post("/v1/psi/jobs/{jid}/start")
    def psi_start(jid: str, req: S.PsiStart, who: str = Depends(principal)):
        return psi.start(who, jid, req.addresses, req.peer_rank)

    @app.get("/v1/psi/jobs/{jid}")
    def psi_status(jid: str, who: str = Depends(principal)):
        return psi.status(who, jid)

    @app.get("/v1/psi/jobs/{jid}/output")
    def psi_output(jid: str, who: str = Depends(principal)):
        from fastapi.responses import FileResponse

        return FileResponse(psi.output(who, jid), media_type="text/csv")

    @app.delete("/v1/psi/jobs/{jid}")
    def psi_delete(jid: str, who: str = Depends(principal)):
        psi.delete(who, jid)
        return {"deleted": True}

    @app.get("/v1/audit/head", response_model=S.AuditHead)
    def audit_head():
        # No principal: peers fetch it to cross-record heads; it shows a row count and a hash, signed.
        return service.witness.head_view()

    @app.get("/v1/audit", response_model=list[S.AuditRow])
    def audit_tail(n: int = 50, _who: str = Depends(principal)):
        return service.audit.tail(max(1, min(n, 1000)))

    return app
