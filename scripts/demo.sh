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
# The answer comes from the packaged Qwen2.5-Coder-0.5B-Instruct (llama.cpp in-process through
# cyllama's prebuilt wheel). It writes a correct answer without [n] markers; post-hoc attribution
# (ESRAG_CITATION_ATTRIBUTION) cites the passage that supports each sentence and the citation
# check verifies it (docs/QUALITY.md, "The demo's question with the local LLM").
# ESRAG_LLM_BACKEND=extractive shows the default backend's answer (cited passage sentences).
export ESRAG_LLM_BACKEND=${ESRAG_LLM_BACKEND:-local}
echo "question: $QUESTION"
echo "answer ($ESRAG_LLM_BACKEND backend; the model loads first):"
.venv/bin/esrag ask "$QUESTION" || {
  echo "(the $ESRAG_LLM_BACKEND backend did not answer; the extractive answer:)"
  ESRAG_LLM_BACKEND=extractive .venv/bin/esrag ask "$QUESTION"
}
