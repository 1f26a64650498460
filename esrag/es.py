"""Elasticsearch client factory and health helpers."""

from __future__ import annotations

from typing import Any

from elasticsearch import ApiError, Elasticsearch, TransportError

from esrag.errors import ServiceUnavailable
from esrag.settings import Settings


def make_client(settings: Settings, *, timeout: float | None = None) -> Elasticsearch:
    """Return a client for ``settings.es_url`` with the configured auth, TLS and retries."""
    kwargs: dict[str, Any] = {
        "request_timeout": timeout or settings.es_request_timeout,
        "max_retries": settings.es_max_retries,
        "retry_on_timeout": True,
        "retry_on_status": (429, 502, 503, 504),
    }
    if settings.es_api_key is not None:
        kwargs["api_key"] = settings.es_api_key.get_secret_value()
    elif settings.es_username and settings.es_password is not None:
        kwargs["basic_auth"] = (settings.es_username, settings.es_password.get_secret_value())
    if settings.es_ca_certs is not None:
        kwargs["ca_certs"] = str(settings.es_ca_certs)
    if settings.es_urls[0].startswith("https"):
        kwargs["verify_certs"] = settings.es_verify_certs
    return Elasticsearch(settings.es_urls, **kwargs)


def cluster_health(client: Elasticsearch, settings: Settings) -> dict[str, Any]:
    """Return ``/_cluster/health``, or raise ServiceUnavailable with one clear line.

    Health is used instead of ``GET /`` because minimal distributions may not serve it.
    """
    try:
        return dict(client.cluster.health())
    except (TransportError, ApiError) as exc:
        raise ServiceUnavailable(
            f"Elasticsearch at {settings.safe_es_url} is unavailable ({type(exc).__name__}); "
            "start it with `esrag up` or set ESRAG_ES_URL"
        ) from None
