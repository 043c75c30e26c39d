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
