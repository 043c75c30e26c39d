#!/usr/bin/env bash
# Set-up: a virtual environment in .venv with torch 2.13.0 (the CPU wheel) installed first, then the project.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -d .venv ] || "$PY" -m venv .venv
. .venv/bin/activate
python -m pip install -q --upgrade pip
python -m pip install -q "torch==2.13.0"
python -m pip install -q -e ".[dev]"
# The browser test (tests/test_serve_browser.py) drives Debian's chromium through Playwright's Python
# package (installed above by the dev extra); no browser build is ever downloaded.
if ! command -v chromium >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium >/dev/null
  else
    echo "setup: install Debian's chromium (apt-get install chromium) for the browser test" >&2
  fi
fi
