"""The HTTP routes of one asset kind: publish (staged uploads, two-phase commit),
list, show, remove, grant, revoke, and its resident runtimes and their requests.

One router per kind a capability registers, under ``/v1/<kind>s`` (``/v1/models``);
the handlers only parse and delegate to the kind's :class:`~.assets.AssetRegistry`
and :class:`~.runtimes.Runtimes`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any, Callable, Mapping

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from . import schemas as S
from .assets import AssetRegistry, check_asset_name
from .auth import BodyHash
from .runtimes import Runtimes

#: an asset version in a query string (bounded: SQLite integers are 64-bit)
Version = Annotated[int, Query(ge=1, le=(1 << 31) - 1)]
OptVersion = Annotated[int | None, Query(ge=1, le=(1 << 31) - 1)]


@dataclass(frozen=True)
class RouteDeps:
    """The app's request dependencies a router needs."""

    principal: Callable[..., Any]
    streaming_principal: Callable[..., Any]
    body_bytes: Callable[..., Any]


def asset_router(reg: AssetRegistry, rts: Runtimes, deps: RouteDeps) -> APIRouter:
    r = APIRouter()
    kind = reg.kind.name
    base = f"/v1/{kind}s"

    def ref(owner: str, name: str) -> str:
        """An asset is named ``<owner>/<name>``: each principal publishes under its own
        name, so a name taken by someone else is never an oracle of their assets."""
        return check_asset_name(f"{owner}/{name}", kind)

    @r.get(f"{base}")
    def list_models(who: str = Depends(deps.principal)):
        return reg.list(who)

    @r.get(f"{base}/{{owner}}/{{name}}")
    def show_model(version: OptVersion = None, who: str = Depends(deps.principal), name: str = Depends(ref)):
        return reg.show(who, name, version)

    @r.get(f"{base}/{{owner}}/{{name}}/tokenizer")
    def model_tokenizer(version: OptVersion = None, who: str = Depends(deps.principal), name: str = Depends(ref)):
        return Response(content=reg.tokenizer(who, name, version), media_type="application/json")

    @r.post(f"{base}/{{owner}}/{{name}}/uploads", status_code=201)
    def begin_upload(req: S.UploadCreate, who: str = Depends(deps.principal), name: str = Depends(ref)):
        uid = reg.begin_upload(who, name, req.version, req.kind, req.config, req.tokenizer, [t.model_dump() for t in req.tensors])
        return {"upload_id": uid}

    @r.delete(f"{base}/{{owner}}/{{name}}")
    def remove_model(version: OptVersion = None, who: str = Depends(deps.principal), name: str = Depends(ref)):
        removed = reg.remove(who, name, version)
        rts.unload(name, removed)
        return {"removed": removed}

    @r.put(f"{base}/{{owner}}/{{name}}/grants/{{to}}")
    def grant(to: str, scope: str | None = None, who: str = Depends(deps.principal), name: str = Depends(ref)):
        reg.grant(who, name, to, scope)
        return {"granted": to, "scope": scope or "all"}

    @r.delete(f"{base}/{{owner}}/{{name}}/grants/{{to}}")
    def revoke(to: str, who: str = Depends(deps.principal), name: str = Depends(ref)):
        return {"revoked": reg.revoke(who, name, to)}

    @r.get(f"{base}/{{owner}}/{{name}}/runtime")
    def runtime_state(version: OptVersion = None, who: str = Depends(deps.principal), name: str = Depends(ref)):
        return rts.state(who, name, version)

    @r.post(f"{base}/{{owner}}/{{name}}/runtime")
    def runtime_prepare(req: S.RuntimePrepare, who: str = Depends(deps.principal), name: str = Depends(ref)):
        return rts.prepare(who, name, req.version, req.runtime_id)

    @r.post(f"{base}/{{owner}}/{{name}}/runtime/{{rid}}/link")
    def runtime_link(rid: str, req: S.RuntimeLink, who: str = Depends(deps.principal), name: str = Depends(ref)):
        return rts.link_and_load(who, name, req.version, rid, req.addresses)

    @r.put(f"{base}/{{owner}}/{{name}}/runtime/{{rid}}/requests/{{req_id}}/vars/{{var}}")
    async def runtime_put(
        rid: str, req_id: str, var: str, version: Version, request: Request, who: str = Depends(deps.principal), name: str = Depends(ref)
    ):
        data = await deps.body_bytes(request)
        await run_in_threadpool(rts.put_input, who, name, version, rid, req_id, var, data)
        return {"name": var, "bytes": len(data)}

    @r.post(f"{base}/{{owner}}/{{name}}/programs/compile")
    def program_compile(req: S.ProgramRun, who: str = Depends(deps.principal), name: str = Depends(ref)):
        return rts.compile(who, name, req.version, req.program, req.params)

    @r.post(f"{base}/{{owner}}/{{name}}/runtime/{{rid}}/requests/{{req_id}}/run")
    def runtime_run(rid: str, req_id: str, req: S.ProgramRun, who: str = Depends(deps.principal), name: str = Depends(ref)):
        return rts.run(who, name, req.version, rid, req_id, req.program, req.params)

    @r.get(f"{base}/{{owner}}/{{name}}/runtime/{{rid}}/requests/{{req_id}}/vars/{{var}}")
    def runtime_get(rid: str, req_id: str, var: str, version: Version, who: str = Depends(deps.principal), name: str = Depends(ref)):
        return Response(content=rts.get_output(who, name, version, rid, req_id, var), media_type="application/octet-stream")

    @r.delete(f"{base}/{{owner}}/{{name}}/runtime/{{rid}}/requests/{{req_id}}")
    def runtime_end(rid: str, req_id: str, version: Version, who: str = Depends(deps.principal), name: str = Depends(ref)):
        rts.end_request(who, name, version, rid, req_id)
        return {"ended": True}

    return r


