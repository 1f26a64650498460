"""Conversations over the documents: POST /v1/chat, and the OpenAI-compatible
POST /v1/chat/completions and GET /v1/models (any chat front end that speaks that API can use esrag).

Both answer through query.chat.chat_stream with ``filters`` from the request body, the same path
/v1/ask takes.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, StreamingResponse
from starlette.concurrency import run_in_threadpool

from esrag.errors import EsragError
from esrag.keys import principal_of
from esrag.settings import Settings
from query.api.chat_schemas import ChatRequest, ChatResponse, CompletionRequest
from query.api.routes import ClientDep, SettingsDep, _event_stream
from query.chat import ChatError, chat_stream, validate_messages
from query.generation import Answer, AskEvent

chat_router = APIRouter(prefix="/v1", tags=["chat"])
DEFAULT_MODEL = "default"
SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


def _final(first: AskEvent, rest: Iterator[AskEvent]) -> Answer:
    for event in [first, *rest]:
        if event.kind == "done" and event.answer is not None:
            return event.answer
    raise EsragError("generation ended without an answer")


@chat_router.post(
    "/chat", response_model=ChatResponse,
    responses={200: {"content": {"text/event-stream": {}},
                     "description": "JSON, or server-sent events (token..., done) when streaming"}},
)
async def chat(body: ChatRequest, request: Request, settings: SettingsDep, client: ClientDep) -> Any:
    """Answer the last user message; a follow-up is first rewritten into a standalone query
    (returned as ``query``)."""
    messages = [m.model_dump() for m in body.messages]
    events = chat_stream(settings, messages, mode=body.mode, k=body.k, filters=body.filters or None,
                         rerank=body.rerank, client=client)
    first: AskEvent = await run_in_threadpool(next, events)  # rewrite + retrieval errors -> status codes
    if body.stream or "text/event-stream" in request.headers.get("accept", ""):
        return StreamingResponse(_event_stream(first, events, False), media_type="text/event-stream",
                                 headers=SSE_HEADERS)
    answer = await run_in_threadpool(_final, first, events)
    return JSONResponse(answer.to_dict())


def esrag_aliases(client: Any) -> list[str]:
    """Aliases that point at an esrag index (one whose mapping carries ``_meta.esrag``)."""
    found = client.indices.get_alias(index="*", expand_wildcards="open")
    aliased = {name: sorted(info.get("aliases") or {}) for name, info in found.items() if info.get("aliases")}
    if not aliased:
        return []
    mappings = client.indices.get_mapping(index=",".join(sorted(aliased)))
    return sorted({a for name, names in aliased.items()
                   if "esrag" in (mappings.get(name, {}).get("mappings", {}).get("_meta") or {})
                   for a in names})


def _openai_error(status: int, message: str, param: str | None = None,
                  code: str | None = None) -> JSONResponse:
    return JSONResponse({"error": {"message": message, "type": "invalid_request_error", "param": param,
                                   "code": code}}, status_code=status)


@chat_router.get("/models")
def models(request: Request, settings: SettingsDep, client: ClientDep) -> dict:
    """The index aliases a chat client can name as ``model`` (``default`` is ESRAG_INDEX): the
    ones the caller's key may use."""
    from query.retrieval import unavailable

    try:
        aliases = esrag_aliases(client)
    except Exception as exc:  # ES down or refusing: 503 like every other route
        raise unavailable(settings, exc) from None
    principal = principal_of(request)
    ids = [DEFAULT_MODEL, *(a for a in aliases if a == settings.index
                            or principal.may_use_index(a, settings.index))]
    return {"object": "list",
            "data": [{"id": i, "object": "model", "created": 0, "owned_by": "esrag"} for i in ids]}


def _settings_for(settings: Settings, client: Any, model: str) -> Settings | None:
    if model in (DEFAULT_MODEL, settings.index):
        return settings
    if model not in esrag_aliases(client):
        return None
    return settings.model_copy(update={"index": model})


