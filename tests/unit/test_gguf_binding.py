"""Which in-process GGUF runtime and how many threads the local backend uses."""

from __future__ import annotations

import importlib.util
import os

import pytest

from esrag.errors import ConfigError
from esrag.settings import load_settings
from query import generation


def test_auto_picks_the_installed_binding(monkeypatch):
    real = importlib.util.find_spec
    for present, expected in ((("llama_cpp", "cyllama"), "llama-cpp-python"), (("cyllama",), "cyllama")):
        monkeypatch.setattr(importlib.util, "find_spec",
                            lambda name, present=present: real("json") if name in present else None)
        assert generation.gguf_binding("auto") == expected
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ConfigError, match=r"^a \.gguf local model needs cyllama or llama-cpp-python"):
        generation.gguf_binding("auto")
    assert generation.gguf_binding("cyllama") == "cyllama"  # named: no lookup


def test_threads_default_to_the_cpus_this_process_may_use():
    cpus = len(os.sched_getaffinity(0))
    assert generation.llm_threads(load_settings()) == (cpus, cpus)
    assert generation.llm_threads(load_settings(llm_threads=1)) == (1, 1)
    assert generation.llm_threads(load_settings(llm_threads=1, llm_prompt_threads=3)) == (1, 3)


def test_bad_binding_and_threads_are_one_line_errors():
    with pytest.raises(ConfigError, match=r"^invalid setting ESRAG_LLM_BINDING: Input should be 'auto', "):
        load_settings(llm_binding="ctransformers")
    with pytest.raises(ConfigError, match=r"^invalid setting ESRAG_LLM_THREADS: Input should be greater"):
        load_settings(llm_threads=0)
