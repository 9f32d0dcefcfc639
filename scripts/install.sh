#!/usr/bin/env bash
# Install medcode into .venv (created if missing).
#
#   scripts/install.sh                 core: code sets, synth, eval, baseline
#   scripts/install.sh dev,train,serve with extras (comma-separated)
#
# torch (the `train` extra): with no NVIDIA GPU this installs exactly torch==2.13.0, the CPU
# build (a looser requirement would download a multi-GB CUDA build). With a GPU
# (nvidia-smi works) pip's default CUDA build is installed. Override either way with
# MEDCODE_TORCH, e.g. MEDCODE_TORCH="torch==2.13.0 --index-url https://download.pytorch.org/whl/cu128".
set -euo pipefail
cd "$(dirname "$0")/.."

extras="${1:-}"
python="${PYTHON:-python3}"
pip_flags=(--quiet --disable-pip-version-check)

pip_install() {
  # Hide pip's warnings about unreachable local index folders that some machines configure.
  .venv/bin/python -m pip install "${pip_flags[@]}" "$@" 2> >(grep -v "is ignored: it is neither a file nor a directory" >&2)
}

if ! "$python" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
  echo "error: medcode needs Python 3.11 or newer; set PYTHON=/path/to/python3.11" >&2
  exit 1
fi
if [ ! -x .venv/bin/python ]; then
  echo "creating .venv"
  "$python" -m venv .venv
fi

if [[ ",$extras," == *",train,"* ]]; then
  if [ -n "${MEDCODE_TORCH:-}" ]; then
    torch_spec=($MEDCODE_TORCH)
  elif command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
    torch_spec=("torch>=2.13.0")
  else
    torch_spec=("torch==2.13.0")
  fi
  echo "installing ${torch_spec[*]}"
  pip_install "${torch_spec[@]}"
fi

target="."
[ -n "$extras" ] && target=".[$extras]"
echo "installing medcode${extras:+ [$extras]}"
pip_install -e "$target"

# The review page's browser test (tests/serve/test_review_page.py) drives Debian's Chromium
# through Playwright; it is skipped, with the reason, when no Chromium is found.
if [[ ",$extras," == *",dev,"* ]] && ! command -v chromium >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "installing chromium (apt-get) for the review page's browser test"
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
        --no-install-recommends chromium >/dev/null; } \
      || echo "warning: could not install chromium; the browser test will be skipped" >&2
  else
    echo "note: install chromium (apt-get install chromium) to run the browser test" >&2
  fi
fi