def _chunk(cid: str, created: int, model: str, delta: dict[str, Any], finish: str | None = None,
           **extra: Any) -> str:
    body = {"id": cid, "object": "chat.completion.chunk", "created": created, "model": model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}], **extra}
    return f"data: {json.dumps(body)}\n\n"


def _extra(answer: Answer) -> dict[str, Any]:
    """esrag's fields beside the OpenAI ones: the citation list and how the answer was checked."""
    d = answer.to_dict()
    return {"citations": d["citations"],
            "esrag": {k: d.get(k) for k in ("answer", "query", "rewrite", "removed_citations",
                                            "unsupported_citations", "attributed_citations",
                                            "faithfulness", "backend",
                                            "timings_ms")}}


@chat_router.post("/chat/completions")
async def chat_completions(body: CompletionRequest, request: Request, settings: SettingsDep,
                           client: ClientDep) -> Any:
    """OpenAI-compatible chat completion over the index ``model`` names: citations appear as [n]
    in the content and as the ``citations`` list beside ``choices``."""
    from query.retrieval import unavailable

    try:
        target = await run_in_threadpool(_settings_for, settings, client, body.model)
    except Exception as exc:
        raise unavailable(settings, exc) from None
    if target is None or (target is not settings
                          and not principal_of(request).may_use_index(target.index, settings.index)):
        # another alias than the server's own (which /v1/search serves to every read key) needs the
        # key's index pattern; a key limited to other indices hears what a missing alias gets
        return _openai_error(404, f"model {body.model!r} is not an esrag index alias; GET /v1/models lists "
                             "them", param="model", code="model_not_found")
    limit = body.max_completion_tokens or body.max_tokens
    if limit:
        target = target.model_copy(update={"llm_max_tokens": limit})
    messages = [{"role": m.role, "content": str(m.content)} for m in body.messages]
    try:
        validate_messages(messages, settings.chat_max_messages)
    except ChatError as exc:
        return _openai_error(400, str(exc), param="messages")
    events = chat_stream(target, messages, mode=body.mode, filters=body.filters or None, rerank=body.rerank,
                         client=client)
    first: AskEvent = await run_in_threadpool(next, events)
    cid, created = f"chatcmpl-{uuid.uuid4().hex}", int(time.time())
    if body.stream:
        return StreamingResponse(_completion_stream(cid, created, body.model, first, events),
                                 media_type="text/event-stream", headers=SSE_HEADERS)
    answer = await run_in_threadpool(_final, first, events)
    prompt = int(answer.timings_ms.get("prompt_tokens", 0))
    completion = int(answer.timings_ms.get("pieces", 0))
    return {"id": cid, "object": "chat.completion", "created": created, "model": body.model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": answer.answer},
                         "finish_reason": "stop"}],
            "usage": {"prompt_tokens": prompt, "completion_tokens": completion,
                      "total_tokens": prompt + completion},
            **_extra(answer)}


def _completion_stream(cid: str, created: int, model: str, first: AskEvent,
                       rest: Iterator[AskEvent]) -> Iterator[str]:
    """Chunks as the model writes; the last one carries finish_reason, the checked answer and citations.

    Streamed text is what the model wrote; the last chunk's ``esrag.answer`` is the text a client
    should keep: citations the check dropped are gone from it (``esrag.unsupported_citations``)
    and citations attributed to uncited sentences are in it (``esrag.attributed_citations``).
    """
    yield _chunk(cid, created, model, {"role": "assistant", "content": ""})
    try:
        for event in [first, *rest]:
            if event.kind == "token":
                yield _chunk(cid, created, model, {"content": event.text})
            elif event.answer is not None:
                yield _chunk(cid, created, model, {}, "stop", **_extra(event.answer))
    except EsragError as exc:
        yield f"data: {json.dumps({'error': {'message': str(exc), 'type': 'server_error'}})}\n\n"
    yield "data: [DONE]\n\n"
