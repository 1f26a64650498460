# The two commands of the README: `make demo` runs the main job, `make test` the test suite.
SHELL := /bin/bash
VENV := .venv/bin
QUESTION ?= How do I read a file line by line in Python?

.PHONY: setup setup-demo up down demo test lint unit

setup:
	@scripts/setup.sh

# only what the demo needs: esrag (llama.cpp comes prebuilt in cyllama's wheel) and the demo's LLM
# (Qwen2.5-Coder-0.5B); no dev extra (llama-cpp-python source build, Playwright), no Chromium
setup-demo:
	@scripts/setup.sh demo

up: setup
	@$(VENV)/esrag up

down:
	@$(VENV)/esrag down

demo: setup-demo
	@$(VENV)/esrag up
	@scripts/demo.sh "$(QUESTION)"

lint: setup
	@$(VENV)/ruff check .

unit: setup
	@$(VENV)/pytest -q -m "not integration"

test: up
	@$(VENV)/ruff check .
	@$(VENV)/pytest -q
