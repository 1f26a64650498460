"""Request bodies of /v1/chat and the OpenAI-compatible /v1/chat/completions."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from query.api.schemas import AskResponse, _Request
from query.chat import MAX_MESSAGE_CHARS

MAX_MESSAGES = 1000  # hard cap of the schema; ESRAG_CHAT_MAX_MESSAGES (default 64) is checked after


class ChatMessage(BaseModel):
    """One turn of a conversation."""

    model_config = ConfigDict(extra="forbid")

    role: Literal["system", "user", "assistant"]
    content: str = Field(min_length=1, max_length=MAX_MESSAGE_CHARS)


class ChatRequest(_Request):
    """POST /v1/chat: the conversation so far; the last message is the user's question."""

    messages: list[ChatMessage] = Field(min_length=1, max_length=MAX_MESSAGES)
    k: int | None = Field(None, ge=1, le=20, description="at most this many passages (default: token budget)")
    stream: bool = False


class ChatResponse(AskResponse):
    """An answer plus the standalone query retrieval used."""

    query: str
    rewrite: str


class CompletionMessage(BaseModel):
    """An OpenAI chat message (text content only; unknown fields such as ``name`` are ignored)."""

    model_config = ConfigDict(extra="ignore")

    role: Literal["system", "user", "assistant"]
    content: str | list[dict[str, Any]]

    @field_validator("content")
    @classmethod
    def _text(cls, value: str | list[dict[str, Any]]) -> str:
        if isinstance(value, list):
            if any(part.get("type") != "text" for part in value):
                raise ValueError("only text content parts are supported")
            value = "\n".join(str(part.get("text", "")) for part in value)
        if not value.strip():
            raise ValueError("content is empty")
        if len(value) > MAX_MESSAGE_CHARS:
            raise ValueError(f"content is longer than {MAX_MESSAGE_CHARS} characters")
        return value


class CompletionRequest(_Request):
    """POST /v1/chat/completions. ``model`` names an esrag index alias (or ``default``); sampling
    fields such as temperature are accepted and ignored (answers are greedy)."""

    model_config = ConfigDict(extra="ignore")

    model: str = Field(min_length=1, max_length=255)
    messages: list[CompletionMessage] = Field(min_length=1, max_length=MAX_MESSAGES)
    stream: bool = False
    max_tokens: int | None = Field(None, ge=1, le=4096)
    max_completion_tokens: int | None = Field(None, ge=1, le=4096)
