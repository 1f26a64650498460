"""Follow-up detection, the rule-based rewrite and conversation checks (pure logic)."""

import pytest

from esrag.settings import load_settings
from query.chat import ChatError, is_followup, llm_rewrite, rule_rewrite, standalone_query, validate_messages


def conv(*turns):
    roles = ["user", "assistant"]
    return [{"role": roles[i % 2], "content": t} for i, t in enumerate(turns)]


@pytest.mark.parametrize("text", ["and how do I do it in reverse?", "What about Rust?", "in Rust?",
                                  "Why does that happen?", "How often should I run it?"])
def test_followups(text):
    assert is_followup(text)


@pytest.mark.parametrize("text", ["How do I read a file line by line in Python?",
                                  "What does VACUUM do in PostgreSQL?"])
def test_standalone_questions(text):
    assert not is_followup(text)


def test_rule_rewrite_joins_the_chain_of_follow_ups():
    messages = conv("How do I read a file line by line in Python?", "Iterate over it [1].",
                    "and how do I do it in reverse?", "Use reversed() [1].", "what about in Rust?")
    assert rule_rewrite(messages) == ("How do I read a file line by line in Python? "
                                      "and how do I do it in reverse? what about in Rust?")
    messages = conv("What does VACUUM do in PostgreSQL?", "It reclaims storage [1].",
                    "How do I read a file line by line in Python?")
    assert rule_rewrite(messages) == "How do I read a file line by line in Python?"


def test_standalone_query_uses_rules_without_a_model():
    settings = load_settings(llm_backend="extractive")
    messages = conv("What does VACUUM do in PostgreSQL?", "It reclaims storage [1].",
                    "How often should I run it?")
    assert standalone_query(settings, messages) == (
        "What does VACUUM do in PostgreSQL? How often should I run it?", "rules")
    assert standalone_query(settings, messages[:1]) == ("What does VACUUM do in PostgreSQL?", "none")
    off = load_settings(llm_backend="extractive", chat_rewrite="off")
    assert standalone_query(off, messages) == ("How often should I run it?", "none")


class Scripted:
    name = "scripted"

    def __init__(self, text):
        self.text, self.seen = text, None

    def stream(self, messages, max_tokens):
        self.seen = messages
        yield from self.text

    def count_tokens(self, text):
        return len(text.split())


def test_llm_rewrite_cleans_the_reply_and_rejects_empty_ones():
    messages = conv("What does VACUUM do?", "It reclaims storage [1].", "How often should I run it?")
    model = Scripted('Standalone question: "How often should VACUUM be run in PostgreSQL?"\nextra')
    assert llm_rewrite(model, messages) == "How often should VACUUM be run in PostgreSQL?"
    assert "assistant: It reclaims storage [1]." in model.seen[1]["content"]
    assert llm_rewrite(Scripted("  \n "), messages) is None
    assert llm_rewrite(Scripted("x" * 500), messages) is None


@pytest.mark.parametrize("messages, message", [
    ([], "messages is empty; send at least one user message"),
    (conv(*["q?"] * 65), "messages has 65 entries; at most 64 (ESRAG_CHAT_MAX_MESSAGES)"),
    ([{"role": "tool", "content": "x"}],
     "messages[0].role must be one of system, user, assistant, got 'tool'"),
    ([{"role": "user", "content": " "}], "messages[0].content is empty"),
    (conv("q?", "a."), "the last message must have role user"),
])
def test_bad_conversations(messages, message):
    with pytest.raises(ChatError) as err:
        validate_messages(messages, 64)
    assert str(err.value) == message
