"""PSI's routes on a node: jobs (``/v1/psi/jobs``) and their inputs (``/v1/datasets``).

Thin, like the core's: each route checks the signed principal and delegates to
:class:`~misuan.psi.jobs.PsiJobs` (and its :class:`~misuan.psi.datasets.DatasetRegistry`).
"""

from __future__ import annotations

from fastapi import APIRouter, Depends
from fastapi.responses import FileResponse

from ..node.capability import NodeContext
from . import protocol as P
from . import schemas as S
from .jobs import PsiJobs


def router(ctx: NodeContext) -> APIRouter:
    principal = ctx.principal
    psi: PsiJobs = ctx.jobs["psi"]  # type: ignore[assignment]
    r = APIRouter()
    _job_routes(r, psi, principal)
    _dataset_routes(r, psi, principal)
    return r


def _job_routes(r: APIRouter, psi: PsiJobs, principal) -> None:
    @r.post(P.JOBS, status_code=201)
    def psi_create(req: S.PsiCreate, who: str = Depends(principal)):
        return psi.create(who, req.job_id, req.rank, req.spec, req.dataset)

    @r.post(P.job_path("{jid}", "/start"))
    def psi_start(jid: str, req: S.PsiStart, who: str = Depends(principal)):
        return psi.start(who, jid, req.addresses, req.peer_rank)

    @r.get(P.job_path("{jid}"))
    def psi_status(jid: str, who: str = Depends(principal)):
        return psi.status(who, jid)

    @r.get(P.job_path("{jid}", "/output"))
    def psi_output(jid: str, who: str = Depends(principal)):
        return FileResponse(psi.output(who, jid), media_type="text/csv")

    @r.delete(P.job_path("{jid}"))
    def psi_delete(jid: str, who: str = Depends(principal)):
        psi.delete(who, jid)
        return {"deleted": True}


def _dataset_routes(r: APIRouter, psi: PsiJobs, principal) -> None:
    @r.post(P.DATASETS, status_code=201)
    def dataset_register(req: S.DatasetRegister, who: str = Depends(principal)):
        return psi.datasets.register(who, req.name, req.path, req.replace)

    @r.get(P.DATASETS)
    def dataset_list(who: str = Depends(principal)):
        return psi.datasets.list(who)

    @r.get(P.dataset_path("{name}"))
    def dataset_show(name: str, owner: str | None = None, who: str = Depends(principal)):
        return psi.datasets.show(who, name, owner)

    @r.delete(P.dataset_path("{name}"))
    def dataset_remove(name: str, who: str = Depends(principal)):
        psi.datasets.remove(who, name)
        return {"removed": True}

    @r.put(P.dataset_path("{name}", "/grants/{to}"))
    def dataset_grant(name: str, to: str, receive: bool = False, who: str = Depends(principal)):
        psi.datasets.grant(who, name, to, receive)
        return {"granted": to, "receive": receive}

    @r.delete(P.dataset_path("{name}", "/grants/{to}"))
    def dataset_revoke(name: str, to: str, who: str = Depends(principal)):
        return {"revoked": psi.datasets.revoke(who, name, to)}
