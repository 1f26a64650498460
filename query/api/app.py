"""The FastAPI app factory of the query API: its routes, auth, limits, metrics and errors.

It knows no other package: the server (server/app.py) passes the routers of workers/ and
dashboard/ in through ``routers`` and the dashboard's query log through ``observers``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Any

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from esrag.errors import ConfigError, EsragError, ModelMismatch, ServiceUnavailable
from esrag.es import make_client
from esrag.keys import Role
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
# are passed to create_app(routers=[(router, role)]): mounted behind require_role(role),
# or as they are when role is None (every route declares its own require_role).
# chat_router: /v1/chat, /v1/chat/completions, /v1/models.
PROTECTED_ROUTERS: list[APIRouter] = [search_router, chat_router]

# A router of another package and the role its routes need (None: it declares its own).
Mount = tuple[APIRouter, Role | None]
# Told of every search and ask after it is answered: ("search:<mode>" or "ask:<mode>", ms, ok).
# Runs in a worker thread, after the response; it must not raise.
QueryObserver = Callable[[str, float, bool], None]

STATUS_OF: list[tuple[type[EsragError], int]] = [
    (ServiceUnavailable, 503),
    (ModelMismatch, 409),
    (IndexMissing, 404),
    (FilterError, 422),
    (ScopeError, 403),
    (ConfigError, 500),
    (EsragError, 400),
]


def create_app(settings: Settings, routers: Sequence[Mount] = (),
               observers: Sequence[QueryObserver] = ()) -> FastAPI:
    """The query API for ``settings``: /v1/search, /v1/ask, /v1/documents, chat, health, metrics
    and the schema, plus ``routers`` (each behind its role) and ``observers`` of every query."""
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

    read, admin = [Depends(require_role("read"))], [Depends(require_role("admin"))]
    for router in PROTECTED_ROUTERS:
        app.include_router(router, dependencies=read)
    for router, role in routers:
        app.include_router(router, dependencies=[Depends(require_role(role))] if role else [])
    app.include_router(health_router)
    if observers:
        _observe_queries(app, observers)

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


def _observe_queries(app: FastAPI, observers: Sequence[QueryObserver]) -> None:
    """Tell ``observers`` the mode, latency and outcome of each search and ask (fire and forget,
    in the default executor after the response, never failing a query)."""

    @app.middleware("http")
    async def _observe(request: Request, call_next: Any) -> Response:
        start = time.perf_counter()
        response = await call_next(request)
        mode = getattr(request.state, "mode", "")
        if mode:
            ms = (time.perf_counter() - start) * 1000
            route = "ask" if request.url.path.endswith("/ask") else "search"
            ok = response.status_code < 400
            loop = asyncio.get_running_loop()
            for observe in observers:
                loop.run_in_executor(None, observe, f"{route}:{mode}", ms, ok)
        return response
