"""The one typed settings object, read from ESRAG_* environment variables."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Literal
from urllib.parse import urlparse

from pydantic import AliasChoices, Field, SecretStr, ValidationError, ValidationInfo, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict, SettingsError

from esrag.errors import ConfigError
from esrag.redact import redact, redact_url

# The most chunks one retrieval returns (the engine's bound: evaluation retrieves 300 per query;
# an HTTP request is held to ESRAG_SEARCH_REQUEST_MAX below it).
MAX_K = 1000
INDEX_NAME_PATTERN = r"^[a-z0-9][a-z0-9_\-]*$"  # an index alias: ESRAG_INDEX, --index, a job's index
VectorIndexType = Literal["int8_hnsw", "bbq_hnsw", "hnsw", "int4_hnsw", "flat", "int8_flat"]


def _default_state_dir() -> Path:
    # Elasticsearch refuses to run as root, so as root the node runs as an unprivileged
    # user that must be able to reach its folders: keep them outside /root.
    if os.geteuid() == 0:
        return Path("/var/lib/esrag")
    return Path.home() / ".local" / "share" / "esrag"


def _default_cache_dir() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "esrag"


class Settings(BaseSettings):
    """All esrag settings. Each field is read from ``ESRAG_<NAME>`` (case-insensitive)."""

    model_config = SettingsConfigDict(env_prefix="ESRAG_", extra="ignore", populate_by_name=True)

    # Elasticsearch connection
    es_url: str = "http://127.0.0.1:9200"
    es_username: str | None = None
    es_password: SecretStr | None = None
    es_api_key: SecretStr | None = None
    es_ca_certs: Path | None = None
    es_verify_certs: bool = True
    es_request_timeout: float = Field(30.0, gt=0)
    es_max_retries: int = Field(3, ge=0)
    # bulk writes: 429/5xx items and failed requests, backoff 0.5 s doubling (~31 s over 6 tries);
    # a busy cluster rejects bulk items for longer than it refuses a single request
    bulk_max_retries: int = Field(6, ge=0)

    # Redis (Celery broker and job store)
    redis_url: str = "redis://127.0.0.1:6379/0"

    # Index contract
    index: str = Field("esrag", pattern=INDEX_NAME_PATTERN)
    shards: int = Field(1, ge=1)
    replicas: int = Field(0, ge=0)
    vector_index_type: VectorIndexType = "int8_hnsw"
    text_analyzer: str = "standard"
    stem_language: str = "english"

    # Embedding
    embed_model: str = "all-MiniLM-L6-v2"
    embed_model_path: Path | None = None
    embed_batch_size: int = Field(64, ge=1)
    embed_device: str | None = None
    torch_threads: int | None = Field(None, ge=1)
    embed_runtime: Literal["auto", "onnx", "torch"] = "auto"  # auto: ONNX on CPU where the model has a graph
    embed_precision: Literal["auto", "fp32", "int8"] = "auto"  # auto: fp32 (int8 embeds faster, ranks worse)

    # Chunking and loading
    chunk_max_tokens: int = Field(200, ge=16)
    chunk_overlap_tokens: int = Field(32, ge=0)
    # a chunk under this many tokens joins its neighbour (0: off; at most half of chunk_max_tokens
    # is used); docs/QUALITY.md says why 16
    chunk_min_tokens: int = Field(16, ge=0)
    max_file_bytes: int = Field(50 * 1024 * 1024, ge=1)
    bulk_max_bytes: int = Field(8 * 1024 * 1024, ge=1024)
    # chunking gets the parse budget, stretched for large documents to what a chunker of this
    # many MB/s needs (it measures ~0.26 MB/s on a loaded 2-core machine: bench/results/chunking.json)
    chunk_min_mb_per_s: float = Field(0.05, gt=0)
    id_scope: Literal["file", "global"] = "file"  # .jsonl ids: per file, or one document index-wide
    refresh_off_after_chunks: int = Field(2000, ge=1)  # a load this large runs with refresh_interval -1
    refresh_pause_lease: float = Field(300.0, ge=10)  # seconds a crashed load's refresh pause outlives it

    # Ingest pipeline stages (ingest/pipeline.py) and the re-embedding copy (ingest/reindex.py)
    ingest_doc_batch: int = Field(64, ge=1)  # documents per stored-hash lookup
    ingest_doc_batch_chars: int = Field(4_000_000, ge=1)  # ... or fewer documents when they are large
    ingest_embed_group: int = Field(512, ge=1)  # chunks per encode call (the embedder batches inside it)
    ingest_queue_batches: int = Field(4, ge=1)  # batches in flight between two stages (bounds memory)
    reindex_batch_size: int = Field(256, ge=1)  # chunks re-embedded per scroll page
    # how long Elasticsearch keeps the reindex scroll between two pages (one page is embedded in between)
    reindex_scroll_keepalive: str = Field("10m", pattern=r"^[1-9]\d*(ms|s|m|h)$")

    # Per-document budgets against hostile files (ingest/guards.py, ingest/sandbox.py)
    parse_timeout: float = Field(120.0, ge=0)  # seconds per file in the parse sandbox; 0: parse in-process
    parse_memory_mb: int = Field(2048, ge=0)  # address-space cap of the parse sandbox; 0: none
    max_docx_uncompressed_bytes: int = Field(256 * 1024 * 1024, ge=1024)
    max_zip_ratio: int = Field(200, ge=2)
    max_zip_members: int = Field(10_000, ge=1)
    max_pdf_pages: int = Field(5_000, ge=1)
    max_pdf_stream_bytes: int = Field(64 * 1024 * 1024, ge=1024)
    max_html_depth: int = Field(200, ge=8, le=250)  # libxml2 cuts deeper trees at 256 silently
    max_text_chars: int = Field(50 * 1024 * 1024, ge=1)

    # Retrieval
    num_candidates: int = Field(200, ge=1, le=10000)  # per shard; docs/SCALE.md "Dense recall"
    # kNN rescoring (ES rescore_vector): gather oversample x k candidates on the quantized vectors,
    # re-score them with the float vectors; 0: off, else 1-10 (docs/SCALE.md has the curve)
    knn_oversample: float = Field(3.0, ge=0.0, le=10.0)
    fusion: Literal["dbsf", "rrf", "weighted"] = "dbsf"
    rrf_k: int = Field(60, ge=1)
    hybrid_weight_dense: float = Field(0.8, ge=0.0, le=1.0)
    rerank: bool | Literal["auto"] = "auto"  # auto: on where the index stores rerank vectors of the model
    rerank_model: str | None = None
    rerank_depth: int = Field(50, ge=1, le=1000)
    rerank_batch_size: int = Field(16, ge=1)
    rerank_cache_size: int = Field(20_000, ge=0)  # bi-encoder passage vectors kept (3 KB each)
    # ingest/reindex also store each chunk's rerank-model vector; rerank is then a dot product
    rerank_vectors: bool = False
    hybrid_window: int = Field(50, ge=1, le=1000)  # candidates per retriever before fusion

    # Generation
    llm_backend: Literal["extractive", "openai", "local"] = "extractive"
    llm_url: str | None = None
    llm_model: str | None = None
    llm_api_key: SecretStr | None = None
    llm_max_tokens: int = Field(512, ge=1)
    llm_model_path: Path | None = None  # local backend: a .gguf file or a transformers folder
    llm_timeout: float = Field(120.0, gt=0)
    llm_reasoning: bool = False  # ask the model to reason step by step (reasoning not returned)
    ask_passages: int = Field(5, ge=1, le=50)

    # Answers: packaged local model, context packing, citation checks, chat
    llm_local_model: str | None = None  # packaged GGUF (query/local_models.py); None: best installed
    llm_context_tokens: int = Field(4096, ge=512)  # the local model's context window
    ask_candidates: int = Field(12, ge=1, le=100)  # chunks retrieved before packing
    ask_context_tokens: int = Field(1200, ge=64)  # passage tokens packed into the prompt, best first
    citation_check: Literal["overlap", "embedding", "off"] = "overlap"
    citation_min_support: float = Field(0.5, ge=0.0, le=1.0)  # overlap share or cosine to count as support
    citation_attribution: bool = True  # with the check on: uncited sentences cite their best passage
    chat_max_messages: int = Field(64, ge=1, le=1000)  # longer conversations get 422
    chat_rewrite: Literal["llm", "rules", "off"] = "llm"  # llm falls back to rules without a model
    # In-process GGUF runtime (bench/query.py --ttft measures these; docs/QUALITY.md has the numbers)
    llm_binding: Literal["auto", "llama-cpp-python", "cyllama"] = "auto"  # auto: whichever is installed
    llm_threads: int | None = Field(None, ge=1)  # threads per generated token; None: this process's CPUs
    llm_prompt_threads: int | None = Field(None, ge=1)  # threads for the prompt; None: as llm_threads
    llm_batch: int = Field(512, ge=8)  # prompt tokens decoded per llama.cpp batch
    llm_prefix_cache: bool = True  # keep the last prompt's tokens: the next decodes only what differs

    # Ingest jobs (Celery workers)
    queue: str = Field("ingest", pattern=r"^[A-Za-z0-9_.\-]+$")
    task_max_files: int = Field(16, ge=1)
    task_max_bytes: int = Field(32 * 1024 * 1024, ge=1)
    task_max_retries: int = Field(12, ge=0)
    task_retry_backoff_max: float = Field(60.0, gt=0)
    task_visibility_timeout: int = Field(3600, ge=5)
    task_lease_seconds: float = Field(30.0, ge=1)  # a lost worker's task runs again after this
    task_max_attempts: int = Field(3, ge=1)  # worker deaths or timeouts before a task's files fail
    # hard limit (the worker process is killed); default 5/6 of the visibility timeout
    task_time_limit: float | None = Field(None, gt=0, validate_default=True)
    # soft limit (the task stops, a lost attempt); default 9/10 of the hard limit
    task_soft_time_limit: float | None = Field(None, gt=0, validate_default=True)
    jobstore_retry_seconds: float = Field(300.0, gt=0)  # workers retry job-store calls this long
    worker_concurrency: int = Field(1, ge=1)
    shared_roots: list[Path] = Field(default_factory=list)

    # HTTP API
    api_host: str = "127.0.0.1"
    api_port: int = Field(8000, ge=1, le=65535)
    api_keys: list[str] = Field(default_factory=list)
    allowed_roots: list[Path] = Field(default_factory=list)
    max_body_bytes: int = Field(1024 * 1024, ge=1024)  # larger request bodies get 413
    # requests a minute per API key (or client address); 0: off; unset: 600 whenever keys are configured
    rate_limit_per_minute: int | None = Field(None, ge=0)
    rate_limit_burst: int | None = Field(None, ge=1)  # bucket size; default: rate_limit_per_minute

    # Access control (esrag/keys.py, query/api/security.py)
    api_key_file: Path | None = None  # scoped keys (`esrag keys`); default: <state_dir>/api-keys.json
    documents_max_page: int = Field(200, ge=1, le=10_000)  # chunks per page of /v1/documents/{id}
    rerank_request_max: int = Field(50, ge=1, le=1000)  # the largest k a request may have reranked
    search_request_max: int = Field(100, ge=1, le=MAX_K)  # the largest k of a POST /v1/search request
    ingest_max_files: int = Field(10_000, ge=1)  # files one HTTP ingest job may expand to
    dashboard_poll_ms: int = Field(2000, ge=250, le=60_000)  # how often the dashboard page polls its state

    # Local services (`esrag up`)
    state_dir: Path = Field(default_factory=_default_state_dir)
    cache_dir: Path = Field(default_factory=_default_cache_dir)
    es_version: str = "8.19.21"
    es_heap: str = Field("1g", pattern=r"^\d+[mg]$")
    es_nodes: int = Field(1, ge=1, le=9)
    es_start_timeout: float = Field(180.0, gt=0)
    # a JDK for the local node: ESRAG_JAVA_HOME, else ES_JAVA_HOME, else JAVA_HOME (esrag/localnode.py)
    java_home: Path | None = Field(
        None, validation_alias=AliasChoices("esrag_java_home", "es_java_home", "java_home"))
    es_user: str = "esrag"

    @field_validator("es_url", "redis_url")
    @classmethod
    def _has_scheme(cls, value: str, info: ValidationInfo) -> str:
        urls = [u.strip().rstrip("/") for u in value.split(",")] if info.field_name == "es_url" else [value]
        for url in urls:
            parsed = urlparse(url)
            if not parsed.scheme or not parsed.hostname:
                raise ValueError(f"not a URL: {url!r}")
        return ",".join(urls)

    @field_validator("knn_oversample")
    @classmethod
    def _oversample_off_or_one_to_ten(cls, value: float) -> float:
        if 0 < value < 1:
            raise ValueError("must be 0 (off) or between 1 and 10")
        return value

    @field_validator("task_time_limit")
    @classmethod
    def _below_visibility(cls, value: float | None, info: ValidationInfo) -> float:
        visibility = info.data.get("task_visibility_timeout")
        if value is None:
            return (visibility or 3600) * 5 / 6
        if visibility is not None and value >= visibility:
            raise ValueError(f"must be below ESRAG_TASK_VISIBILITY_TIMEOUT ({visibility})")
        return value

    @field_validator("task_soft_time_limit")
    @classmethod
    def _below_hard_limit(cls, value: float | None, info: ValidationInfo) -> float:
        hard = info.data.get("task_time_limit")
        if value is None:
            return (hard or 3000) * 0.9
        if hard is not None and value >= hard:
            raise ValueError(f"must be below ESRAG_TASK_TIME_LIMIT ({hard:g})")
        return value

    @property  # not cached: model_copy(update=...) would keep a stale value
    def es_urls(self) -> list[str]:
        """The Elasticsearch node URLs (ESRAG_ES_URL may list several, comma-separated)."""
        return self.es_url.split(",")

    @property  # not cached: model_copy(update=...) would keep a stale value
    def safe_es_url(self) -> str:
        """es_url without credentials, for messages and logs."""
        return redact_url(self.es_url)

    @property  # not cached: model_copy(update=...) would keep a stale value
    def safe_redis_url(self) -> str:
        """redis_url without credentials, for messages and logs."""
        return redact_url(self.redis_url)

    def secret_values(self) -> list[str]:
        """Every secret these settings hold (passwords, API keys), for :meth:`redact`."""
        secrets = [s.get_secret_value() for s in (self.es_password, self.es_api_key, self.llm_api_key)
                   if s is not None]
        return [*secrets, *self.api_keys]

    def redact(self, text: str) -> str:
        """``text`` without credentials: URL user info, secret parameters, and these settings' secrets."""
        return redact(text, self.secret_values())

    @property
    def key_file(self) -> Path:
        """Where the scoped API keys live (ESRAG_API_KEY_FILE, default under state_dir)."""
        return self.api_key_file or self.state_dir / "api-keys.json"

    @property  # not cached: model_copy(update=...) would keep a stale value
    def es_port(self) -> int:
        """Port of the first local node, taken from the first es_url."""
        return urlparse(self.es_urls[0]).port or 9200

    @property  # not cached: model_copy(update=...) would keep a stale value
    def redis_port(self) -> int:
        """Port of the local Redis, taken from redis_url."""
        return urlparse(self.redis_url).port or 6379


