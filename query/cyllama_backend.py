"""A GGUF model run in-process by llama.cpp through cyllama, whose wheels are prebuilt (no compiler).

llama-cpp-python ships only as source and builds llama.cpp on install (minutes on 2 cores);
cyllama's manylinux wheel carries llama.cpp compiled, so `make demo` installs in seconds.
The prompt's tokens stay in the KV cache between requests: a new prompt decodes only what
follows the prefix it shares with the last one (the system prompt, at least).
"""

from __future__ import annotations

import atexit
import threading
from collections.abc import Iterator
from pathlib import Path

from esrag.errors import ConfigError, EsragError


class CyllamaBackend:
    """Greedy chat completion with the model's own chat template, streamed."""

    name = "local"
    continues_final_message = True
    binding = "cyllama"

    def __init__(self, path: Path, *, threads: int, prompt_threads: int, n_ctx: int, n_batch: int,
                 prefix_cache: bool = True):
        try:
            from cyllama.llama import llama_cpp as L
        except ImportError:
            raise ConfigError("ESRAG_LLM_BINDING=cyllama needs the cyllama package") from None
        self._L = L
        L.disable_logging()
        L.ggml_backend_load_all()
        params = L.LlamaModelParams()
        params.n_gpu_layers = 0
        self.path = path
        self.model = L.LlamaModel(str(path), params)
        self.vocab = self.model.get_vocab()
        cparams = L.LlamaContextParams()
        cparams.n_ctx = n_ctx
        cparams.n_batch = n_batch
        cparams.n_ubatch = n_batch
        cparams.n_threads = threads
        cparams.n_threads_batch = prompt_threads
        cparams.no_perf = True
        self.ctx = L.LlamaContext(self.model, cparams)
        self.n_ctx, self.n_batch = n_ctx, n_batch
        self.threads, self.prompt_threads = threads, prompt_threads
        self.prefix_cache = prefix_cache
        self.template = self.model.get_default_chat_template()
        self._cached: list[int] = []  # the tokens whose keys and values the context holds
        self.last_prefill_tokens = 0  # prompt tokens the last request decoded (not reused)
        self._lock = threading.Lock()
        atexit.register(self.close)

    def close(self) -> None:
        """Free the context and the model."""
        for obj in (getattr(self, "ctx", None), getattr(self, "model", None)):
            if obj is not None:
                obj.close()
        self.ctx = self.model = None  # type: ignore[assignment]

    def prompt(self, messages: list[dict[str, str]]) -> str:
        """The chat template applied to ``messages``, ready for the assistant's turn; a final
        assistant message is that turn's start, which the model continues."""
        L = self._L
        if not self.template:
            raise ConfigError(f"{self.path.name} has no chat template (a base model?): use an instruct model")
        start = messages[-1]["content"] if messages and messages[-1]["role"] == "assistant" else ""
        chat = [L.LlamaChatMessage(role=m["role"], content=m["content"])
                for m in (messages[:-1] if start else messages)]
        return str(self.model.chat_apply_template(self.template, chat, True)) + start

    def _prefill(self, tokens: list[int]) -> int:
        """Decode ``tokens`` after the prefix already in the cache; the position reached."""
        L = self._L
        keep = 0
        if self.prefix_cache:
            limit = len(tokens) - 1  # decode one token at least: its logits pick the first answer token
            while keep < min(limit, len(self._cached)) and self._cached[keep] == tokens[keep]:
                keep += 1
        if keep == 0 or not self.ctx.memory_seq_rm(0, keep, -1):
            keep = 0
            self.ctx.kv_cache_clear()
        self._cached = tokens[:keep]
        for i in range(keep, len(tokens), self.n_batch):
            part = tokens[i:i + self.n_batch]
            self.ctx.decode(L.llama_batch_get_one(part, i))
            self._cached.extend(part)
        self.last_prefill_tokens = len(tokens) - keep
        return len(tokens)

    def stream(self, messages: list[dict[str, str]], max_tokens: int) -> Iterator[str]:
        """Chat completion with the model's own chat template, streamed."""
        L = self._L
        with self._lock:
            tokens = self.vocab.tokenize(self.prompt(messages), add_special=True, parse_special=True)
            if len(tokens) + 1 >= self.n_ctx:
                raise EsragError(f"the prompt has {len(tokens)} tokens; the model's context "
                                 f"(ESRAG_LLM_CONTEXT_TOKENS) is {self.n_ctx}")
            max_tokens = min(max_tokens, self.n_ctx - len(tokens) - 1)
            try:
                pos = self._prefill(tokens)
            except Exception:
                self._cached = []
                raise
            sampler = L.LlamaSampler(L.LlamaSamplerChainParams())
            sampler.add_greedy()
            answer: list[int] = []
            shown = ""
            try:
                for _ in range(max_tokens):
                    token = sampler.sample(self.ctx, -1)
                    if self.vocab.is_eog(token):
                        break
                    answer.append(token)
                    # the text so far, decoded whole: a character split over tokens waits for its end
                    text = self.vocab.detokenize(answer, remove_special=True, unparse_special=False)
                    if text.startswith(shown) and not text.endswith("\ufffd"):
                        piece, shown = text[len(shown):], text
                        if piece:
                            yield piece
                    self.ctx.decode(L.llama_batch_get_one([token], pos))
                    self._cached.append(token)
                    pos += 1
                text = self.vocab.detokenize(answer, remove_special=True, unparse_special=False)
                if text.startswith(shown) and text != shown:
                    yield text[len(shown):]
            except BaseException:
                self._cached = []  # a consumer that stopped early left the cache mid-answer
                self.ctx.kv_cache_clear()
                raise
            finally:
                sampler.close()

    def count_tokens(self, text: str) -> int:
        """Tokens of ``text`` with the model's own tokenizer."""
        return len(self.vocab.tokenize(text, add_special=False, parse_special=False))
