"""The embedded default job: every registered optimizer on the benchmark functions, one table.

Each (optimizer, function, seed) run is independent and gets the same evaluation budget; runs are
spread over joblib workers and the table reports the median best value over seeds, how many seeds
reached the success threshold, and the median seconds per run.
"""
from __future__ import annotations

import os
import time
import warnings
from dataclasses import dataclass

import numpy as np

from ..core import functions as F
from ..core.progress import Progress
from ..minimize import minimize
from ..optim.registry import available, make, usable


@dataclass
class RunResult:
    optimizer: str
    function: str
    seed: int
    value: float
    evals: int
    seconds: float
    error: str = ""


def _one_run(name: str, fname: str, seed: int, dim: int, max_evals: int, x0_value: float) -> RunResult:
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    import torch

    torch.set_num_threads(1)
    start = time.perf_counter()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            opt = make(name, x0=np.full(dim, x0_value), seed=seed)
            res = minimize(F.get(fname), opt, max_evals=max_evals, vectorized=True)
        return RunResult(name, fname, seed, float(res.value), res.evals, time.perf_counter() - start)
    except Exception as exc:  # one broken run must not lose the table
        elapsed = time.perf_counter() - start
        return RunResult(name, fname, seed, float("nan"), 0, elapsed, f"{type(exc).__name__}: {exc}")


def compare(
    optimizers: list[str] | None = None,
    functions: list[str] | None = None,
    dim: int = 10,
    seeds: int = 3,
    max_evals: int = 10_000,
    x0_value: float = 2.0,
    n_jobs: int = 2,
    progress: bool = True,
) -> list[RunResult]:
    from joblib import Parallel, delayed

    optimizers = optimizers or [n for n in available() if usable(n)]
    functions = functions or list(F.FUNCTIONS)
    for f in functions:
        F.get(f)  # validate names before any work
    jobs = [(o, f, s) for o in optimizers for f in functions for s in range(seeds)]
    for o in optimizers:
        make(o, x0=np.zeros(dim))  # unknown names fail here, with a suggestion
    tasks = (delayed(_one_run)(o, f, s, dim, max_evals, x0_value) for o, f, s in jobs)
    results = []
    bar = Progress("optimizers x functions x seeds", len(jobs), "runs", milestones=10) if progress else None
    for r in Parallel(n_jobs=n_jobs, return_as="generator")(tasks):
        results.append(r)
        if bar is not None:
            bar.update(len(results))
    if bar is not None:
        bar.close()
    return results


def format_table(results: list[RunResult], success_threshold: float = 1e-3) -> str:
    optimizers = list(dict.fromkeys(r.optimizer for r in results))
    functions = list(dict.fromkeys(r.function for r in results))
    header = ["optimizer"] + [f"{f} (median / solved)" for f in functions] + ["s/run (median)"]
    rows = []
    for o in optimizers:
        row = [o]
        for f in functions:
            rs = [r for r in results if r.optimizer == o and r.function == f]
            vals = np.array([r.value for r in rs])
            solved = int(np.sum(vals <= success_threshold))
            med = np.nanmedian(vals) if np.isfinite(vals).any() else float("nan")
            failed = sum(1 for r in rs if r.error)
            row.append(f"{med:.3g} / {solved}/{len(rs)}" + (f" ({failed} failed)" if failed else ""))
        row.append(f"{np.median([r.seconds for r in results if r.optimizer == o]):.2f}")
        rows.append(row)
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(header)]
    line = "| " + " | ".join(h.ljust(w) for h, w in zip(header, widths)) + " |"
    sep = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    body = ["| " + " | ".join(c.ljust(w) for c, w in zip(r, widths)) + " |" for r in rows]
    errors = [f"- {r.optimizer} on {r.function} seed {r.seed}: {r.error}" for r in results if r.error]
    return "\n".join([line, sep, *body] + (["", "Failed runs:", *errors] if errors else []))
