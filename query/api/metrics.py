"""Prometheus metrics: request counts and latency per route and retrieval mode."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

from fastapi import Request, Response
from prometheus_client import CollectorRegistry, Counter, Histogram

BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.15, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class Metrics:
    """A registry of the app's own (so several apps in one process do not clash)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter("esrag_http_requests", "HTTP requests", ["route", "method", "status", "mode"],
                                registry=self.registry)
        self.latency = Histogram("esrag_http_request_seconds", "HTTP request latency",
                                 ["route", "method", "mode"], buckets=BUCKETS, registry=self.registry)

    async def middleware(self, request: Request,
                         call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        """Time every request; label it with its route template (not the raw path) and mode."""
        start = time.perf_counter()
        status = 500
        try:
            response = await call_next(request)
            status = response.status_code
            return response
        finally:
            route = request.scope.get("route")
            path = getattr(route, "path", "unmatched")
            mode = getattr(request.state, "mode", "")
            self.requests.labels(path, request.method, str(status), mode).inc()
            self.latency.labels(path, request.method, mode).observe(time.perf_counter() - start)
