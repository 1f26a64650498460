"""Tunables live in esrag/settings.py: their defaults, one-line errors, and where their values go."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from esrag.embedder import resolve_model_path
from esrag.errors import ConfigError
from esrag.libenv import OFFLINE, QUIET, library_switches
from esrag.settings import load_settings
from ingest.chunking import Chunk
from ingest.documents import Document
from ingest.docwrite import DocumentWrite, DocumentWriter

DEFAULTS = {  # the values these had as constants in the modules that use them
    "ingest_doc_batch": 64, "ingest_doc_batch_chars": 4_000_000, "ingest_embed_group": 512,
    "ingest_queue_batches": 4, "reindex_batch_size": 256, "reindex_scroll_keepalive": "10m",
    "dashboard_poll_ms": 2000, "search_request_max": 100, "llm_context_tokens": 4096, "es_max_retries": 3,
    "bulk_max_retries": 6,
}


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("ESRAG_") or name in ("JAVA_HOME", "ES_JAVA_HOME"):
            monkeypatch.delenv(name)


def test_defaults_are_the_old_constants() -> None:
    settings = load_settings()
    assert {name: getattr(settings, name) for name in DEFAULTS} == DEFAULTS


@pytest.mark.parametrize(("env", "value", "message"), [
    ("ESRAG_INGEST_DOC_BATCH", "0", "invalid setting ESRAG_INGEST_DOC_BATCH: Input should be greater than or "
                                    "equal to 1"),
    ("ESRAG_INGEST_QUEUE_BATCHES", "x", "invalid setting ESRAG_INGEST_QUEUE_BATCHES: Input should be a valid "
                                        "integer, unable to parse string as an integer"),
    ("ESRAG_INGEST_EMBED_GROUP", "-3", "invalid setting ESRAG_INGEST_EMBED_GROUP: Input should be greater "
                                       "than or equal to 1"),
    ("ESRAG_REINDEX_SCROLL_KEEPALIVE", "10 minutes", "invalid setting ESRAG_REINDEX_SCROLL_KEEPALIVE: String "
                                                     "should match pattern '^[1-9]\\d*(ms|s|m|h)$'"),
    ("ESRAG_DASHBOARD_POLL_MS", "10", "invalid setting ESRAG_DASHBOARD_POLL_MS: Input should be greater than "
                                      "or equal to 250"),
    ("ESRAG_SEARCH_REQUEST_MAX", "5000", "invalid setting ESRAG_SEARCH_REQUEST_MAX: Input should be less "
                                         "than or equal to 1000"),
    ("ESRAG_API_KEYS", "[bad", "invalid setting ESRAG_API_KEYS: not JSON (Expecting value: line 1 column 2 "
                               "(char 1))"),
])
def test_a_bad_value_is_one_line_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, env: str, value: str, message: str
) -> None:
    monkeypatch.setenv(env, value)
    with pytest.raises(ConfigError) as info:
        load_settings()
    assert str(info.value) == message


def test_java_home_comes_from_esrag_java_home_then_es_java_home_then_java_home(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert load_settings().java_home is None
    monkeypatch.setenv("JAVA_HOME", "/opt/a")
    assert load_settings().java_home == Path("/opt/a")
    monkeypatch.setenv("ES_JAVA_HOME", "/opt/b")
    assert load_settings().java_home == Path("/opt/b")
    monkeypatch.setenv("ESRAG_JAVA_HOME", "/opt/c")
    assert load_settings().java_home == Path("/opt/c")
    assert load_settings(java_home="/opt/d").java_home == Path("/opt/d")


def test_library_switches_are_set_once_and_never_override_the_user(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in {**OFFLINE, **QUIET}:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    library_switches()
    assert os.environ["HF_HUB_OFFLINE"] == "0" and os.environ["TRANSFORMERS_OFFLINE"] == "1"
    assert "TQDM_DISABLE" not in os.environ
    library_switches(quiet=True)
    assert os.environ["TQDM_DISABLE"] == "1" and os.environ["TRANSFORMERS_VERBOSITY"] == "error"


def test_a_split_zip_model_needs_the_cache_dir_it_is_given() -> None:
    with pytest.raises(ConfigError, match="^model all-mpnet-base-v2 is assembled from split packages"):
        resolve_model_path("all-mpnet-base-v2", None)


class _BusyClient:
    """An Elasticsearch that answers every bulk item with HTTP 429."""

    def __init__(self) -> None:
        self.requests = 0

    def options(self, **kwargs: object) -> _BusyClient:
        return self

    def bulk(self, operations: bytes) -> dict:
        self.requests += 1
        lines = [json.loads(x) for x in operations.decode().splitlines() if x]
        error = {"type": "es_rejected_execution_exception", "reason": "rejected execution"}
        return {"items": [{op: {"_id": meta["_id"], "status": 429, "error": error}} for line in lines
                          for op, meta in line.items() if op in ("index", "delete")]}


@pytest.mark.parametrize("retries", [0, 2])
def test_document_writes_retry_bulk_max_retries_times(retries: int) -> None:
    """ingest/bulk.py once retried a hard-coded 6 times; now ESRAG_BULK_MAX_RETRIES says how often."""
    settings = load_settings(bulk_max_retries=retries)
    client = _BusyClient()
    failed: list[tuple[str, str]] = []
    writer = DocumentWriter(client, "idx", settings.bulk_max_bytes, settings.bulk_max_retries,  # type: ignore[arg-type]
                            on_indexed=lambda n: None, on_deleted=lambda n: None,
                            on_failed=lambda label, err: failed.append((label, err)))
    writer.bulk.sleep = lambda s: None
    doc = Document(doc_id="a", source="/a", title="", content_type="text/plain", text="x")
    work = DocumentWrite(doc, "a", "h", [Chunk(0, 0, 1, "x", (), "", 1)], ["a:0"], ["c"], [])
    writer.chunk(work, 0, {"n": 0})
    writer.flush()
    assert client.requests == retries + 1
    assert failed == [("a", "indexing failed: es_rejected_execution_exception: rejected execution")]


def test_the_dashboard_page_polls_at_the_configured_interval() -> None:
    from dashboard.router import render_page

    assert "&quot;poll_ms&quot;: 2000," in render_page(load_settings())  # HTML-escaped JSON
    assert "&quot;poll_ms&quot;: 750," in render_page(load_settings(dashboard_poll_ms=750))


def test_a_copy_with_other_urls_reports_its_own_urls() -> None:
    """Derived values follow a ``model_copy(update=...)`` (they were cached once and went stale)."""
    base = load_settings(es_url="http://user:pw@127.0.0.1:9200", redis_url="redis://127.0.0.1:6379/0")
    assert (base.es_urls, base.es_port, base.safe_es_url) == (
        ["http://user:pw@127.0.0.1:9200"], 9200, "http://127.0.0.1:9200")
    other = base.model_copy(update={"es_url": "http://127.0.0.1:9291,http://127.0.0.1:9292",
                                    "redis_url": "redis://127.0.0.1:6390/0"})
    assert (other.es_urls, other.es_port, other.safe_es_url, other.safe_redis_url) == (
        ["http://127.0.0.1:9291", "http://127.0.0.1:9292"], 9291,
        "http://127.0.0.1:9291,http://127.0.0.1:9292", "redis://127.0.0.1:6390/0")
