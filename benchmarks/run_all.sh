#!/usr/bin/env bash
# Run every benchmark one after the other (they measure ratios against a reference in the same run, so run
# them on an otherwise idle machine) and keep each one's output under bench_results/<UTC timestamp>/.
# Usage: benchmarks/run_all.sh [--quick]      (quick: ~10 min; full: ~30 min on 2 cores)
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
QUICK=${1:-}
OUT=bench_results/$(date -u +%Y%m%dT%H%M%SZ)
mkdir -p "$OUT"
git rev-parse HEAD > "$OUT/git_revision.txt" 2>/dev/null || echo unknown > "$OUT/git_revision.txt"
export OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 MKL_NUM_THREADS=1
for bench in bench_cmaes bench_cbo bench_highdim bench_rollouts bench_workers bench_ppo; do
  echo "== $bench $QUICK" | tee -a "$OUT/log.txt"
  start=$(date +%s)
  "$PY" "benchmarks/$bench.py" $QUICK > "$OUT/$bench.txt" 2>&1
  echo "   exit $? after $(( $(date +%s) - start )) s; last line: $(tail -n 1 "$OUT/$bench.txt" | cut -c1-200)" | tee -a "$OUT/log.txt"
done
echo "results in $OUT"
