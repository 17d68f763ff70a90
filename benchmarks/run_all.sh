#!/usr/bin/env bash
# Kept for old habits: a thin wrapper around benchmarks/suite.py (what `make bench` runs), which runs every
# case one after the other and writes bench_results/<UTC timestamp>/.
# Usage: benchmarks/run_all.sh [--quick] [--cases a,b]      (interpreter: $PYTHON, default .venv/bin/python)
set -euo pipefail
cd "$(dirname "$0")/.."
exec "${PYTHON:-.venv/bin/python}" benchmarks/suite.py "$@"
