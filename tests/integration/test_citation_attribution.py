"""Post-hoc attribution end to end: a real answer Qwen2.5-Coder-0.5B-Instruct wrote without any
[n] (recorded from the demo, docs/QUALITY.md) is streamed by a real local HTTP server speaking the
OpenAI protocol, retrieval runs on the real Elasticsearch, and the real citation check and
attribution decide what the user gets, in Python, over /v1/ask (JSON and SSE) and over the
OpenAI-compatible endpoint with the official client.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler

import httpx
import openai
import pytest
from dashboard_server import serve
from llm_server import serve as serve_llm
from llm_server import sse_event
from query_corpus import corpus_alias

from esrag.settings import Settings, load_settings
from query.citations import NOT_FOUND
from query.generation import ask, ask_stream
from server.app import create_app

Q = "How do I read a file line by line in Python?"
# Qwen2.5-Coder-0.5B-Instruct's answer to the demo question (docs/QUALITY.md), with no [n]
WRITTEN = ("To read a file line by line in Python, you can use a loop over the file object. This is memory "
           "efficient, fast, and leads to simple code: `for line in f: ... print(line, end='')`.")
FIRST, SECOND = WRITTEN.split(". ", 1)



class _Replay(BaseHTTPRequestHandler):
    """Streams WRITTEN word by word, as the model did."""

    protocol_version = "HTTP/1.1"
    text = WRITTEN

    def log_message(self, *args: object) -> None:
        pass

    def do_POST(self) -> None:  # noqa: N802 (http.server's name)
        self.rfile.read(int(self.headers["Content-Length"]))
        words = self.text.split(" ")
        pieces = (sse_event(w if i == 0 else " " + w) for i, w in enumerate(words))
        payload = "".join(pieces) + "data: [DONE]\n\n"
        body = payload.encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture(scope="module")
def llm_url() -> Iterator[str]:
    with serve_llm(_Replay) as url:
        yield url


class _Declines(_Replay):
    """Qwen 0.5B's decline in its own words (python-faq full, docs/QUALITY.md)."""

    text = "The passage does not contain the answer."


@pytest.fixture(scope="module")
def corpus(es) -> Iterator[Settings]:
    with corpus_alias(es) as settings:
        yield settings


def _llm(corpus: Settings, url: str, **kw: object) -> Settings:
    return load_settings(index=corpus.index, llm_backend="openai", llm_url=url, llm_model="qwen",
                         llm_timeout=30, **kw)


def _number_of(answer, chunk_id: str) -> int:
    return next(n for n, h in enumerate(answer.passages, start=1) if h.chunk_id == chunk_id)


def test_the_uncited_sentence_gets_the_passage_that_supports_it(corpus: Settings, llm_url: str) -> None:
    events = list(ask_stream(_llm(corpus, llm_url), Q, k=3))
    streamed = "".join(e.text for e in events if e.kind == "token")
    answer = events[-1].answer
    assert streamed == WRITTEN  # the tokens went out as written; the done event has the result
    n = _number_of(answer, "python-files#0")
    # the first sentence is python-files#0's claim; the second (speed, code) is in no passage
    assert answer.answer == f"{FIRST} [{n}]. {SECOND}"
    assert [(c.n, c.doc_id, c.chunk_id) for c in answer.citations] == [(n, "python-files", "python-files#0")]
    assert (answer.attributed_citations, answer.unsupported_citations, answer.faithfulness) == (1, 0, 0.5)


def test_without_attribution_the_same_answer_is_declined(corpus: Settings, llm_url: str) -> None:
    answer = ask(_llm(corpus, llm_url, citation_attribution=False), Q, k=3)
    assert (answer.answer, answer.citations, answer.attributed_citations) == (NOT_FOUND, [], 0)


def test_with_the_check_off_nothing_is_attributed(corpus: Settings, llm_url: str) -> None:
    answer = ask(_llm(corpus, llm_url, citation_check="off"), Q, k=3)
    assert (answer.answer, answer.citations, answer.attributed_citations) == (WRITTEN, [], 0)


def test_extractive_answers_are_unaffected(corpus: Settings) -> None:
    on = ask(load_settings(index=corpus.index), Q, k=3)
    off = ask(load_settings(index=corpus.index, citation_attribution=False), Q, k=3)
    assert on.answer == off.answer and on.answer.endswith("]") and on.attributed_citations == 0
    assert [c.chunk_id for c in on.citations] == [c.chunk_id for c in off.citations]
    assert on.to_dict()["attributed_citations"] == 0


@pytest.fixture(scope="module")
def base(corpus: Settings, llm_url: str) -> Iterator[str]:
    with serve(create_app(_llm(corpus, llm_url))) as url:
        yield url


def test_ask_json_and_the_sse_done_event_carry_the_attributed_answer(base: str) -> None:
    out = httpx.post(f"{base}/v1/ask", json={"question": Q, "k": 3}, timeout=120).json()
    (cite,) = out["citations"]
    assert cite["chunk_id"] == "python-files#0"
    assert out["answer"] == f"{FIRST} [{cite['n']}]. {SECOND}"
    assert (out["attributed_citations"], out["unsupported_citations"]) == (1, 0)
    with httpx.stream("POST", f"{base}/v1/ask", json={"question": Q, "k": 3, "stream": True},
                      timeout=120) as r:
        body = r.read().decode()
    blocks = [b.split("\n", 1) for b in body.strip().split("\n\n")]
    tokens = "".join(json.loads(data[len("data: "):])["text"] for head, data in blocks
                     if head == "event: token")
    assert tokens == WRITTEN
    assert blocks[-1][0] == "event: done"
    done = json.loads(blocks[-1][1][len("data: "):])
    assert (done["answer"], done["attributed_citations"]) == (out["answer"], 1)


def test_openai_endpoint_reports_attributed_citations(base: str, corpus: Settings) -> None:
    client = openai.OpenAI(base_url=f"{base}/v1", api_key="unused", max_retries=0, timeout=120)
    resp = client.chat.completions.create(model=corpus.index, messages=[{"role": "user", "content": Q}])
    extra = resp.model_extra
    (cite,) = extra["citations"]
    assert resp.choices[0].message.content == f"{FIRST} [{cite['n']}]. {SECOND}"
    assert extra["esrag"]["attributed_citations"] == 1
    messages = [{"role": "user", "content": Q}]
    chunks = list(client.chat.completions.create(model=corpus.index, messages=messages, stream=True))
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == WRITTEN
    last = chunks[-1].model_extra["esrag"]
    assert (last["answer"], last["attributed_citations"]) == (resp.choices[0].message.content, 1)


@pytest.mark.parametrize("check", ["off", "overlap"])
def test_the_decline_in_the_models_own_words_is_the_decline(corpus: Settings, check: str) -> None:
    with serve_llm(_Declines) as url:
        answer = ask(_llm(corpus, url, citation_check=check), Q, k=3)
    assert (answer.answer, answer.citations, answer.attributed_citations) == (NOT_FOUND, [], 0)
