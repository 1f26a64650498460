"""Request and response bodies of the HTTP API, with their bounds."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from esrag.settings import MAX_K
from query.filters import MAX_FILTERS, MAX_VALUE_CHARS, validate_filters

MAX_QUERY_CHARS = 2000


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid")

    mode: Literal["bm25", "dense", "hybrid"] = "hybrid"
    filters: dict[str, str] = Field(default_factory=dict, max_length=MAX_FILTERS,
                                    description="key=value: doc_id, source, content_type, ... or meta.<key>")
    rerank: bool | None = None

    @field_validator("filters")
    @classmethod
    def _valid_filters(cls, value: dict[str, str]) -> dict[str, str]:
        for key, val in value.items():
            if len(key) > 128 or len(val) > MAX_VALUE_CHARS:
                raise ValueError("filter keys are at most 128 chars, values at most 1024")
        validate_filters(value)
        return value


class SearchRequest(_Request):
    """POST /v1/search."""

    query: str = Field(min_length=1, max_length=MAX_QUERY_CHARS)
    k: int = Field(10, ge=1, le=MAX_K, description="at most ESRAG_SEARCH_REQUEST_MAX (default 100)")


class AskRequest(_Request):
    """POST /v1/ask."""

    question: str = Field(min_length=1, max_length=MAX_QUERY_CHARS)
    k: int = Field(5, ge=1, le=20, description="passages given to the generator")
    stream: bool = False
    reasoning: bool | None = Field(None, description="let the model reason step by step first")
    include_reasoning: bool = False


class HitOut(BaseModel):
    """One retrieved chunk."""

    chunk_id: str
    doc_id: str
    source: str
    title: str
    text: str
    score: float
    start: int
    end: int
    chunk_no: int
    headings: list[str]
    meta: dict[str, Any]


class SearchResponse(BaseModel):
    """Ranked chunks and timings."""

    hits: list[HitOut]
    mode: str
    timings_ms: dict[str, float]
    rerank_source: str | None = None  # with rerank: "stored", "encoded" or "mixed" passage vectors


class CitationOut(BaseModel):
    """A cited passage."""

    n: int
    doc_id: str
    chunk_id: str
    source: str
    text: str
    start: int
    end: int


class AskResponse(BaseModel):
    """An answer whose every [n] maps to a citation."""

    answer: str
    citations: list[CitationOut]
    removed_citations: int
    unsupported_citations: int = 0
    attributed_citations: int = 0
    faithfulness: float | None = None
    backend: str
    timings_ms: dict[str, float]
    reasoning: str | None = None


class DocumentResponse(BaseModel):
    """A document's chunks in order."""

    doc_id: str
    chunks: list[HitOut]
    next_after: int | None = Field(None, description="pass as ?after= for the next page; null: last page")