def load_settings(**overrides: object) -> Settings:
    """Read settings from the environment, apply non-None overrides, and validate them."""
    clean = {k: v for k, v in overrides.items() if v is not None}
    try:
        return Settings(**clean)
    except ValidationError as exc:
        raise _config_error(exc) from None
    except SettingsError as exc:  # a list or dict setting that is not JSON
        field = re.search(r'field "(\w+)"', str(exc))
        name = f"ESRAG_{field.group(1).upper()}" if field else "settings"
        raise ConfigError(f"invalid setting {name}: not JSON ({exc.__cause__ or exc})") from None


def with_updates(settings: Settings, **updates: object) -> Settings:
    """A validated copy of ``settings`` with ``updates`` applied; the same one-line errors."""
    try:
        return Settings(**{**settings.model_dump(), **updates})
    except ValidationError as exc:
        raise _config_error(exc) from None


def _config_error(exc: ValidationError) -> ConfigError:
    errors = exc.errors()
    loc = errors[0]["loc"]
    field = str(loc[0]) if loc else "settings"
    # a union (e.g. true/false or "auto") reports one error per member: name them all
    msgs = dict.fromkeys(e["msg"] for e in errors if (e["loc"][:1] or ("settings",))[0] == field)
    return ConfigError(f"invalid setting ESRAG_{field.upper()}: {' or '.join(msgs)}")
