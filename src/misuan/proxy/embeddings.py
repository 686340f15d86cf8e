"""``POST /v1/embeddings`` with the edge embedder (computed here: no node sees the text)."""

from __future__ import annotations

import asyncio
import base64

import numpy as np
from fastapi import APIRouter, Request

from .. import errors as E
from .errors import bad_request, from_misuan, model_not_found, unsupported
from .openai_schema import EmbeddingRequest, parse_body
from .provider import BackendProvider


def router(provider: BackendProvider, retry_after_s: int) -> APIRouter:
    r = APIRouter()

    @r.post("/v1/embeddings")
    async def embeddings(request: Request) -> dict:
        req = parse_body(await request.body(), EmbeddingRequest)
        texts = [req.input] if isinstance(req.input, str) else req.input
        if not texts or not all(isinstance(t, str) and t for t in texts):
            raise bad_request("input: non-empty strings (token arrays are not supported)", param="input")
        if req.encoding_format not in ("float", "base64"):
            raise unsupported("encoding_format", f"encoding_format {req.encoding_format!r}")
        try:
            embedder = await asyncio.to_thread(provider.embedder, req.model)
            vectors = np.asarray(await asyncio.to_thread(embedder.embed, texts), dtype=np.float32)
        except (E.NotFound, E.PermissionDenied):
            raise model_not_found(req.model) from None
        except E.MisuanError as exc:
            raise from_misuan(exc, started=False, retry_after=retry_after_s) from None
        if req.dimensions not in (None, vectors.shape[1]):
            raise unsupported("dimensions", f"dimensions other than {vectors.shape[1]}")
        data = [{"object": "embedding", "index": i, "embedding": _encode(v, req.encoding_format)} for i, v in enumerate(vectors)]
        n = sum(len(t.split()) for t in texts)
        return {"object": "list", "data": data, "model": req.model, "usage": {"prompt_tokens": n, "total_tokens": n}}

    return r


def _encode(v: np.ndarray, fmt: str):
    if fmt == "base64":
        return base64.b64encode(np.ascontiguousarray(v, dtype="<f4").tobytes()).decode()
    return [float(x) for x in v]
