"""The OpenAI backend against a real local HTTP server that misbehaves on purpose.

The server speaks HTTP over a real socket; what it answers depends on the model name the
request asks for: an HTTP error, a malformed server-sent-events line, noise that a stream
may carry, a reasoning block, and a chunked body cut off mid-stream. Retrieval runs on
the real Elasticsearch.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler

import pytest
from llm_server import serve, sse_event
from query_corpus import corpus_alias

from esrag.errors import EsragError, ServiceUnavailable
from esrag.settings import Settings, load_settings
from query.generation import ask

Q = "What temperature should bread be baked at?"



SCRIPTS: dict[str, list[str]] = {
    "bad-json": [sse_event("Bake"), 'data: {"choices": [{"delta": {"content": " the\n\n'],
    "bad-content": [sse_event("Bake"), sse_event(42)],
    "noise": [": keep-alive comment\n\n", "event: ping\n\n", 'data: {"choices": []}\n\n',
              'data: {"choices": [{"delta": {}}]}\n\n', sse_event("Bake the bread at 220 degrees"),
              sse_event(" [1]."), "data: [DONE]\n\n", sse_event(" ignored after DONE")],
    "reasoning": [sse_event("<reason"), sse_event("ing>The passage gives 220 degrees.</reas"),
                  sse_event("oning>Bake the bread at 220 degrees [1]."), "data: [DONE]\n\n"],
}


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    requests: list[dict] = []

    def log_message(self, *args: object) -> None:
        pass

    def do_POST(self) -> None:  # noqa: N802 (http.server's name)
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        _Handler.requests.append({"path": self.path, **body})
        model = body["model"]
        if model == "http-500":
            payload = b"model overloaded, try later"
            self.send_response(500)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)
            return
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        if model == "cut":  # a chunked body whose connection drops before its last chunk
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            piece = sse_event("Bake").encode()
            self.wfile.write(f"{len(piece):x}\r\n".encode() + piece + b"\r\n")
            self.wfile.flush()
            self.close_connection = True
            return
        payload = "".join(SCRIPTS[model]).encode()
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)


@pytest.fixture(scope="module")
def llm_url() -> Iterator[str]:
    with serve(_Handler) as url:
        yield url


@pytest.fixture(scope="module")
def corpus(es) -> Iterator[Settings]:
    with corpus_alias(es) as settings:
        yield settings


def _settings(corpus: Settings, url: str, model: str) -> Settings:
    return load_settings(index=corpus.index, llm_backend="openai", llm_url=url, llm_model=model,
                         llm_timeout=30)


def test_an_http_error_is_one_line_with_status_and_body(corpus: Settings, llm_url: str) -> None:
    with pytest.raises(EsragError) as info:
        ask(_settings(corpus, llm_url, "http-500"), Q, k=1)
    assert str(info.value) == f"LLM at {llm_url} answered HTTP 500: 'model overloaded, try later'"
    assert _Handler.requests[-1]["path"] == "/v1/chat/completions" and _Handler.requests[-1]["stream"] is True


@pytest.mark.parametrize(("model", "shown"), [
    ("bad-json", '\'{"choices": [{"delta": {"content": " the\''),
    ("bad-content", '\'{"choices": [{"index": 0, "delta": {"content": 42}}]}\''),
])
def test_a_malformed_event_is_one_line_not_a_traceback(
    corpus: Settings, llm_url: str, model: str, shown: str
) -> None:
    with pytest.raises(EsragError) as info:
        ask(_settings(corpus, llm_url, model), Q, k=1)
    assert type(info.value) is EsragError
    assert str(info.value) == f"LLM at {llm_url} sent a malformed stream event: {shown}"


def test_comments_pings_empty_choices_and_text_after_done_are_ignored(corpus: Settings, llm_url: str) -> None:
    answer = ask(_settings(corpus, llm_url, "noise"), Q, k=1)
    assert answer.answer == "Bake the bread at 220 degrees [1]."
    assert [(c.n, c.chunk_id) for c in answer.citations] == [(1, "bread#0")]
    assert answer.timings_ms["pieces"] == 2 and answer.reasoning is None


def test_a_reasoning_block_split_across_events_is_kept_apart(corpus: Settings, llm_url: str) -> None:
    answer = ask(_settings(corpus, llm_url, "reasoning"), Q, k=1, reasoning=True)
    assert answer.reasoning == "The passage gives 220 degrees."
    assert answer.answer == "Bake the bread at 220 degrees [1]."
    assert [(c.n, c.chunk_id) for c in answer.citations] == [(1, "bread#0")]
    assert "reasoning" in _Handler.requests[-1]["messages"][0]["content"].lower()


def test_a_stream_cut_mid_body_is_service_unavailable(corpus: Settings, llm_url: str) -> None:
    with pytest.raises(ServiceUnavailable) as info:
        ask(_settings(corpus, llm_url, "cut"), Q, k=1)
    assert str(info.value) == f"LLM at {llm_url} is unavailable (RemoteProtocolError)"
