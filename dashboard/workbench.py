"""The search workbench at ``/dashboard/search``: every retrieval mode side by side, the streamed
answer with its citations, the cited passage inside its document, and relevance judgments.

Same keys as the dashboard (``require_key``). The query side is imported inside the routes,
so mounting the dashboard loads no model.
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

from dashboard.auth import is_authorised, require_key
from dashboard.router import _asset, unauthorised_page
from esrag.settings import Settings

MAX_QUERY = 2000


class CompareRequest(BaseModel):
    """One workbench query."""

    query: str = Field(min_length=1, max_length=MAX_QUERY)
    k: int = Field(10, ge=1, le=100)
    filters: dict[str, str] = Field(default_factory=dict)
    rerank: bool = True


class AskRequest(BaseModel):
    """The workbench's answer request."""

    question: str = Field(min_length=1, max_length=MAX_QUERY)
    k: int | None = Field(None, ge=1, le=50)
    filters: dict[str, str] = Field(default_factory=dict)
    rerank: bool | None = None


def render_page(settings: Settings) -> str:
    """The workbench page with its CSS and script inlined."""
    config = json.dumps({"index": settings.index})
    return (_asset("search.html")
            .replace("/*CSS*/", _asset("dashboard.css") + _asset("search.css"))
            .replace("/*JS*/", _asset("search.js"))
            .replace("{{CONFIG}}", html.escape(config, quote=True)))


def document_view(chunks: list[Any]) -> dict[str, Any]:
    """A document's text rebuilt from its chunks (each stored at its character offsets).

    Chunks may overlap; each one is written at ``start``, so the text between offsets is the
    document's own. A gap no chunk covers (whitespace the chunker dropped) is filled with spaces.
    """
    length = max((c.end for c in chunks), default=0)
    buf = [" "] * length
    for c in chunks:
        span = c.text[: max(0, c.end - c.start)]
        buf[c.start:c.start + len(span)] = list(span)
    return {"text": "".join(buf)[:length],
            "chunks": [{"chunk_id": c.chunk_id, "start": c.start, "end": c.end} for c in chunks]}


def _sse(event: str, data: dict[str, Any]) -> str:
    return f"event: {event}\ndata: {json.dumps(data)}\n\n"


def make_workbench_router(settings: Settings) -> APIRouter:
    """Routes of the search workbench, behind the dashboard's keys."""
    auth = require_key(settings)
    router = APIRouter(tags=["dashboard"])

    @router.get("/dashboard/search", response_class=HTMLResponse, include_in_schema=False)
    def page(request: Request) -> Response:
        if not is_authorised(settings, request):
            return unauthorised_page()
        return HTMLResponse(render_page(settings), headers={"Cache-Control": "no-store"})

    @router.post("/dashboard/api/search/compare", dependencies=[Depends(auth)])
    def compare(body: CompareRequest, request: Request) -> JSONResponse:
        """BM25, dense, hybrid and hybrid+rerank for one query, with per-leg scores and timings."""
        from query.explain import compare as run_compare

        out = run_compare(settings, body.query, k=body.k, filters=body.filters or None,
                          rerank=body.rerank, client=request.app.state.es)
        return JSONResponse(out, headers={"Cache-Control": "no-store"})

    @router.post("/dashboard/api/search/ask", dependencies=[Depends(auth)])
    async def ask(body: AskRequest, request: Request) -> StreamingResponse:
        """The answer as server-sent events: ``token`` pieces, then ``done`` with citations."""
        from esrag.errors import EsragError
        from query.generation import ask_stream

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
        from query.retrieval import document_chunks

        chunks = document_chunks(settings, doc_id, client=request.app.state.es)
        if not chunks:
            raise HTTPException(status_code=404, detail=f"no document {doc_id!r}")
        first = chunks[0]
        return JSONResponse({"doc_id": doc_id, "source": first.source, "title": first.title,
                             **document_view(chunks)})

    return router


def _chain(first: Any, rest: Iterator[Any]) -> Iterator[Any]:
    yield first
    yield from rest
