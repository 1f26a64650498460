"""The dashboard's access: an admin key, or the cookie ``/dashboard?key=<key>`` sets.

Key and cookie parsing live in query/api/security.py, the one module that reads keys off
requests; this module only names what the dashboard uses of it. The cookie is HttpOnly,
SameSite=Strict and holds a digest of the key's stored hash, never the key; cookie-
authorised POSTs must also carry the ``X-Dashboard`` header, which a cross-site form
cannot send. With no keys configured the dashboard is open, like the API (a local,
loopback-only setup whose Host header is checked).
"""

from __future__ import annotations

from query.api.security import COOKIE, CSRF_HEADER, cookie_token, identify_request, require_role

__all__ = ["COOKIE", "CSRF_HEADER", "cookie_token", "identify_request", "require_role"]