def uploads_router(registries: Mapping[str, AssetRegistry], deps: RouteDeps) -> APIRouter:
    """The staged-upload routes, shared by every kind (an upload id knows its kind)."""
    r = APIRouter()
    first = next(iter(registries.values()))

    def of(uid: str) -> AssetRegistry:
        # an unknown id goes to any registry, which answers it like every other unknown upload
        return registries.get(first.upload_kind(uid) or "", first)

    @r.put("/v1/uploads/{uid}/tensors/{tensor}")
    async def put_tensor(uid: str, tensor: str, request: Request, signed: tuple[str, BodyHash] = Depends(deps.streaming_principal)):
        who, body_hash = signed
        reg = of(uid)
        writer, head, n = reg.tensor_writer(uid, who, tensor)

        def write(data: bytes) -> None:
            body_hash.update(data)
            writer.update(data)

        try:
            buf = bytearray()
            async for chunk in request.stream():
                head.feed(chunk)
                buf += chunk
                if len(buf) >= 8 << 20:
                    await run_in_threadpool(write, bytes(buf))
                    buf.clear()
            if buf:
                await run_in_threadpool(write, bytes(buf))
            body_hash.check()  # before anything is registered
            return await run_in_threadpool(reg.finish_tensor, uid, who, tensor, writer, head, n)
        except BaseException:
            writer.abort()
            raise

    @r.post("/v1/uploads/{uid}/prepare")
    def prepare_upload(uid: str, who: str = Depends(deps.principal)):
        return of(uid).prepare(uid, who)

    @r.post("/v1/uploads/{uid}/commit")
    def commit_upload(uid: str, who: str = Depends(deps.principal)):
        return of(uid).commit(uid, who)

    @r.delete("/v1/uploads/{uid}")
    def abort_upload(uid: str, who: str = Depends(deps.principal)):
        of(uid).abort(uid, who)
        return {"aborted": True}

    return r
