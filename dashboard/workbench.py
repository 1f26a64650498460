"""The search workbench at ``/dashboard/search``: every retrieval mode side by side, the streamed
answer with its citations, the cited passage inside its document, and relevance judgments.

Any key with the read role opens it; its routes are mounted behind ``require_role("read")``,
which binds the key's tenant filters to every query they make (query/scope.py), so a scoped
key sees only its own documents here as in /v1/search. Judgments are shared by everyone who
tunes the index (they hold queries and document ids of every tenant): admin only. The query
side is imported inside the routes, so mounting the dashboard loads no model.
"""

from __future__ import annotations

import html
import json
from collections.abc import Iterator
from typing import Any

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response, StreamingResponse
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from dashboard.auth import require_role
from dashboard.router import _asset, keyed_page
from esrag.settings import Settings

MAX_QUERY = 2000


class CompareRequest(BaseModel):
    """One workbench query."""

    query: str = Field(min_length=1, max_length=MAX_QUERY)
    k: int = Field(10, ge=1, le=100)
    filters: dict[str, str] = Field(default_factory=dict)
    rerank: bool = True


class JudgmentRequest(BaseModel):
    """A user's mark on one hit of one query."""

    query: str = Field(min_length=1, max_length=MAX_QUERY)
    chunk_id: str = Field(min_length=1, max_length=1000)
    doc_id: str = Field(min_length=1, max_length=1000)
    relevance: int = Field(ge=0, le=3)


class AskRequest(BaseModel):
    """The workbench's answer request."""

    question: str = Field(min_length=1, max_length=MAX_QUERY)
    k: int | None = Field(None, ge=1, le=50)
    filters: dict[str, str] = Field(default_factory=dict)
    rerank: bool | None = None


def render_page(settings: Settings, judgments: bool = True) -> str:
    """The workbench page with its CSS and script inlined; ``judgments``: show the marking buttons
    (admin keys, or no keys configured)."""
    config = json.dumps({"index": settings.index, "judgments": judgments})
    return (_asset("search.html")
            .replace("/*CSS*/", _asset("dashboard.css") + _asset("search.css"))
            .replace("/*JS*/", _asset("search.js"))
            .replace("{{CONFIG}}", html.escape(config, quote=True)))


def _sse(event: str, data: dict[str, Any]) -> str:
    return f"event: {event}\ndata: {json.dumps(data)}\n\n"


def make_workbench_router(settings: Settings) -> APIRouter:
    """Routes of the search workbench: read keys (scoped by their filters); judgments admin keys."""
    auth = require_role("read", settings)
    admin = require_role("admin", settings)
    router = APIRouter(tags=["dashboard"])

    @router.get("/dashboard/search", response_class=HTMLResponse, include_in_schema=False)
    def page(request: Request, key: str | None = None) -> Response:
        return keyed_page(settings, request, key, "read",
                          lambda principal: render_page(settings, principal is not None
                                                        and principal.allows("admin")))

    @router.post("/dashboard/api/search/compare", dependencies=[Depends(auth)])
    def compare(body: CompareRequest, request: Request) -> JSONResponse:
        """BM25, dense, hybrid and hybrid+rerank for one query, with per-leg scores and timings."""
        from query.api.routes import check_rerank
        from query.explain import compare as run_compare

        check_rerank(settings, body.k, body.rerank)
        out = run_compare(settings, body.query, k=body.k, filters=body.filters or None,
                          rerank=body.rerank, client=request.app.state.es)
        return JSONResponse(out, headers={"Cache-Control": "no-store"})

    @router.post("/dashboard/api/search/ask", dependencies=[Depends(auth)], response_class=StreamingResponse,
                 responses={200: {"content": {"text/event-stream": {}},
                                  "description": "server-sent events: token..., then done (or error)"}})
    async def ask(body: AskRequest, request: Request) -> StreamingResponse:
        """The answer as server-sent events: ``token`` pieces, then ``done`` with citations."""
        from esrag.errors import EsragError
        from query.api.routes import check_rerank
        from query.generation import ask_stream

        check_rerank(settings, body.k or settings.ask_passages, body.rerank)

        events = ask_stream(settings, body.question, k=body.k, filters=body.filters or None,
                            rerank=body.rerank, client=request.app.state.es)
        first = await run_in_threadpool(next, events)  # retrieval errors become status codes

        def stream() -> Iterator[str]:
            try:
                for event in _chain(first, events):
                    if event.kind == "token":
                        yield _sse("token", {"text": event.text})
                    elif event.answer is not None:
                        yield _sse("done", event.answer.to_dict())
            except EsragError as exc:
                yield _sse("error", {"detail": str(exc)})

        return StreamingResponse(stream(), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})

    @router.get("/dashboard/api/search/document", dependencies=[Depends(auth)])
    def document(doc_id: str, request: Request) -> JSONResponse:
        """One document's text (rebuilt from its chunks) and its chunks' offsets."""
        from query.documents import document_view
        from query.retrieval import document_chunks

        chunks = document_chunks(settings, doc_id, client=request.app.state.es)
        if not chunks:
            raise HTTPException(status_code=404, detail=f"no document {doc_id!r}")
        first = chunks[0]
        return JSONResponse({"doc_id": doc_id, "source": first.source, "title": first.title,
                             **document_view(chunks)})

    @router.get("/dashboard/api/search/tuning", dependencies=[Depends(auth)])
    def tuning(request: Request) -> JSONResponse:
        """The fusion and dense weight hybrid search uses on the index, and the tuned values if any."""
        from query.retrieval import resolve_index
        from query.tuning import TUNED_KEY, effective_fusion

        index, meta = resolve_index(request.app.state.es, settings)
        return JSONResponse({"alias": settings.index, "index": index, **effective_fusion(settings, meta),
                             "tuned": meta.get(TUNED_KEY)}, headers={"Cache-Control": "no-store"})

    @router.post("/dashboard/api/judgments", dependencies=[Depends(admin)])
    def judge(body: JudgmentRequest, request: Request) -> dict[str, Any]:
        """Mark one hit of one query relevant (1..3) or not (0); marking again overwrites."""
        from query.judgments import put_judgment

        return put_judgment(request.app.state.es, settings.index, body.query, body.chunk_id, body.doc_id,
                            body.relevance)

    @router.get("/dashboard/api/judgments", dependencies=[Depends(admin)])
    def judgments(request: Request, query: str | None = None) -> JSONResponse:
        """The index's judgments (of one query when given)."""
        from query.judgments import list_judgments

        rows = list_judgments(request.app.state.es, settings.index, query)
        return JSONResponse({"alias": settings.index, "judgments": rows},
                            headers={"Cache-Control": "no-store"})

    return router


def _chain(first: Any, rest: Iterator[Any]) -> Iterator[Any]:
    yield first
    yield from rest
