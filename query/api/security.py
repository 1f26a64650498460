"""Who may call the API: keys, the dashboard cookie, roles, tenant scope, and keyless loopback.

The one module that reads API keys off requests (the dashboard, /docs and the rate limit
import it). Every protected router is mounted with ``Depends(require_role(role))``: it
identifies the caller (``X-API-Key``, ``Authorization: Bearer`` or the dashboard cookie),
refuses a bad key (401) or a role too small (403), stores the principal on
``request.state.principal`` and binds the key's mandatory filters to the request
(query/scope.py), so everything the route queries is scoped without the route doing
anything. A route that needs more (the index a body names, the owner of a job) reads
the principal with :func:`esrag.keys.principal_of`.

Keyless mode (no ESRAG_API_KEYS, no key file) is for a loopback-only server: every
caller is an admin, so :class:`LoopbackHostCheck` refuses any request whose Host header
is not a localhost name or loopback address (a DNS-rebinding page sends its own name).
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
from collections.abc import Awaitable, Callable, Mapping

from fastapi import HTTPException, Request

from esrag.errors import ConfigError
from esrag.keys import Principal, Role, identify, key_hash, keyed, stored_hashes
from esrag.settings import Settings
from query import scope
from query.api.asgi import ASGIApp, Receive, Scope, Send, reply

COOKIE = "esrag_dashboard"
CSRF_HEADER = "X-Dashboard"


def is_loopback(host: str) -> bool:
    """True for localhost (and ``*.localhost``) and 127.0.0.0/8 or ::1."""
    host = host.strip("[]").rstrip(".").lower()
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_bind(settings: Settings, host: str) -> None:
    """Refuse to serve without API keys on anything but loopback."""
    if not keyed(settings) and not is_loopback(host):
        raise ConfigError(
            f"refusing to serve on {host} without API keys; set ESRAG_API_KEYS, add keys with "
            "`esrag keys add`, or bind to 127.0.0.1"
        )


def presented_key(headers: Mapping[str, str]) -> str | None:
    """The key sent in ``X-API-Key`` or ``Authorization: Bearer``, if any."""
    key = headers.get("x-api-key")
    if key:
        return key
    scheme, _, value = headers.get("authorization", "").partition(" ")
    return value.strip() if scheme.lower() == "bearer" and value.strip() else None


def cookie_token(key: str) -> str:
    """The dashboard cookie value that stands for ``key`` (derived from its stored hash)."""
    return _token_of_hash(key_hash(key))


def _token_of_hash(digest: str) -> str:
    return hashlib.sha256(f"esrag-dashboard:{digest}".encode()).hexdigest()


def _cookie_principal(settings: Settings, value: str | None) -> Principal | None:
    if not value:
        return None
    found = None
    for digest, principal in stored_hashes(settings):
        if hmac.compare_digest(value.encode(), _token_of_hash(digest).encode()):
            found = principal
    return found


def identify_request(settings: Settings, request: Request) -> Principal | None:
    """The caller's principal from a key header or the dashboard cookie; None when not authorised.

    A cookie only authorises reads and POSTs that carry ``X-Dashboard: 1`` (which a
    cross-site form cannot send)."""
    presented = presented_key(request.headers)
    principal = identify(settings, presented)
    if principal is not None or presented:
        return principal
    principal = _cookie_principal(settings, request.cookies.get(COOKIE))
    if principal is None:
        return None
    if request.method in ("GET", "HEAD") or request.headers.get(CSRF_HEADER) == "1":
        return principal
    return None


def require_role(role: Role, settings: Settings | None = None) -> Callable[[Request], Awaitable[Principal]]:
    """A dependency: 401 without a valid key, 403 when its role is below ``role``; binds the
    key's filters to the request. Async on purpose: it runs in the request's own context,
    so the binding reaches the route and the threads it runs in. ``settings`` defaults to
    the app's."""

    async def dependency(request: Request) -> Principal:
        current = settings if settings is not None else request.app.state.settings
        principal = identify_request(current, request)
        if principal is None:
            given = presented_key(request.headers) is not None or COOKIE in request.cookies
            raise HTTPException(status_code=401,
                                detail="invalid API key" if given else "missing or invalid API key",
                                headers={"WWW-Authenticate": "Bearer"})
        if not principal.allows(role):
            raise HTTPException(status_code=403, detail=f"the API key {principal.name!r} ({principal.role}) "
                                                        f"may not use this route; it needs the {role} role")
        request.state.principal = principal
        scope.bind(principal.filters)
        return principal

    return dependency


class LoopbackHostCheck:
    """ASGI middleware: on a keyless server, 400 for a Host header that is not loopback."""

    def __init__(self, app: ASGIApp, settings: Settings):
        self.app = app
        self.settings = settings

    async def __call__(self, scope_: Scope, receive: Receive, send: Send) -> None:
        if scope_["type"] == "http" and not keyed(self.settings):
            host = _host_name(dict(scope_.get("headers", ())).get(b"host", b"").decode("latin-1"))
            if not is_loopback(host):
                await reply(send, 400, f"Host {host!r} is not a loopback name; without API keys the API "
                                       "answers only localhost, 127.0.0.1 and ::1")
                return
        await self.app(scope_, receive, send)


def _host_name(header: str) -> str:
    """The host part of a Host header (``[::1]:8000`` -> ``::1``, ``a:80`` -> ``a``)."""
    header = header.strip()
    if header.startswith("["):
        return header[1:header.find("]")] if "]" in header else header
    return header.rsplit(":", 1)[0] if header.count(":") == 1 else header
