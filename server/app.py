"""The app `esrag serve` runs: the query API with the ingest-jobs routes and the dashboard.

The one place that knows every package with routes. The query API (query/api/app.py) owns
auth, limits, metrics, errors and the schema routes; this module hands it the routers of the
other packages with the role each needs, and the dashboard's query log as an observer.
"""

from __future__ import annotations

from fastapi import FastAPI

from dashboard.querylog import query_recorder
from dashboard.router import make_router
from dashboard.workbench import make_workbench_router
from esrag.settings import Settings
from query.api.app import Mount
from query.api.app import create_app as query_app
from workers.api import make_jobs_router


def routers(settings: Settings) -> list[Mount]:
    """The routers of workers/ and dashboard/ and the role each is mounted behind."""
    return [
        (make_jobs_router(settings), "ingest"),  # /v1/ingest, /v1/jobs: ingest keys, scoped per key
        (make_router(settings), None),  # /dashboard: admin; its page also takes the cookie
        (make_workbench_router(settings), None),  # /dashboard/search: read; judgments: admin
    ]


def create_app(settings: Settings) -> FastAPI:
    """The whole HTTP API for ``settings``: query, chat, ingest jobs, dashboard, health, metrics, docs."""
    return query_app(settings, routers=routers(settings), observers=[query_recorder(settings)])
