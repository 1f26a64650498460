"""API-key access to the dashboard: the API's keys, or a cookie the page sets from one.

A request is let in with a key of ``settings.api_keys`` in the ``X-API-Key`` header or as
``Authorization: Bearer <key>``, or with the dashboard cookie. ``/dashboard?key=<key>``
sets that cookie (HttpOnly, SameSite=Strict, a hash of the key rather than the key) so
the page's own fetch calls (and the API's /docs) are authorised. Cookie-authorised POSTs must also carry the
``X-Dashboard`` header, which a cross-site form cannot send. With no keys configured the
dashboard is open, like the API (a local, loopback-only setup).
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable

from fastapi import HTTPException, Request

from esrag.settings import Settings

COOKIE = "esrag_dashboard"
CSRF_HEADER = "X-Dashboard"


def cookie_token(key: str) -> str:
    """The cookie value that stands for ``key``."""
    return hashlib.sha256(f"esrag-dashboard:{key}".encode()).hexdigest()


def valid_key(settings: Settings, presented: str | None) -> bool:
    """True when ``presented`` is one of the configured API keys (constant-time compare)."""
    if not presented:
        return False
    return any(hmac.compare_digest(presented.encode(), k.encode()) for k in settings.api_keys)


def _valid_cookie(settings: Settings, value: str | None) -> bool:
    if not value:
        return False
    return any(hmac.compare_digest(value.encode(), cookie_token(k).encode()) for k in settings.api_keys)


def header_key(request: Request) -> str | None:
    """The key sent in ``X-API-Key`` or ``Authorization: Bearer``, if any."""
    key = request.headers.get("x-api-key")
    if key:
        return key
    auth = request.headers.get("authorization", "")
    scheme, _, value = auth.partition(" ")
    return value.strip() if scheme.lower() == "bearer" and value.strip() else None


def is_authorised(settings: Settings, request: Request) -> bool:
    """True when the request carries a valid key or dashboard cookie (or no keys are set)."""
    if not settings.api_keys:
        return True
    if valid_key(settings, header_key(request)):
        return True
    if not _valid_cookie(settings, request.cookies.get(COOKIE)):
        return False
    return request.method in ("GET", "HEAD") or request.headers.get(CSRF_HEADER) == "1"


def require_key(settings: Settings) -> Callable[[Request], None]:
    """A FastAPI dependency refusing unauthorised requests with 401."""

    def dependency(request: Request) -> None:
        if not is_authorised(settings, request):
            raise HTTPException(status_code=401, detail="missing or invalid API key",
                                headers={"WWW-Authenticate": "Bearer"})

    return dependency
