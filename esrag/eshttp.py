"""GET JSON from Elasticsearch with the standard library, for `esrag status`.

Status asks two read-only questions (cluster health, node versions). The Elasticsearch
client costs about 1.5 s of CPU to import on a 2-core machine (it brings elastic-transport,
urllib3, its API namespaces and more), several times the rest of the command, so status
asks them with ``urllib`` instead: the same URLs (each of ESRAG_ES_URL in turn), the same
credentials (ESRAG_ES_API_KEY, else ESRAG_ES_USERNAME and ESRAG_ES_PASSWORD, else user
info in the URL, as the client takes them) and the same TLS trust (ESRAG_ES_CA_CERTS,
ESRAG_ES_VERIFY_CERTS). Everything else talks to Elasticsearch through the client
(esrag/es.py).
"""

from __future__ import annotations

import base64
import json
import ssl
import urllib.error
import urllib.request
from typing import Any
from urllib.parse import unquote, urlsplit, urlunsplit

from esrag.settings import Settings


class EsHttpError(Exception):
    """Every node failed; the message is the last node's short reason (e.g. "HTTP 401")."""


def _basic(username: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode("ascii")


def _node(url: str, settings: Settings) -> tuple[str, dict[str, str]]:
    """``url`` without user info, and the headers that authenticate to it."""
    parts = urlsplit(url)
    headers = {"Accept": "application/json"}
    if settings.es_api_key is not None:
        headers["Authorization"] = "ApiKey " + settings.es_api_key.get_secret_value()
    elif settings.es_username and settings.es_password is not None:
        headers["Authorization"] = _basic(settings.es_username, settings.es_password.get_secret_value())
    elif parts.username is not None:
        headers["Authorization"] = _basic(unquote(parts.username), unquote(parts.password or ""))
    if parts.username is not None or parts.password is not None:
        netloc = parts.hostname or ""
        if ":" in netloc:  # an IPv6 literal
            netloc = f"[{netloc}]"
        if parts.port is not None:
            netloc += f":{parts.port}"
        url = urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))
    return url.rstrip("/"), headers


def _tls(settings: Settings) -> ssl.SSLContext:
    context = ssl.create_default_context(
        cafile=str(settings.es_ca_certs) if settings.es_ca_certs is not None else None)
    if not settings.es_verify_certs:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


def _reason(exc: BaseException) -> str:
    if isinstance(exc, urllib.error.HTTPError):
        return f"HTTP {exc.code}"
    if isinstance(exc, urllib.error.URLError) and isinstance(exc.reason, BaseException):
        return type(exc.reason).__name__
    return type(exc).__name__


def get_json(settings: Settings, paths: list[str], timeout: float = 5.0) -> list[Any]:
    """The JSON bodies of ``GET`` each of ``paths`` from the first node that answers them all.

    Raises :class:`EsHttpError` with the last node's reason when none does.
    """
    reason = "no node"
    for raw in settings.es_urls:
        base, headers = _node(raw, settings)
        # no proxy from the environment, as the client
        handlers: list[urllib.request.BaseHandler] = [urllib.request.ProxyHandler({})]
        if base.startswith("https"):
            handlers.append(urllib.request.HTTPSHandler(context=_tls(settings)))
        opener = urllib.request.build_opener(*handlers)
        try:
            bodies = []
            for path in paths:
                request = urllib.request.Request(base + path, headers=headers)
                with opener.open(request, timeout=timeout) as resp:
                    bodies.append(json.loads(resp.read()))
            return bodies
        except (OSError, ValueError) as exc:  # URLError, HTTPError, timeouts, TLS, a body that is not JSON
            reason = _reason(exc)
    raise EsHttpError(reason)
