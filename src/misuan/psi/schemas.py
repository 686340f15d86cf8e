"""Typed messages of PSI's node routes (pydantic; unknown fields are refused)."""

from __future__ import annotations

from pydantic import Field

from ..node.schemas import Strict

#: ``name`` (one's own dataset) or ``owner/name`` (another principal's, shared with you).
DATASET_REF = r"^([!-.0-~]{1,128}/)?[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"


class PsiCreate(Strict):
    job_id: str = Field(pattern=r"^[A-Za-z0-9_-]{8,64}$")
    rank: int = Field(ge=0, le=1)
    spec: dict
    dataset: str = Field(pattern=DATASET_REF)


class DatasetRegister(Strict):
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
    #: absolute, or relative to the caller's own directory ``<data_dir>/<principal>/``
    path: str = Field(min_length=1, max_length=4096)
    replace: bool = False


class PsiStart(Strict):
    addresses: list[str] = Field(min_length=2, max_length=2)
    peer_rank: int = Field(ge=0)
