"""``GET /v1/models`` and ``GET /v1/models/{id}`` (ids hold a ``/``: ``<owner>/<name>``)."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter

from .. import errors as E
from .errors import from_misuan, model_not_found
from .provider import BackendProvider


def router(provider: BackendProvider, retry_after_s: int) -> APIRouter:
    r = APIRouter()

    async def cards():
        try:
            return await asyncio.to_thread(provider.models)
        except E.MisuanError as exc:
            raise from_misuan(exc, started=False, retry_after=retry_after_s) from None

    @r.get("/v1/models")
    async def list_models() -> dict:
        return {"object": "list", "data": [c.to_openai() for c in await cards()]}

    @r.get("/v1/models/{model_id:path}")
    async def get_model(model_id: str) -> dict:
        for c in await cards():
            if c.id == model_id:
                return c.to_openai()
        raise model_not_found(model_id)

    return r
