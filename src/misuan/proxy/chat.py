"""``POST /v1/chat/completions`` and ``POST /v1/completions`` over a ChatBackend."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from fastapi import APIRouter, Request
from starlette.responses import JSONResponse, Response, StreamingResponse

from .. import errors as E
from ..inference import ChatBackend, GenerationParams
from . import sse
from .errors import ApiError, bad_request, from_misuan, model_not_found
from .gate import Gate
from .generation import END, Generation
from .openai_schema import ChatRequest, CompletionRequest, chat_messages, parse_body, refuse_unsupported, stop_strings
from .provider import BackendProvider
from .responses import Shape
from .settings import ProxySettings


@dataclass(frozen=True)
class Deps:
    provider: BackendProvider
    settings: ProxySettings
    gate: Gate


def router(deps: Deps) -> APIRouter:
    r = APIRouter()

    @r.post("/v1/chat/completions")
    async def chat_completions(request: Request) -> Response:
        req = parse_body(await request.body(), ChatRequest)
        refuse_unsupported(req)
        messages = chat_messages(req.messages)
        max_tokens = req.max_completion_tokens if req.max_completion_tokens is not None else req.max_tokens
        param = "max_completion_tokens" if req.max_completion_tokens is not None else "max_tokens"
        return await answer(deps, request, req, messages, max_tokens, param, chat=True)

    @r.post("/v1/completions")
    async def completions(request: Request) -> Response:
        req = parse_body(await request.body(), CompletionRequest)
        refuse_unsupported(req)
        prompt = req.prompt if isinstance(req.prompt, str) else req.prompt[0]
        messages = [{"role": "user", "content": prompt}]  # the same engine: the prompt is one user turn
        return await answer(deps, request, req, messages, req.max_tokens, "max_tokens", chat=False)

    return r


async def answer(deps: Deps, request: Request, req, messages: list[dict], max_tokens: int | None, param: str, *, chat: bool) -> Response:
    backend = await _backend(deps, req.model, req.x_misuan_k)
    info = backend.model_info()
    params = _params(deps.settings, req, max_tokens, param, info.max_context, secure=info.mode == "mpc")
    shape = Shape(model=req.model, chat=chat, protocol=deps.provider.protocol() if info.mode == "mpc" else "plaintext")
    gen = Generation(backend, messages, params, deps.gate.enter(info.name))
    if req.stream:
        first = await gen.next(deps.settings.check_grace_s)  # the backend's input checks answer at once
        if isinstance(first, BaseException):
            raise from_misuan(first, started=gen.started and not isinstance(first, E.InvalidInput), retry_after=deps.settings.retry_after_s)
        include_usage = bool(req.stream_options and req.stream_options.include_usage)
        body = _stream(deps.settings, gen, shape, first, include_usage)
        return StreamingResponse(body, media_type="text/event-stream", headers={**sse.HEADERS, **shape.headers(None)})
    return await _whole(deps.settings, request, gen, shape)


async def _backend(deps: Deps, model: str, k: int | None) -> ChatBackend:
    try:
        return await asyncio.to_thread(deps.provider.backend, model, k=k)
    except (E.NotFound, E.PermissionDenied):
        raise model_not_found(model) from None
    except E.MisuanError as exc:
        raise from_misuan(exc, started=False, retry_after=deps.settings.retry_after_s) from None


def _params(settings: ProxySettings, req, max_tokens: int | None, param: str, context: int, secure: bool) -> GenerationParams:
    if max_tokens is None:
        max_tokens = max(1, min(settings.default_max_tokens, context // 4))
    elif max_tokens <= 0:
        raise bad_request(f"{param}: must be at least 1 (got {max_tokens})", param=param)
    elif max_tokens >= context:
        raise bad_request(f"{param}: {max_tokens} does not fit the model's context of {context} tokens", param=param)
    temperature = 0.0 if req.temperature is None else req.temperature
    if temperature < 0:
        raise bad_request(f"temperature: must be >= 0 (got {temperature})", param="temperature")
    top_p = 1.0 if req.top_p is None else req.top_p
    if secure and top_p != 1:
        raise bad_request("top_p: only 1 under MPC (nucleus sampling would need a secret sort); use temperature", param="top_p")
    params = GenerationParams(max_tokens=max_tokens, temperature=temperature, top_p=top_p, seed=req.seed, stop=stop_strings(req.stop))
    try:
        params.check(secure=secure)
    except E.InvalidInput as exc:
        raise from_misuan(exc, started=False, retry_after=settings.retry_after_s) from None
    return params


async def _whole(settings: ProxySettings, request: Request, gen: Generation, shape: Shape) -> Response:
    text, final = [], None
    try:
        while final is None:
            item = await gen.next(settings.keepalive_s)
            if item is None:
                if await request.is_disconnected():
                    gen.abandon()
                    return Response(status_code=499)
                continue
            if isinstance(item, BaseException):
                raise from_misuan(item, started=gen.started and not isinstance(item, E.InvalidInput), retry_after=settings.retry_after_s)
            if item is END:
                raise ApiError(500, "the backend ended without a final event", type="server_error", headers={"x-should-retry": "false"})
            if item.final:
                final = item
            else:
                text.append(item.text)
    finally:
        if not gen.finished:
            gen.abandon()
    body = shape.response("".join(text), final.finish_reason, final.usage)
    return JSONResponse(body, headers=shape.headers(final.usage))


async def _stream(settings: ProxySettings, gen: Generation, shape: Shape, first, include_usage: bool):
    """Role chunk at once, text deltas, the finish chunk, the usage chunk (when asked), [DONE];
    ``: keepalive`` while a step runs; an error frame on failure. A client that goes away
    (the generator is cancelled) cancels the generation."""
    try:
        yield sse.frame(shape.chunk(role=True)) if shape.chat else sse.KEEPALIVE
        item = first
        while True:
            if item is None:
                yield sse.KEEPALIVE
            elif isinstance(item, BaseException):
                yield sse.error_frame(from_misuan(item, started=True, retry_after=settings.retry_after_s).body())
                return
            elif item is END:
                yield sse.error_frame(ApiError(500, "the backend ended without a final event", type="server_error").body())
                return
            elif item.final:
                yield sse.frame(shape.chunk(finish_reason=item.finish_reason, usage=item.usage))
                if include_usage:
                    yield sse.frame(shape.usage_chunk(item.usage))
                yield sse.DONE
                return
            elif item.text:
                yield sse.frame(shape.chunk(item.text, usage=item.usage))
            item = await gen.next(settings.keepalive_s)
    finally:
        if not gen.finished:
            gen.abandon()
