"""PSI on a node: its routes and its job manager (no node programs: libpsi runs
in a worker process per job, over a brpc link of its own)."""

from __future__ import annotations

from ..node.capability import NodeCapability, NodeContext
from .datasets import DatasetRegistry
from .jobs import PsiJobs
from .routes import router


def make_jobs(ctx: NodeContext) -> PsiJobs:
    """The node's PSI jobs, with the registry of their inputs (``.datasets``)."""
    datasets = DatasetRegistry(ctx.cfg.data_dirs, ctx.db, ctx.audit)
    return PsiJobs(ctx.cfg, ctx.sessions, ctx.audit, datasets)


CAPABILITY = NodeCapability(name="psi", router=router, jobs=make_jobs)
