"""The FastAPI app factory of the query API."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from esrag.errors import ConfigError, EsragError, ModelMismatch, ServiceUnavailable
from esrag.es import make_client
from esrag.settings import Settings
from query.api import accesslog
from query.api.chat_routes import chat_router
from query.api.limits import BodySizeLimit, RateLimit, rate_per_minute
from query.api.metrics import Metrics
from query.api.routes import health_router, search_router
from query.api.security import LoopbackHostCheck, require_role
from query.filters import FilterError
from query.retrieval import IndexMissing
from query.scope import ScopeError

# Query routers: mounted behind require_role("read"), which also binds the caller's
# mandatory filters to every query they make (query/scope.py). Other packages' routers
# are passed to create_app(extra_routers=...) and need the admin role unless they
# declare their own require_role. chat_router: /v1/chat, /v1/chat/completions, /v1/models.
PROTECTED_ROUTERS: list[APIRouter] = [search_router, chat_router]

STATUS_OF: list[tuple[type[EsragError], int]] = [
    (ServiceUnavailable, 503),
    (ModelMismatch, 409),
    (IndexMissing, 404),
    (FilterError, 422),
    (ScopeError, 403),
    (ConfigError, 500),
    (EsragError, 400),
]


def create_app(settings: Settings, extra_routers: Sequence[APIRouter] = ()) -> FastAPI:
    """The query API for ``settings``: /v1/search, /v1/ask, /v1/documents, health and metrics."""
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        app.state.es.close()

    app = FastAPI(
        lifespan=lifespan,
        title="esrag",
        summary="Hybrid retrieval and cited answers over Elasticsearch",
        version="0.1.0",
        openapi_url=None,  # served below, behind the same keys as the routes it describes
        docs_url=None,
        redoc_url=None,
    )
    app.state.settings = settings
    accesslog.install()
    app.state.es = make_client(settings)
    metrics = Metrics()
    app.state.metrics = metrics
    app.middleware("http")(metrics.middleware)

    from workers.api import make_jobs_router

    read, admin = [Depends(require_role("read"))], [Depends(require_role("admin"))]
    for router in PROTECTED_ROUTERS:
        app.include_router(router, dependencies=read)
    app.include_router(make_jobs_router(settings), dependencies=[Depends(require_role("ingest"))])
    for router in extra_routers:
        app.include_router(router, dependencies=admin)
    app.include_router(health_router)
    _add_dashboard(app, settings)

    @app.get("/metrics", dependencies=admin, tags=["health"], response_class=Response)
    def prometheus() -> Response:
        """Prometheus metrics (request counts, latency histograms per route and mode)."""
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    _add_schema_routes(app, settings)

    @app.exception_handler(EsragError)
    async def _esrag_error(request: Request, exc: EsragError) -> JSONResponse:
        status = next(code for cls, code in STATUS_OF if isinstance(exc, cls))
        message = settings.redact(str(exc))
        if status == 422:  # the OpenAPI schema of a 422 is a list of validation errors
            error = {"loc": ["body", "filters"], "msg": message, "type": "value_error"}
            return JSONResponse({"detail": [error]}, status_code=422)
        return JSONResponse({"detail": message}, status_code=status)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [{"loc": list(e.get("loc", ())), "msg": e.get("msg", ""),
                   "type": e.get("type", "value_error")} for e in exc.errors()]
        return JSONResponse({"detail": errors}, status_code=422)

    per_minute = rate_per_minute(settings)
    if per_minute:
        app.add_middleware(RateLimit, per_minute=per_minute, burst=settings.rate_limit_burst,
                           settings=settings)
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_body_bytes)
    app.add_middleware(LoopbackHostCheck, settings=settings)  # outermost: before anything else runs
    return app


def _add_schema_routes(app: FastAPI, settings: Settings) -> None:
    """Serve /openapi.json and the Swagger UI at /docs to key holders only: the schema maps
    every route of the API. A browser that opened /dashboard?key=... carries the dashboard
    cookie, which is accepted here too."""
    from fastapi.openapi.docs import get_swagger_ui_html
    from fastapi.responses import HTMLResponse

    keyed = [Depends(require_role("read"))]

    @app.get("/openapi.json", dependencies=keyed, include_in_schema=False)
    def openapi() -> JSONResponse:
        return JSONResponse(app.openapi())

    @app.get("/docs", dependencies=keyed, include_in_schema=False)
    def swagger() -> HTMLResponse:
        return get_swagger_ui_html(openapi_url="/openapi.json", title="esrag API")


def _add_dashboard(app: FastAPI, settings: Settings) -> None:
    """Serve the operations dashboard (/dashboard, same keys; its own auth also takes its cookie)
    and log each search/ask latency for its Queries panel (fire and forget, never failing a query)."""
    import asyncio
    import time

    import redis

    from dashboard.router import make_router
    from dashboard.workbench import make_workbench_router
    from esrag import querylog

    app.include_router(make_router(settings))
    app.include_router(make_workbench_router(settings))
    log = redis.Redis.from_url(settings.redis_url, socket_timeout=0.5, socket_connect_timeout=0.5)

    @app.middleware("http")
    async def _querylog(request: Request, call_next: Any) -> Response:
        start = time.perf_counter()
        response = await call_next(request)
        mode = getattr(request.state, "mode", "")
        if mode:
            ms = (time.perf_counter() - start) * 1000
            route = "ask" if request.url.path.endswith("/ask") else "search"
            ok = response.status_code < 400
            asyncio.get_running_loop().run_in_executor(
                None, lambda: querylog.record(log, mode=f"{route}:{mode}", ms=ms, ok=ok))
        return response
