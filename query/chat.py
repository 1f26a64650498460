"""Conversations: the last user message, rewritten into a standalone query when it is a follow-up,
is answered like `esrag ask` (retrieval, packing, generation, citation checks)."""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from typing import Any

from esrag.errors import EsragError
from esrag.settings import Settings
from query.generation import AskEvent, Backend, ask_stream, get_backend

ROLES = ("system", "user", "assistant")
MAX_MESSAGE_CHARS = 8000
REWRITE_MAX_TOKENS = 64
REWRITE_MAX_CHARS = 400

REWRITE_SYSTEM = (
    "You rewrite the last user message of a conversation into one standalone search question "
    "that can be understood without the conversation. Replace pronouns such as it, that or "
    "this with what they refer to. Reply with the question only."
)

# A message that leans on earlier turns: opens with a connective or ellipsis, or refers back.
_OPENER = re.compile(r"^\s*(and|but|also|or|so|then|what about|how about|what if|why not|same)\b", re.I)
_BACKREF = re.compile(r"\b(it|its|it's|that|this|those|these|they|them|their|there|one|ones|the same)\b",
                      re.I)
_WORD = re.compile(r"\w+")
FOLLOWUP_MAX_WORDS = 4  # a very short message ("in Rust?") is a follow-up too


class ChatError(EsragError):
    """A conversation that cannot be answered (bad roles, empty, too long)."""


def validate_messages(messages: Sequence[dict[str, str]], max_messages: int) -> None:
    """One-line errors for conversations the API and CLI refuse."""
    if not messages:
        raise ChatError("messages is empty; send at least one user message")
    if len(messages) > max_messages:
        raise ChatError(f"messages has {len(messages)} entries; at most {max_messages} "
                        "(ESRAG_CHAT_MAX_MESSAGES)")
    for i, m in enumerate(messages):
        if m.get("role") not in ROLES:
            raise ChatError(f"messages[{i}].role must be one of {', '.join(ROLES)}, got {m.get('role')!r}")
        if not str(m.get("content") or "").strip():
            raise ChatError(f"messages[{i}].content is empty")
        if len(str(m["content"])) > MAX_MESSAGE_CHARS:
            raise ChatError(f"messages[{i}].content is longer than {MAX_MESSAGE_CHARS} characters")
    if messages[-1]["role"] != "user":
        raise ChatError("the last message must have role user")


def is_followup(text: str) -> bool:
    """Whether a user message needs the earlier turns to be understood."""
    return (bool(_OPENER.search(text)) or bool(_BACKREF.search(text))
            or len(_WORD.findall(text)) <= FOLLOWUP_MAX_WORDS)


def rule_rewrite(messages: Sequence[dict[str, str]]) -> str:
    """The last user message, prefixed by the earlier user messages it follows up on.

    Walks back from the last user message over follow-ups to the last standalone one and joins
    them in order ("How do I read a file line by line? and how do I do it in reverse?").
    """
    users = [m["content"].strip() for m in messages if m["role"] == "user"]
    chain = [users[-1]]
    for earlier in reversed(users[:-1]):
        if not is_followup(chain[0]):
            break
        chain.insert(0, earlier)
    return " ".join(chain)


def llm_rewrite(model: Backend, messages: Sequence[dict[str, str]]) -> str | None:
    """The model's standalone question, or None when it wrote nothing usable."""
    turns = [f"{m['role']}: {' '.join(m['content'].split())[:1000]}"
             for m in messages[:-1] if m["role"] != "system"]
    user = ("Conversation:\n" + "\n".join(turns[-8:]) + f"\n\nLast user message: {messages[-1]['content']}"
            "\n\nStandalone question:")
    text = "".join(model.stream([{"role": "system", "content": REWRITE_SYSTEM},
                                 {"role": "user", "content": user}], REWRITE_MAX_TOKENS))
    line = next((ln for ln in text.strip().splitlines() if ln.strip()), "")
    line = re.sub(r"^(standalone question|question)\s*:\s*", "", line.strip(), flags=re.I).strip(" \"'`")
    if not line or len(line) > REWRITE_MAX_CHARS or not _WORD.search(line):
        return None
    return line


def standalone_query(settings: Settings, messages: Sequence[dict[str, str]], backend: str | None = None,
                     ) -> tuple[str, str]:
    """(query, how): the query retrieval should use and which rewrite made it (none, llm or rules)."""
    last = messages[-1]["content"].strip()
    earlier_users = [m for m in messages[:-1] if m["role"] == "user"]
    if not earlier_users or settings.chat_rewrite == "off" or not is_followup(last):
        return last, "none"
    if settings.chat_rewrite == "llm":
        model = get_backend(settings, backend)
        if model is not None:
            rewritten = llm_rewrite(model, messages)
            if rewritten:
                return rewritten, "llm"
    return rule_rewrite(messages), "rules"


def chat_stream(settings: Settings, messages: Sequence[dict[str, str]], **kwargs: Any) -> Iterator[AskEvent]:
    """Answer the last user message of ``messages`` (same keywords as ``ask_stream``).

    The ``done`` answer carries the standalone ``query`` that retrieval used.
    """
    validate_messages(messages, settings.chat_max_messages)
    query, how = standalone_query(settings, messages, kwargs.get("backend"))
    for event in ask_stream(settings, query, **kwargs):
        if event.kind == "done" and event.answer is not None:
            event.answer.query = query
            event.answer.rewrite = how
        yield event
