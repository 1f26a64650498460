"""The query API: ``create_app(settings, routers, observers)``. The app `esrag serve` runs is
composed above this package, in server/app.py."""

from query.api.app import create_app

__all__ = ["create_app"]
