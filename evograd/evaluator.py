"""Evaluating a custom fitness function on a population: serially, in joblib workers, or as one batch.

Results never depend on `n_jobs`: each candidate's value is fn(row) whatever process computes it, and
rows are split into contiguous chunks (one task per worker per generation, so the per-task overhead is
paid n_jobs times, not popsize times). A failing fn is re-raised in the parent with the candidate's
index and the original traceback.
"""
from __future__ import annotations

import traceback
from collections.abc import Callable
from typing import Any

import numpy as np

from .validation import ParameterError


class EvaluationError(RuntimeError):
    """fn raised while evaluating a candidate; carries the index and the original traceback text."""

    def __init__(self, index: int, original: str):
        super().__init__(f"fitness function failed on candidate {index}:\n{original}")
        self.index = index
        self.original = original

    def __reduce__(self):  # keep index/traceback across process boundaries
        return (EvaluationError, (self.index, self.original))


def _scalar(value: Any, index: int) -> float:
    try:
        arr = np.asarray(value.detach() if hasattr(value, "detach") else value, dtype=np.float64)
    except (TypeError, ValueError):
        raise ParameterError(
            f"the fitness function must return a number; for candidate {index} it returned {type(value).__name__}"
        ) from None
    if arr.size != 1:
        raise ParameterError(
            f"the fitness function must return one number per candidate; for candidate {index} it returned "
            f"shape {arr.shape} (use vectorized=True for a function that takes the whole (n, dim) batch)"
        )
    return float(arr.reshape(()))


def _eval_chunk(fn: Callable, X: np.ndarray, start: int) -> np.ndarray:
    out = np.empty(len(X))
    for j, x in enumerate(X):
        try:
            value = fn(x)
        except Exception:
            raise EvaluationError(start + j, traceback.format_exc()) from None
        out[j] = _scalar(value, start + j)
    return out


def _eval_vectorized(fn: Callable, X: np.ndarray) -> np.ndarray:
    try:
        values = fn(X)
    except Exception:
        raise EvaluationError(-1, "(vectorized call on the whole batch)\n" + traceback.format_exc()) from None
    values = np.asarray(values.detach() if hasattr(values, "detach") else values, dtype=np.float64)
    if values.shape != (len(X),):
        raise ParameterError(
            f"a vectorized fitness function must return shape ({len(X)},) for a batch of shape {X.shape}; "
            f"got shape {values.shape}"
        )
    return values


class FunctionEvaluator:
    """Evaluates fn on (n, dim) batches; use as a context manager so joblib workers live for the whole run."""

    def __init__(self, fn: Callable, n_jobs: int = 1, vectorized: bool = False):
        if not callable(fn):
            raise ParameterError(f"The 'fn' argument must be callable. Got {type(fn).__name__} instead.")
        if isinstance(n_jobs, bool) or not isinstance(n_jobs, int) or n_jobs == 0 or n_jobs < -1:
            raise ParameterError(
                f"The 'n_jobs' parameter must be an int >= 1 (or -1 for all cores). Got {n_jobs!r} instead."
            )
        self.fn = fn
        self.n_jobs = n_jobs
        self.vectorized = bool(vectorized)
        self._parallel = None

    def __enter__(self) -> FunctionEvaluator:
        if self.n_jobs != 1 and not self.vectorized:
            from joblib import Parallel

            self._parallel = Parallel(n_jobs=self.n_jobs, backend="loky")
            self._parallel.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        if self._parallel is not None:
            self._parallel.__exit__(*exc)
            self._parallel = None

    def __call__(self, X: np.ndarray) -> np.ndarray:
        X = np.asarray(X, dtype=np.float64)
        if self.vectorized:
            return _eval_vectorized(self.fn, X)
        if self._parallel is None:
            return _eval_chunk(self.fn, X, 0)
        from joblib import delayed

        n_workers = self._parallel._effective_n_jobs()
        bounds = np.linspace(0, len(X), min(n_workers, len(X)) + 1).astype(int)
        parts = self._parallel(
            delayed(_eval_chunk)(self.fn, X[a:b], int(a)) for a, b in zip(bounds[:-1], bounds[1:]) if b > a
        )
        return np.concatenate(parts)


def values_and_grads(fn: Callable, X: np.ndarray, vectorized: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """fn's values and torch-autograd gradients at the rows of X (for optimizers whose tell needs grads)."""
    import torch

    x = torch.tensor(np.asarray(X, dtype=np.float64), requires_grad=True)
    try:
        out = fn(x) if vectorized else torch.stack([torch.as_tensor(fn(x[i])) for i in range(len(X))])
    except Exception as exc:
        raise ParameterError(
            "this optimizer needs gradients, so fn is called with a torch tensor and differentiated with autograd; "
            f"calling it failed ({type(exc).__name__}: {exc}). Write fn with torch operations "
            "(the evograd.functions benchmarks work) or choose a gradient-free optimizer."
        ) from exc
    if not isinstance(out, torch.Tensor) or not out.requires_grad:
        raise ParameterError(
            "this optimizer needs gradients, but fn is not differentiable with torch autograd: its result does not "
            "depend on the input tensor through torch operations (did it convert to numpy or float?). Write fn with "
            "torch operations or choose a gradient-free optimizer."
        )
    out = out.reshape(-1)
    if out.shape[0] != len(X):
        raise ParameterError(f"fn returned {out.shape[0]} values for {len(X)} candidates")
    (grad,) = torch.autograd.grad(out.sum(), x)
    return out.detach().numpy().astype(np.float64), grad.numpy()
