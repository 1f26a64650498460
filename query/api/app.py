"""The FastAPI app factory of the query API."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from esrag.errors import ConfigError, EsragError, ModelMismatch, ServiceUnavailable
from esrag.es import make_client
from esrag.settings import Settings
from query.api.metrics import Metrics
from query.api.routes import health_router, search_router
from query.api.security import require_api_key
from query.filters import FilterError
from query.retrieval import IndexMissing

# Routers behind API-key auth. Other packages' routers (e.g. ingest jobs) are passed to
# create_app(extra_routers=...) and get the same auth.
PROTECTED_ROUTERS: list[APIRouter] = [search_router]

STATUS_OF: list[tuple[type[EsragError], int]] = [
    (ServiceUnavailable, 503),
    (ModelMismatch, 409),
    (IndexMissing, 404),
    (FilterError, 422),
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
    )
    app.state.settings = settings
    app.state.es = make_client(settings)
    metrics = Metrics()
    app.state.metrics = metrics
    app.middleware("http")(metrics.middleware)

    auth = [Depends(require_api_key)]
    for router in [*PROTECTED_ROUTERS, *extra_routers]:
        app.include_router(router, dependencies=auth)
    app.include_router(health_router)

    @app.get("/metrics", dependencies=auth, tags=["health"], response_class=Response)
    def prometheus() -> Response:
        """Prometheus metrics (request counts, latency histograms per route and mode)."""
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    @app.exception_handler(EsragError)
    async def _esrag_error(request: Request, exc: EsragError) -> JSONResponse:
        status = next(code for cls, code in STATUS_OF if isinstance(exc, cls))
        return JSONResponse({"detail": str(exc)}, status_code=status)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [{"loc": list(e.get("loc", ())), "msg": e.get("msg", "")} for e in exc.errors()]
        return JSONResponse({"detail": errors}, status_code=422)

    return app
