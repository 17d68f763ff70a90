"""Evaluating a custom fitness function on a population: serially, in joblib workers, on a Dask
cluster, or as one batch.

Results never depend on `n_jobs` or the backend: each candidate's value is fn(row) whatever process
computes it, and rows are split into contiguous chunks (one task per worker per generation, so the
per-task overhead is paid n_workers times, not popsize times; see `evograd.parallel.backends` for lost workers).
A failing fn is re-raised in the parent with the candidate's index and the original traceback; with a
`timeout`, a call that runs longer is stopped and its candidate counts as failed (NaN).
"""
from __future__ import annotations

import traceback
from collections.abc import Callable
from typing import Any

import numpy as np

from ..core.candidates import Candidates
from ..core.progress import warn_repeating
from ..core.validation import NotRealError, ParameterError, check_float, check_int, real_array
from .backends import Backend, check_backend, check_n_jobs, make_backend, run_slices
from .deadline import EvaluationTimeout, time_limit


class EvaluationError(RuntimeError):
    """fn raised while evaluating a candidate; carries the index and the original traceback text."""

    def __init__(self, index: int, original: str):
        super().__init__(f"fitness function failed on candidate {index}:\n{original}")
        self.index = index
        self.original = original

    def __reduce__(self):  # keep index/traceback across process boundaries
        return (EvaluationError, (self.index, self.original))


def _scalar(value: Any, index: int) -> float:
    try:  # None, "1.5" or a complex number is a bug in fn, never read as NaN, 1.5 or its real part
        arr = np.asarray(real_array(value), dtype=np.float64)
    except NotRealError as exc:
        raise ParameterError(
            f"the fitness function must return a real number; for candidate {index} it returned {exc.what}"
        ) from None
    if arr.size != 1:
        raise ParameterError(
            f"the fitness function must return one number per candidate; for candidate {index} it returned "
            f"shape {arr.shape} (use vectorized=True for a function that takes the whole (n, dim) batch)"
        )
    return float(arr.reshape(()))


class EvaluationTimeoutWarning(RuntimeWarning):
    """Some evaluations ran past the timeout and count as failed."""


def _eval_chunk(fn: Callable, X: np.ndarray, start: int, timeout: float | None = None):
    """fn on each row; returns (values, indices of the calls stopped by the timeout)."""
    out, timed_out = np.empty(len(X)), []
    for j, x in enumerate(X):
        try:
            with time_limit(timeout):
                value = fn(x)
        except EvaluationTimeout:
            out[j] = np.nan
            timed_out.append(start + j)
            continue
        except Exception:
            raise EvaluationError(start + j, traceback.format_exc()) from None
        out[j] = _scalar(value, start + j)
    return out, timed_out


def _eval_vectorized(fn: Callable, X: np.ndarray) -> np.ndarray:
    try:
        values = fn(X)
    except Exception:
        raise EvaluationError(-1, "(vectorized call on the whole batch)\n" + traceback.format_exc()) from None
    try:
        values = np.asarray(real_array(values), dtype=np.float64)
    except NotRealError as exc:
        where = "" if exc.index is None else f" for candidate {exc.index}"
        raise ParameterError(
            f"a vectorized fitness function must return real numbers; it returned {exc.what}{where}") from None
    if values.shape != (len(X),):
        raise ParameterError(
            f"a vectorized fitness function must return shape ({len(X)},) for a batch of shape {X.shape}; "
            f"got shape {values.shape}"
        )
    return values


class FunctionEvaluator:
    """Evaluates fn on (n, dim) batches; use as a context manager so workers live for the whole run.

    backend: "joblib" (local worker processes, used when n_jobs != 1), "dask" (a cluster at `address`,
    or a local one of n_jobs workers when address is None) or a `evograd.parallel.backends.Backend`.
    timeout: seconds one fn(x) call may take before its candidate counts as failed (None: no limit).
    """

    def __init__(self, fn: Callable, n_jobs: int = 1, vectorized: bool = False, backend: str | Backend = "joblib",
                 address: str | None = None, timeout: float | None = None, retries: int = 2):
        if not callable(fn):
            raise ParameterError(f"The 'fn' argument must be callable. Got {type(fn).__name__} instead.")
        self.fn = fn
        self.n_jobs = check_n_jobs(n_jobs, "the evaluator")
        self.vectorized = bool(vectorized)
        self.timeout = None if timeout is None else check_float(timeout, "timeout", "the evaluator", low=0.0,
                                                                low_inclusive=False)
        self.retries = check_int(retries, "retries", "the evaluator", low=0)
        check_backend(backend, address, "the evaluator")
        self._backend_args = (backend, address)
        self._backend: Backend | None = None
        self.timeouts = 0

    def __enter__(self) -> FunctionEvaluator:
        if not self.vectorized:
            backend, address = self._backend_args
            self._backend = make_backend(backend, self.n_jobs, address, owner="the evaluator")
        return self

    def __exit__(self, *exc) -> None:
        if self._backend is not None and not isinstance(self._backend_args[0], Backend):
            self._backend.close()  # a backend the caller passed in stays theirs to close
        self._backend = None

    def __call__(self, X) -> np.ndarray:
        """Values of the rows of X: an (n, dim) array or an optimizer's `ask_candidates()`, which travels
        to workers in its compact form (seeds instead of rows) and is rebuilt there bit for bit."""
        backend = self._backend or Backend()
        if isinstance(X, Candidates) and (self.vectorized or backend.n_workers() == 1):
            X = X.materialize()
        if not isinstance(X, Candidates):
            X = np.asarray(X, dtype=np.float64)
            if self.vectorized:
                return _eval_vectorized(self.fn, X)
            task = lambda a, b: (_eval_chunk, (self.fn, X[a:b], a, self.timeout), {})
        else:
            task = lambda a, b: (_eval_compact_chunk, (self.fn, X.slice_state(a, b), a, self.timeout), {})
        values, timed_out = run_slices(backend, task, len(X), _join_chunks, retries=self.retries)
        if timed_out:
            self.timeouts += len(timed_out)
            warn_repeating(f"candidates {timed_out} ran past timeout={self.timeout} s and count as failed (NaN)",
                           EvaluationTimeoutWarning, stacklevel=2)
        return values


def _eval_compact_chunk(fn: Callable, state: dict, start: int, timeout: float | None = None):
    return _eval_chunk(fn, Candidates.from_state(state).materialize(), start, timeout)


def _join_chunks(parts):
    return np.concatenate([p[0] for p in parts]), [i for p in parts for i in p[1]]


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
            "(the evograd.core.functions benchmarks work) or choose a gradient-free optimizer."
        ) from exc
    if not isinstance(out, torch.Tensor) or not out.requires_grad:
        raise ParameterError(
            "this optimizer needs gradients, but fn is not differentiable with torch autograd: its result does not "
            "depend on the input tensor through torch operations (did it convert to numpy or float?). Write fn with "
            "torch operations or choose a gradient-free optimizer."
        )
    if out.is_complex():
        raise ParameterError(f"the fitness function must return real numbers; it returned {out.dtype} values")
    out = out.reshape(-1)
    if out.shape[0] != len(X):
        raise ParameterError(f"fn returned {out.shape[0]} values for {len(X)} candidates")
    (grad,) = torch.autograd.grad(out.sum(), x)
    return out.detach().numpy().astype(np.float64), grad.numpy()
