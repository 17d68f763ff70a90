"""`minimize`: the one-call driver for a custom fitness function (ask -> evaluate -> tell until a budget ends)."""
from __future__ import annotations

import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .core.callbacks import row_callback
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
    callback: Callable[[dict], bool | None] | None = None,
) -> MinimizeResult:
    """Minimize fn with any registered optimizer.

    fn takes a (dim,) array (or, with vectorized=True, the whole (n, dim) batch) and returns a number (or
    shape (n,)). For gradient optimizers fn receives a torch tensor and is differentiated with autograd.
    Budgets: at least one of max_evals, max_generations, max_seconds; the run never exceeds max_evals.
    `target` stops once best.value <= target. `callback(row) -> bool | None` runs after each generation
    with its history row; True stops, None or False continue (`evograd.core.callbacks`; the old
    `callback(optimizer, row)` still works with a DeprecationWarning). Results are identical for any
    n_jobs and backend.
    Parallel evaluation: n_jobs local worker processes (backend="joblib"), or backend="dask" on the
    scheduler at `address` (None: a local cluster of n_jobs workers). `timeout`: seconds one fn call
    may take before it counts as a failed (NaN) evaluation. `retries`: re-runs of work lost to a dead
    worker process before its candidates are named in a `WorkerLostError` (see evograd.parallel.backends).
    """
    max_evals, max_generations, max_seconds, target = _check_arguments(
        optimizer, max_evals, max_generations, max_seconds, target)
    stop_after = row_callback(callback, "minimize", lambda: optimizer)
    run = _Run(max_evals, max_generations, max_seconds, target, optimizer.evals, optimizer.generation,
               time.perf_counter(), _progress_bar(progress, max_evals, max_generations))
    try:
        # run_warnings: a warning repeated every generation is shown once, with its count at the end
        with run_warnings(), FunctionEvaluator(fn, n_jobs=n_jobs, vectorized=vectorized, backend=backend,
                                               address=address, timeout=timeout, retries=retries) as evaluate:
            stop_reason = _generations(fn, optimizer, evaluate, vectorized, run, stop_after)
    finally:
        if run.bar is not None:
            run.bar.close()
    best = optimizer.best
    return MinimizeResult(
        x=best.x, value=best.value, evals=optimizer.evals - run.evals0,
        generations=optimizer.generation - run.gens0, wall_s=time.perf_counter() - run.start,
        stop_reason=stop_reason, nonfinite=optimizer.nonfinite, history=run.history, optimizer=optimizer,
    )


@dataclass
class _Run:
    """A run's budget, its starting counters and clock, its progress bar and its history."""

    max_evals: int | None
    max_generations: int | None
    max_seconds: float | None
    target: float | None
    evals0: int
    gens0: int
    start: float
    bar: Progress | None
    history: list[dict[str, float]] = field(default_factory=list)


def _generations(fn, optimizer: Optimizer, evaluate, vectorized: bool, run: _Run, stop_after) -> str:
    """ask -> evaluate -> tell until a budget, the callback or the target ends the run; returns why."""
    while True:
        stop_reason = _budget_spent(optimizer, run)
        if stop_reason is not None:
            return stop_reason
        X = optimizer.ask_candidates()  # compact: shipped to workers as seeds where the optimizer can
        if run.max_evals is not None and optimizer.evals - run.evals0 + len(X) > run.max_evals:
            return "max_evals"
        row = _generation(fn, optimizer, X, evaluate, vectorized, run.start)
        run.history.append(row)
        if run.bar is not None:
            _show(run, optimizer)
        if stop_after is not None and stop_after(row):
            return "callback"
        if run.target is not None and optimizer.best.value <= run.target:
            return "target"


def _check_arguments(optimizer, max_evals, max_generations, max_seconds, target) -> tuple:
    """Refuse what cannot run before any evaluation, and set the optimizer to minimize: a budget below one
    generation or an optimizer without a starting point would otherwise end or fail the run silently."""
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
                      "minimization.", stacklevel=3)
    optimizer.set_sense(False)
    return max_evals, max_generations, max_seconds, target


def _budget_spent(optimizer: Optimizer, run: _Run) -> str | None:
    """The generations or seconds budget that has ended before the next generation (the evals budget
    is checked against the size of the next population, so it needs that population first)."""
    if run.max_generations is not None and optimizer.generation - run.gens0 >= run.max_generations:
        return "max_generations"
    if run.max_seconds is not None and time.perf_counter() - run.start >= run.max_seconds:
        return "max_seconds"
    if optimizer.converged:  # an exact method at a stationary point would re-ask the same point forever
        return "converged"
    return None


def _generation(fn, optimizer, X, evaluate, vectorized, start) -> dict[str, float]:
    """Evaluate the asked population, tell the optimizer, and return the generation's history row."""
    if optimizer.needs_grad:
        values, grads = values_and_grads(fn, X.materialize(), vectorized)
        optimizer.tell(values, grads)
    else:
        values = evaluate(X)
        optimizer.tell(values)
    finite = values[np.isfinite(values)]
    return {
        "generation": optimizer.generation,
        "evals": optimizer.evals,
        "wall_s": time.perf_counter() - start,
        "best_value": optimizer.best.value,
        "gen_min": float(finite.min()) if finite.size else float("nan"),
        "gen_mean": float(finite.mean()) if finite.size else float("nan"),
    }


def _show(run: _Run, optimizer: Optimizer) -> None:
    """Advance the bar in the unit of the budget: evals when there is an evals budget, else generations."""
    evals = optimizer.evals - run.evals0
    if run.max_evals is not None:
        run.bar.update(evals, {"best": optimizer.best.value})
    else:
        run.bar.update(optimizer.generation - run.gens0, {"evals": evals, "best": optimizer.best.value})


def _progress_bar(enabled: bool, max_evals, max_generations) -> Progress | None:
    """A bar on a terminal; in a log, a line at each twentieth of the budget (see evograd.core.progress)."""
    if not enabled:
        return None
    if max_evals is not None:
        return Progress("minimize", max_evals, "evals", milestones=20)
    return Progress("minimize", max_generations, "generations", milestones=20)
