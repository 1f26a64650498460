"""API-key authentication and the rule for servers without keys."""

from __future__ import annotations

import hmac
import ipaddress

from fastapi import Depends, HTTPException, Request, status
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

from esrag.errors import ConfigError
from esrag.settings import Settings

_header = APIKeyHeader(name="X-API-Key", auto_error=False)
_bearer = HTTPBearer(auto_error=False)


def is_loopback(host: str) -> bool:
    """True for localhost and 127.0.0.0/8 or ::1."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_bind(settings: Settings, host: str) -> None:
    """Refuse to serve without API keys on anything but loopback."""
    if not settings.api_keys and not is_loopback(host):
        raise ConfigError(
            f"refusing to serve on {host} without API keys; set ESRAG_API_KEYS or bind to 127.0.0.1"
        )


def require_api_key(
    request: Request,
    key: str | None = Depends(_header),
    bearer: HTTPAuthorizationCredentials | None = Depends(_bearer),
) -> None:
    """401 unless ``X-API-Key`` or ``Authorization: Bearer`` holds a configured key (none: open)."""
    keys: list[str] = request.app.state.settings.api_keys
    if not keys:
        return
    given = key or (bearer.credentials if bearer else None)
    if given and any(hmac.compare_digest(given.encode(), k.encode()) for k in keys):
        return
    raise HTTPException(
        status_code=status.HTTP_401_UNAUTHORIZED,
        detail="missing or invalid API key" if given is None else "invalid API key",
        headers={"WWW-Authenticate": "Bearer"},
    )
