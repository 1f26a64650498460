"""The one redaction helper: credentials out of URLs, query strings, headers and messages.

Everything esrag shows or logs about its connections goes through :func:`redact`: the
dashboard state, `esrag status`/`esrag up`, `/readyz`, API error bodies, the access log.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from urllib.parse import quote

MASK = "***"

# scheme://userinfo@ : everything up to the last "@" before the host (a raw "@" in a password too)
_USERINFO = re.compile(r"([A-Za-z][A-Za-z0-9+.\-]*://)[^/?#\s]*@")
# secrets passed as query parameters (?key=..., &api_key=..., &password=...)
_QUERY_SECRET = re.compile(
    r"([?&](?:key|api_key|apikey|api-key|access_token|token|password|passwd|secret)=)[^&#\s\"']*",
    re.IGNORECASE,
)
# Authorization: Bearer <token> / Basic <token>, X-API-Key: <key>
_HEADER_SECRET = re.compile(r"((?:bearer|basic)\s+|x-api-key[\"']?\s*[:=]\s*[\"']?)[A-Za-z0-9._~+/=\-]+",
                            re.IGNORECASE)


def redact(text: str, secrets: Iterable[str] = ()) -> str:
    """``text`` without URL user names and passwords, secret query parameters, bearer tokens
    and API-key headers, and without any of ``secrets`` (also in URL-encoded form)."""
    out = _USERINFO.sub(r"\1", text)
    out = _QUERY_SECRET.sub(r"\1" + MASK, out)
    out = _HEADER_SECRET.sub(r"\1" + MASK, out)
    for secret in sorted({s for s in secrets if s and len(s) >= 4}, key=len, reverse=True):
        out = out.replace(secret, MASK)
        quoted = _quote(secret)
        if quoted != secret:
            out = out.replace(quoted, MASK)
    return out


def redact_url(url: str) -> str:
    """``url`` (or a comma-separated list of URLs) without credentials."""
    return ",".join(redact(u.strip()) for u in url.split(","))


def _quote(secret: str) -> str:
    return quote(secret, safe="")
