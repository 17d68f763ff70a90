"""`minimize`: the one-call driver for a custom fitness function (ask -> evaluate -> tell until a budget ends)."""
from __future__ import annotations

import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .core.progress import Progress, run_warnings
from .core.validation import ParameterError, check_budget, check_float
from .optim.base import Optimizer
from .parallel.evaluator import FunctionEvaluator, values_and_grads


@dataclass
class MinimizeResult:
    """x/value: best point and its value; evals/generations: work done; history: one row per generation."""

    x: np.ndarray
    value: float
    evals: int
    generations: int
    wall_s: float
    stop_reason: str
    nonfinite: int
    history: list[dict[str, float]] = field(default_factory=list)
    optimizer: Any = None

    def __repr__(self) -> str:
        return (f"MinimizeResult(value={self.value:.6g}, evals={self.evals}, generations={self.generations}, "
                f"stop_reason={self.stop_reason!r}, wall_s={self.wall_s:.2f})")


def minimize(
    fn: Callable,
    optimizer: Optimizer,
    *,
    max_evals: int | None = None,
    max_generations: int | None = None,
    max_seconds: float | None = None,
    target: float | None = None,
    n_jobs: int = 1,
    vectorized: bool = False,
    backend: str = "joblib",
    address: str | None = None,
    timeout: float | None = None,
    retries: int = 2,
    progress: bool = False,
    callback: Callable[[Optimizer, dict], Any] | None = None,
) -> MinimizeResult:
    """Minimize fn with any registered optimizer.

    fn takes a (dim,) array (or, with vectorized=True, the whole (n, dim) batch) and returns a number (or
    shape (n,)). For gradient optimizers fn receives a torch tensor and is differentiated with autograd.
    Budgets: at least one of max_evals, max_generations, max_seconds; the run never exceeds max_evals.
    `target` stops once best.value <= target. `callback(optimizer, row)` runs after each generation and may
    return True to stop. Results are identical for any n_jobs and backend.
    Parallel evaluation: n_jobs local worker processes (backend="joblib"), or backend="dask" on the
    scheduler at `address` (None: a local cluster of n_jobs workers). `timeout`: seconds one fn call
    may take before it counts as a failed (NaN) evaluation. `retries`: re-runs of work lost to a dead
    worker process before its candidates are named in a `WorkerLostError` (see evograd.parallel.backends).
    """
    if not isinstance(optimizer, Optimizer):
        raise ParameterError(
            f"The 'optimizer' argument must be an evograd optimizer (e.g. evograd.make('cmaes', x0=...)). "
            f"Got {type(optimizer).__name__} instead."
        )
    max_evals, max_generations, max_seconds = check_budget(
        "minimize", max_seconds, max_evals=max_evals, max_generations=max_generations)
    if target is not None:
        target = check_float(target, "target", "minimize")
    if optimizer.x0 is None:  # a gradient optimizer built without x0 and never bound
        raise ParameterError(f"The 'optimizer' argument of minimize has no starting point: build it with x0=... "
                             f"(or bind it to tensors). Got {type(optimizer).__name__} without x0 instead.")
    if max_evals is not None:  # a budget below one generation would end the run before it starts, silently
        first = len(optimizer.ask_candidates())  # asking is idempotent until told: the loop gets the same ones
        if max_evals < first:
            raise ParameterError(
                f"The 'max_evals' parameter of minimize must be an int >= {first} (one generation: "
                f"{type(optimizer).__name__} asks for {first} candidates at a time). Got {max_evals} instead.")
    if optimizer.maximize and optimizer.generation == 0:
        warnings.warn("minimize() minimizes fn; the optimizer was built with maximize=True and is switched to "
                      "minimization.", stacklevel=2)
    optimizer.set_sense(False)

    bar = _progress_bar(progress, max_evals, max_generations)
    history: list[dict[str, float]] = []
    start = time.perf_counter()
    evals0, gens0 = optimizer.evals, optimizer.generation
    stop_reason = "max_generations"
    try:
        # run_warnings: a warning repeated every generation is shown once, with its count at the end
        with run_warnings(), FunctionEvaluator(fn, n_jobs=n_jobs, vectorized=vectorized, backend=backend,
                                               address=address, timeout=timeout, retries=retries) as evaluate:
            while True:
                if max_generations is not None and optimizer.generation - gens0 >= max_generations:
                    stop_reason = "max_generations"
                    break
                if max_seconds is not None and time.perf_counter() - start >= max_seconds:
                    stop_reason = "max_seconds"
                    break
                X = optimizer.ask_candidates()  # compact: shipped to workers as seeds where the optimizer can
                if max_evals is not None and optimizer.evals - evals0 + len(X) > max_evals:
                    stop_reason = "max_evals"
                    break
                if optimizer.needs_grad:
                    values, grads = values_and_grads(fn, X.materialize(), vectorized)
                    optimizer.tell(values, grads)
                else:
                    values = evaluate(X)
                    optimizer.tell(values)
                finite = values[np.isfinite(values)]
                row = {
                    "generation": optimizer.generation,
                    "evals": optimizer.evals,
                    "wall_s": time.perf_counter() - start,
                    "best_value": optimizer.best.value,
                    "gen_min": float(finite.min()) if finite.size else float("nan"),
                    "gen_mean": float(finite.mean()) if finite.size else float("nan"),
                }
                history.append(row)
                if bar is not None:
                    bar.update(optimizer.evals - evals0 if max_evals is not None else optimizer.generation - gens0,
                               {"best": optimizer.best.value} if max_evals is not None else
                               {"evals": optimizer.evals - evals0, "best": optimizer.best.value})
                if callback is not None and callback(optimizer, row):
                    stop_reason = "callback"
                    break
                if target is not None and optimizer.best.value <= target:
                    stop_reason = "target"
                    break
    finally:
        if bar is not None:
            bar.close()
    best = optimizer.best
    return MinimizeResult(
        x=best.x, value=best.value, evals=optimizer.evals - evals0, generations=optimizer.generation - gens0,
        wall_s=time.perf_counter() - start, stop_reason=stop_reason, nonfinite=optimizer.nonfinite,
        history=history, optimizer=optimizer,
    )


def _progress_bar(enabled: bool, max_evals, max_generations) -> Progress | None:
    """A bar on a terminal; in a log, a line at each twentieth of the budget (see evograd.core.progress)."""
    if not enabled:
        return None
    if max_evals is not None:
        return Progress("minimize", max_evals, "evals", milestones=20)
    return Progress("minimize", max_generations, "generations", milestones=20)
