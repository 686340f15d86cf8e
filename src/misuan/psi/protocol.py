"""What the edge and the nodes agree on for PSI (standard library only): the routes
and the states of a job. The job's own terms are the public :class:`~.spec.PsiSpec`."""

from __future__ import annotations

JOBS = "/v1/psi/jobs"
DATASETS = "/v1/datasets"

#: a job's states on a node: reserved (link port held) -> running -> done | failed
RESERVED, RUNNING, DONE, FAILED = "reserved", "running", "done", "failed"
FINISHED: tuple[str, ...] = (DONE, FAILED)


def job_path(job_id: str, tail: str = "") -> str:
    return f"{JOBS}/{job_id}{tail}"


def dataset_path(name: str, tail: str = "") -> str:
    return f"{DATASETS}/{name}{tail}"
