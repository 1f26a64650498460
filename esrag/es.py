"""Elasticsearch client factory and health helpers."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from elastic_transport import TlsError
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


def unavailable_message(settings: Settings, exc: BaseException) -> str:
    """One line saying why Elasticsearch cannot be used: credentials, TLS trust, or not reachable."""
    url = settings.safe_es_url
    status = getattr(exc, "status_code", None) or getattr(getattr(exc, "meta", None), "status", None)
    if status == 401:
        return (f"Elasticsearch at {url} refused the credentials (HTTP 401); check ESRAG_ES_USERNAME and "
                "ESRAG_ES_PASSWORD, or ESRAG_ES_API_KEY")
    if status == 403:
        return f"Elasticsearch at {url} denied the request (HTTP 403); the user or API key lacks privileges"
    if isinstance(exc, TlsError) or "CERTIFICATE_VERIFY_FAILED" in str(exc):
        return (f"cannot verify the TLS certificate of Elasticsearch at {url}; set ESRAG_ES_CA_CERTS to its "
                "CA certificate (PEM)")
    return (f"Elasticsearch at {url} is unavailable ({type(exc).__name__}); "
            "start it with `esrag up` or set ESRAG_ES_URL")


def cluster_health(client: Elasticsearch, settings: Settings) -> dict[str, Any]:
    """Return ``/_cluster/health``, or raise ServiceUnavailable with one clear line.

    Health is used instead of ``GET /`` because minimal distributions may not serve it.
    """
    try:
        return dict(client.cluster.health())
    except (TransportError, ApiError) as exc:
        raise ServiceUnavailable(unavailable_message(exc=exc, settings=settings)) from None


class ShardFailure(ServiceUnavailable):
    """A search or look-up reached only some shards: its answer would be partial."""


def check_shards(resp: Any, what: str) -> None:
    """Raise ShardFailure (one line) when ``resp`` says any shard failed."""
    shards = resp.get("_shards") or {}
    failed = int(shards.get("failed") or 0)
    if not failed:
        return
    reason = "unknown"
    for failure in shards.get("failures") or []:
        cause = failure.get("reason") or {}
        reason = f"{cause.get('type', 'error')}" + (f": {cause['reason']}" if cause.get("reason") else "")
        reason += f" (index {failure.get('index')}, shard {failure.get('shard')})"
        break
    raise ShardFailure(
        " ".join(f"{what} failed on {failed} of {shards.get('total')} shards: {reason}; "
                 "refusing a partial answer, run again when the cluster is healthy".split())[:400]
    )


def scan_all(
    client: Elasticsearch, index: str, body: dict[str, Any], *, size: int = 1000, scroll: str = "5m",
    what: str = "scroll",
) -> Iterator[dict[str, Any]]:
    """Every hit of ``body`` over a scroll, raising ShardFailure when any page misses a shard.

    ``elasticsearch.helpers.scan`` does not check the first page's ``_shards``: a look-up
    that reaches one shard of two returns half the ids without a word.
    """
    resp = client.search(index=index, scroll=scroll, size=size, **body)
    scroll_id = resp.get("_scroll_id")
    try:
        while True:
            check_shards(resp, what)
            hits = resp["hits"]["hits"]
            if not hits:
                return
            yield from hits
            if scroll_id is None:
                return
            resp = client.scroll(scroll_id=scroll_id, scroll=scroll)
            scroll_id = resp.get("_scroll_id") or scroll_id
    finally:
        if scroll_id is not None:
            try:
                client.clear_scroll(scroll_id=scroll_id)
            except (TransportError, ApiError):  # the scroll expires by itself
                pass
