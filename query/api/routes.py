"""Routers of the query API: search, ask (JSON or server-sent events), documents, health."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi.responses import JSONResponse, StreamingResponse
from starlette.concurrency import run_in_threadpool

from esrag.errors import EsragError
from esrag.settings import Settings
from query.api.schemas import AskRequest, AskResponse, DocumentResponse, SearchRequest, SearchResponse
from query.generation import AskEvent, ask_stream
from query.retrieval import document_page, retrieve


def get_settings(request: Request) -> Settings:
    """The app's settings."""
    return request.app.state.settings


def get_client(request: Request) -> Any:
    """The app's Elasticsearch client."""
    return request.app.state.es


SettingsDep = Annotated[Settings, Depends(get_settings)]
ClientDep = Annotated[Any, Depends(get_client)]

search_router = APIRouter(prefix="/v1", tags=["query"])
health_router = APIRouter(tags=["health"])


@search_router.post("/search", response_model=SearchResponse)
def search(body: SearchRequest, request: Request, settings: SettingsDep, client: ClientDep) -> dict:
    """Ranked chunks for a query (bm25, dense or hybrid), filtered, optionally reranked."""
    request.state.mode = body.mode
    if body.k > settings.search_request_max:
        raise HTTPException(status_code=422, detail=[{
            "loc": ["body", "k"], "type": "less_than_equal",
            "msg": f"k is at most {settings.search_request_max} (ESRAG_SEARCH_REQUEST_MAX)"}])
    check_rerank(settings, body.k, body.rerank)
    found = retrieve(settings, body.query, mode=body.mode, k=body.k, filters=body.filters or None,
                     rerank=body.rerank, client=client)
    return {"hits": [h.to_dict() for h in found.hits], "mode": body.mode, "timings_ms": found.timings_ms,
            "rerank_source": found.rerank_source}


def _sse(event: str, data: dict[str, Any]) -> str:
    return f"event: {event}\ndata: {json.dumps(data)}\n\n"


def _event_stream(first: AskEvent, rest: Iterator[AskEvent], include_reasoning: bool) -> Iterator[str]:
    try:
        yield _event_text(first, include_reasoning)
        for event in rest:
            yield _event_text(event, include_reasoning)
    except EsragError as exc:
        yield _sse("error", {"detail": str(exc)})


def _event_text(event: AskEvent, include_reasoning: bool) -> str:
    if event.kind == "token":
        return _sse("token", {"text": event.text})
    assert event.answer is not None
    return _sse("done", event.answer.to_dict(include_reasoning=include_reasoning))


@search_router.post(
    "/ask", response_model=AskResponse,
    responses={200: {"content": {"text/event-stream": {}},
                     "description": "JSON, or server-sent events (token..., done) when streaming"}},
)
async def ask(body: AskRequest, request: Request, settings: SettingsDep, client: ClientDep) -> Any:
    """An answer with numbered citations; streamed as server-sent events on request."""
    request.state.mode = body.mode
    check_rerank(settings, body.k, body.rerank)
    events = ask_stream(settings, body.question, mode=body.mode, k=body.k, filters=body.filters or None,
                        rerank=body.rerank, reasoning=body.reasoning, client=client)
    # Retrieval runs before the first event: its errors still become proper status codes.
    first: AskEvent = await run_in_threadpool(next, events)
    streaming = body.stream or "text/event-stream" in request.headers.get("accept", "")
    if streaming:
        return StreamingResponse(_event_stream(first, events, body.include_reasoning),
                                 media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})

    def finish() -> dict:
        for event in [first, *events]:
            if event.kind == "done" and event.answer is not None:
                return event.answer.to_dict(include_reasoning=body.include_reasoning)
        raise EsragError("generation ended without an answer")

    return JSONResponse(await run_in_threadpool(finish))


def check_rerank(settings: Settings, k: int, rerank: bool | None) -> None:
    """422 when a request would have more passages reranked than ESRAG_RERANK_REQUEST_MAX."""
    if (settings.rerank is True if rerank is None else rerank) and k > settings.rerank_request_max:
        raise HTTPException(status_code=422, detail=[{
            "loc": ["body", "k"], "type": "value_error",
            "msg": f"k is at most {settings.rerank_request_max} with rerank (ESRAG_RERANK_REQUEST_MAX)"}])


@search_router.get("/documents/{doc_id:path}", response_model=DocumentResponse)
def document(
    doc_id: str, settings: SettingsDep, client: ClientDep,
    after: Annotated[int, Query(ge=-1, le=2**31 - 1, description="chunk_no the previous page ended at")] = -1,
    limit: Annotated[int | None, Query(
        ge=1, description="chunks per page (at most ESRAG_DOCUMENTS_MAX_PAGE)")] = None,
) -> dict:
    """A document's chunks in order, one page at a time (``next_after`` fetches the next page)."""
    size = settings.documents_max_page if limit is None else limit
    if size > settings.documents_max_page:
        raise HTTPException(status_code=422, detail=[{
            "loc": ["query", "limit"], "type": "value_error",
            "msg": f"limit is at most {settings.documents_max_page} (ESRAG_DOCUMENTS_MAX_PAGE)"}])
    chunks, next_after = document_page(settings, doc_id, after=after, limit=size, client=client)
    if not chunks and after < 0:
        raise HTTPException(status_code=404, detail=f"no document {doc_id!r}")
    return {"doc_id": doc_id, "chunks": [c.to_dict() for c in chunks], "next_after": next_after}


@health_router.get("/healthz")
def healthz() -> dict:
    """The process is up."""
    return {"status": "ok"}


@health_router.get("/readyz")
def readyz(settings: SettingsDep, client: ClientDep) -> JSONResponse:
    """Elasticsearch and Redis answer (503 with the failing service otherwise)."""
    checks: dict[str, str] = {}
    try:
        health = client.options(request_timeout=2, max_retries=0).cluster.health()
        checks["elasticsearch"] = str(health["status"])
    except Exception as exc:  # any failure means not ready
        checks["elasticsearch"] = f"unavailable at {settings.safe_es_url} ({type(exc).__name__})"
    try:
        import redis

        conn = redis.Redis.from_url(settings.redis_url, socket_timeout=2, socket_connect_timeout=2)
        conn.ping()
        conn.close()
        checks["redis"] = "ok"
    except Exception as exc:
        checks["redis"] = f"unavailable at {settings.safe_redis_url} ({type(exc).__name__})"
    ready = checks["elasticsearch"] in ("green", "yellow") and checks["redis"] == "ok"
    return JSONResponse({"ready": ready, "checks": checks}, status_code=200 if ready else 503)
