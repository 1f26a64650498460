"""The dashboard's routes: the page, its JSON state, and the retry/cancel actions.

Mount with ``app.include_router(make_router(settings))``; paths are absolute
(``/dashboard``, ``/dashboard/api/...``).
"""

from __future__ import annotations

import html
import json
from collections.abc import Callable
from functools import lru_cache
from importlib.resources import files
from typing import Any

import redis
from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response

from dashboard.auth import COOKIE, cookie_token, identify_request, require_role
from dashboard.state import StateReader
from esrag.errors import EsragError, one_line
from esrag.keys import Principal, Role, identify, keyed
from esrag.settings import Settings
from workers.jobstore import JobStore


@lru_cache(maxsize=4)
def _asset(name: str) -> str:
    return files("dashboard").joinpath("static", name).read_text(encoding="utf-8")


def render_page(settings: Settings) -> str:
    """The dashboard page: static HTML shell with its CSS and script inlined."""
    config = json.dumps({"poll_ms": settings.dashboard_poll_ms, "index": settings.index,
                         "queue": settings.queue})
    return (_asset("index.html")
            .replace("/*CSS*/", _asset("dashboard.css"))
            .replace("/*JS*/", _asset("dashboard.js"))
            .replace("{{CONFIG}}", html.escape(config, quote=True)))


def unauthorised_page(principal: Principal | None = None, role: str = "admin") -> HTMLResponse:
    """The page shown to a browser without a valid key (401), or with a key below ``role`` (403)."""
    if principal is not None:
        body = ("<!doctype html><html lang=en><meta charset=utf-8><title>esrag dashboard: 403</title>"
                f"<h1>403: the key {html.escape(principal.name)!r} ({principal.role}) is not "
                f"{'an' if role == 'admin' else 'a'} {role} key</h1>")
        return HTMLResponse(body, status_code=403)
    body = ("<!doctype html><html lang=en><meta charset=utf-8><title>esrag dashboard: 401</title>"
            "<body style='font:15px system-ui,sans-serif;margin:3em;color:#222'>"
            "<h1>401: API key required</h1><p>Open <code>/dashboard?key=&lt;your API key&gt;</code> "
            "(an admin key: one of ESRAG_API_KEYS or an <code>esrag keys add --role admin</code> key), "
            "or send it as <code>X-API-Key</code>.</p></body></html>")
    return HTMLResponse(body, status_code=401, headers={"WWW-Authenticate": "Bearer"})


def keyed_page(settings: Settings, request: Request, key: str | None, role: Role,
               render: Callable[[Principal | None], str]) -> Response:
    """A dashboard page for callers with ``role``. ``?key=`` logs a browser in: a valid key sets
    the HttpOnly cookie and redirects to the page without the key in its address."""
    if key is not None and not keyed(settings):
        return RedirectResponse(request.url.path, status_code=303)
    if key is not None:
        principal = identify(settings, key)
        if principal is None or not principal.allows(role):
            return unauthorised_page(principal, role)
        response = RedirectResponse(request.url.path, status_code=303)
        response.set_cookie(COOKIE, cookie_token(key), httponly=True, samesite="strict",
                            path="/", secure=request.url.scheme == "https")  # /docs reads it too
        return response
    principal = identify_request(settings, request)
    if principal is None or not principal.allows(role):
        return unauthorised_page(principal, role)
    return HTMLResponse(render(principal), headers={"Cache-Control": "no-store"})


def make_router(settings: Settings) -> APIRouter:
    """Routes of the operations dashboard for ``settings``, for admin keys only."""
    reader = StateReader(settings)
    auth = require_role("admin", settings)
    router = APIRouter(tags=["dashboard"])

    @router.get("/dashboard", response_class=HTMLResponse, include_in_schema=False)
    def page(request: Request, key: str | None = None) -> Response:
        return keyed_page(settings, request, key, "admin", lambda _: render_page(settings))

    @router.get("/dashboard/api/state", dependencies=[Depends(auth)])
    def state() -> JSONResponse:
        """Jobs, workers and queues, Elasticsearch, queries and Redis; each section has ``up``."""
        return JSONResponse(reader.state(), headers={"Cache-Control": "no-store"})

    @router.post("/dashboard/api/jobs/{job_id}/retry", dependencies=[Depends(auth)])
    def retry(job_id: str) -> dict[str, Any]:
        """Re-enqueue the job's failed tasks and failed files."""
        from workers.submit import retry_failed

        _known(reader, job_id)
        try:
            requeued = retry_failed(job_id, settings)
        except EsragError as exc:
            raise HTTPException(status_code=409, detail=str(exc)) from None
        except Exception as exc:
            raise HTTPException(status_code=503, detail=one_line(exc)) from None
        return {"job": job_id, "requeued": requeued}

    @router.post("/dashboard/api/jobs/{job_id}/cancel", dependencies=[Depends(auth)])
    def cancel(job_id: str) -> dict[str, Any]:
        """Cancel the job: tasks not yet started are skipped."""
        _known(reader, job_id)
        try:
            canceled = JobStore(reader.redis).cancel(job_id)
        except redis.RedisError as exc:
            raise HTTPException(status_code=503, detail=one_line(exc)) from None
        return {"job": job_id, "canceled": canceled}

    router.reader = reader  # type: ignore[attr-defined]  # lets the app close it on shutdown
    return router


def _known(reader: StateReader, job_id: str) -> None:
    try:
        exists = JobStore(reader.redis).exists(job_id)
    except redis.RedisError as exc:
        raise HTTPException(status_code=503, detail=f"Redis is unavailable ({one_line(exc)})") from None
    if not exists:
        raise HTTPException(status_code=404, detail=f"no job {job_id}")
