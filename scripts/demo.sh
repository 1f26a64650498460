#!/usr/bin/env bash
# The main job on the local default: ingest a sample of Python's documentation
# (Debian's python3.11-doc) and answer one question with citations.
set -euo pipefail
cd "$(dirname "$0")/.."
QUESTION=${1:-"How do I read a file line by line in Python?"}
DOCS=/usr/share/doc/python3.11/html
export ESRAG_INDEX=${ESRAG_INDEX:-esrag-demo}
.venv/bin/esrag ingest "$DOCS/faq" "$DOCS/tutorial" --json > /tmp/esrag-demo-ingest.json
echo "ingested: $(cat /tmp/esrag-demo-ingest.json)"
# The answer comes from the default backend, extractive (cited sentences of the passages).
# ESRAG_LLM_BACKEND=local answers with the packaged Qwen2.5-Coder-0.5B-Instruct (llama.cpp
# in-process) instead; on this question it writes a correct answer but no [n] markers, and the
# citation check turns an answer with no supported citation into "not in the passages"
# (docs/QUALITY.md, "The demo's question with the local LLM").
export ESRAG_LLM_BACKEND=${ESRAG_LLM_BACKEND:-extractive}
echo "question: $QUESTION"
echo "answer ($ESRAG_LLM_BACKEND backend; the model loads first):"
.venv/bin/esrag ask "$QUESTION"
