"""Serve a FastAPI app with uvicorn in a thread on a free loopback port (dashboard tests)."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import uvicorn
from fastapi import FastAPI

from dashboard.router import make_router
from esrag.settings import Settings


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def dashboard_app(settings: Settings) -> FastAPI:
    """The smallest app serving the dashboard router (what `esrag serve` includes)."""
    app = FastAPI()
    router = make_router(settings)
    app.include_router(router)
    app.state.dashboard_reader = router.reader
    return app


@contextmanager
def serve(app: FastAPI) -> Iterator[str]:
    """Run ``app`` until the block ends; yield its base URL."""
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning",
                                           lifespan="on"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.05)
    try:
        yield base
    finally:
        server.should_exit = True
        thread.join(timeout=15)
        reader = getattr(app.state, "dashboard_reader", None)
        if reader is not None:
            reader.close()


def get(url: str, **kwargs: object) -> httpx.Response:
    return httpx.get(url, timeout=30, follow_redirects=False, **kwargs)
