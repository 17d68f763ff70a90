"""Wrapper overhead of evograd's `cmaes` against raw pycma, measured in the same process.

Three variants run the same engine configuration (randn from `RandomState(seed)`, quiet options) on a
sphere from the same start, so they follow bit-identical trajectories and do the same linear algebra:
bare pycma `ask`+`tell` (the reference for the 1.2x target), pycma's idiomatic loop that also calls
`es.stop()` every generation, and evograd's `ask()`/`tell()`. They advance in lockstep, one generation
each in a rotating order, so load drift on a shared machine hits all three alike. Sphere values are
computed outside the timers. We report the median over repetitions of ms/generation, the ratio of the
medians (PASS/FAIL against 1.2) and the median of per-repetition (paired) ratios.

Usage: python benchmarks/bench_cmaes.py [--quick] [--reps 5] [--threads 1]
The last stdout line is one JSON object.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time

TARGET = 1.2


def _parse() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer generations and repetitions (~20 s)")
    ap.add_argument("--reps", type=int, default=None, help="repetitions per case (default 5, quick 3)")
    ap.add_argument("--threads", type=int, default=1, help="BLAS/OpenMP threads for both sides")
    return ap.parse_args()


ARGS = _parse()
for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[var] = str(ARGS.threads)  # before numpy loads its BLAS, identical for both sides

import cma
import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from evograd.optim.cmaes import _QUIET, CMAES

try:
    import torch  # evograd imports torch; keep it from competing for the cores

    torch.set_num_threads(ARGS.threads)
except ImportError:  # pragma: no cover
    pass

# (name, dim, separable, generations per repetition, quick generations per repetition)
CASES = [
    ("full d=10", 10, False, 400, 150),
    ("full d=100", 100, False, 150, 60),
    ("full d=1000", 1000, False, 40, 20),
    ("separable d=1000", 1000, True, 150, 60),
]
VARIANTS = ("raw", "raw_stop", "evograd")


class _Raw:
    """Bare pycma; with `check_stop`, pycma's idiomatic `while not es.stop()` loop."""

    def __init__(self, dim: int, separable: bool, seed: int, check_stop: bool):
        opts = {"randn": np.random.RandomState(seed).randn, "seed": np.nan, **_QUIET}
        if separable:
            opts["CMA_diagonal"] = True
        self.es, self.check_stop, self.X = cma.CMAEvolutionStrategy(np.ones(dim), 0.5, opts), check_stop, None

    def ask(self):
        self.X = self.es.ask()
        return self.X

    def tell(self, f):
        self.es.tell(self.X, f)
        if self.check_stop:
            self.es.stop()


def _repetition(dim: int, separable: bool, gens: int, seed: int) -> dict[str, float]:
    """ms/generation of each variant. The variants follow bit-identical trajectories in lockstep, one
    generation each in an order that rotates every generation, so they see the same machine load."""
    opts = {
        "raw": _Raw(dim, separable, seed, False),
        "raw_stop": _Raw(dim, separable, seed, True),
        "evograd": CMAES(x0=np.ones(dim), sigma0=0.5, separable=separable, seed=seed),
    }
    spent = dict.fromkeys(VARIANTS, 0.0)
    for g in range(gens):
        order = VARIANTS[g % 3:] + VARIANTS[: g % 3]
        for label in order:
            opt = opts[label]
            t0 = time.perf_counter()
            X = opt.ask()
            t1 = time.perf_counter()
            f = [float(x @ x) for x in X]  # not timed
            t2 = time.perf_counter()
            opt.tell(f)
            spent[label] += (t1 - t0) + (time.perf_counter() - t2)
    return {k: 1e3 * v / gens for k, v in spent.items()}


def main() -> None:
    reps = ARGS.reps or (3 if ARGS.quick else 5)
    results = {}
    header = (f"{'case':18s} {'pycma ms/gen':>13s} {'+stop() ms':>11s} {'evograd ms/gen':>15s} {'ratio':>7s} "
              f"{'paired':>7s} {'vs +stop':>8s}  verdict")
    print(header)
    print("-" * len(header))
    for name, dim, separable, gens, quick_gens in CASES:
        n = quick_gens if ARGS.quick else gens
        _repetition(dim, separable, 3, 0)  # warm caches and lazy imports
        runs = [_repetition(dim, separable, n, r + 1) for r in range(reps)]
        raw, raw_stop, wrapped = ([run[k] for run in runs] for k in VARIANTS)
        ratio = statistics.median(wrapped) / statistics.median(raw)
        paired = statistics.median(w / r for w, r in zip(wrapped, raw))
        vs_stop = statistics.median(wrapped) / statistics.median(raw_stop)
        verdict = "PASS" if ratio <= TARGET else "FAIL"
        results[name] = {
            "dim": dim, "separable": separable, "generations": n, "reps": reps,
            "pycma_ms": round(statistics.median(raw), 4),
            "pycma_stop_ms": round(statistics.median(raw_stop), 4),
            "evograd_ms": round(statistics.median(wrapped), 4), "ratio": round(ratio, 3),
            "paired_ratio": round(paired, 3), "ratio_vs_pycma_stop": round(vs_stop, 3), "verdict": verdict,
            "pycma_runs": [round(x, 4) for x in raw], "pycma_stop_runs": [round(x, 4) for x in raw_stop],
            "evograd_runs": [round(x, 4) for x in wrapped],
        }
        print(f"{name:18s} {statistics.median(raw):13.3f} {statistics.median(raw_stop):11.3f} "
              f"{statistics.median(wrapped):15.3f} {ratio:7.3f} {paired:7.3f} {vs_stop:8.3f}  "
              f"{verdict} (ratio <= {TARGET})", flush=True)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    print(json.dumps({
        "bench": "cmaes_overhead", "quick": ARGS.quick, "threads": ARGS.threads, "target_ratio": TARGET,
        "all_pass": all(v["verdict"] == "PASS" for v in results.values()), "results": results,
        "versions": {"cma": cma.__version__, "numpy": np.__version__, "python": platform.python_version()},
        "loadavg_1m": load, "cpu_count": os.cpu_count(),
    }))


if __name__ == "__main__":
    main()
