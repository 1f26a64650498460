"""`esrag serve`: run the server (server/app.py) under uvicorn."""

from __future__ import annotations

from typing import Annotated

import typer

from esrag.clisettings import load_settings


def serve_cmd(
    host: Annotated[str | None, typer.Option(help="address to bind (default ESRAG_API_HOST)")] = None,
    port: Annotated[int | None, typer.Option(help="port (default ESRAG_API_PORT)")] = None,
    index: Annotated[str | None, typer.Option(
        "--index", help="index alias requests use unless they name one (default ESRAG_INDEX)")] = None,
) -> None:
    """Serve the query API (OpenAPI at /docs). Without API keys (ESRAG_API_KEYS or `esrag keys`)
    it binds to loopback only."""
    import uvicorn

    from query.api.security import check_bind
    from query.cli import _quiet_models
    from server.app import create_app

    _quiet_models()
    settings = load_settings(api_host=host, api_port=port, index=index)
    check_bind(settings, settings.api_host)
    uvicorn.run(create_app(settings), host=settings.api_host, port=settings.api_port, log_level="info")


def register(app: typer.Typer) -> None:
    """Add serve to ``app``."""
    app.command("serve")(serve_cmd)
