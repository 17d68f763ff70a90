"""Where a generation's evaluations run: this process, local joblib (loky) workers, or a Dask cluster.

Every evaluator splits a population into contiguous slices and hands `run_slices` a function that
builds the task for rows a..b-1. Results never depend on the backend or the split, because every
evaluation is a pure function of its candidate's coordinates (parameters, run seed, generation,
candidate index), so the same run gives bit-identical results serially, on 1, 2 or 4 local workers,
or on a cluster.

That purity is also what makes lost work safe to redo. When a worker process dies mid-generation
(SIGKILL, out of memory, a segfaulting env), the slices it took down are re-run on fresh workers, up to
`retries` times. Slices still lost after that are re-run one candidate at a time, so a candidate that
kills every worker it touches is named in a `WorkerLostError` instead of taking its neighbours with it.
A result is never missing or counted twice: each slice's result is kept once, in candidate order.
Exceptions raised by user code (an env, a fitness function) are not retried: they already carry the
candidate index and the original traceback and are re-raised in the parent.
"""
from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from ..core.progress import warn_repeating
from ..core.validation import ParameterError
from .joblock import worker_initializer

Task = tuple  # (function, args, kwargs): what one worker runs for one slice

BACKENDS = ("joblib", "dask")


class WorkerLostError(RuntimeError):
    """Worker processes kept dying while evaluating these candidates; their results do not exist."""

    def __init__(self, candidates: Sequence[int], attempts: int, detail: str = ""):
        self.candidates = [int(c) for c in candidates]
        self.attempts = attempts
        super().__init__(
            f"a worker process died every time it evaluated candidate(s) {self.candidates} ({attempts} attempts on "
            f"fresh workers, the last one alone); no result exists for them. Evaluating them is what kills the "
            f"process (a crash or the out-of-memory killer); run one in this process to see why. A run with "
            f"checkpoints can be resumed once that is fixed.{(' Last error: ' + detail) if detail else ''}")

    def __reduce__(self):
        return (WorkerLostError, (self.candidates, self.attempts))


class WorkerLostWarning(RuntimeWarning):
    """A worker died; its lost evaluations are being re-run."""


class _Lost:
    """Marker for a slice whose worker died before returning."""

    def __init__(self, error: BaseException):
        self.error = error


class Backend:
    """Runs lists of tasks and returns their results in order; a `_Lost` marks a task whose worker died."""

    name = "serial"

    def n_workers(self) -> int:
        return 1

    def run(self, tasks: Sequence[Task]) -> list[Any]:
        return [fn(*args, **kw) for fn, args, kw in tasks]

    def close(self) -> None:
        pass


class JoblibBackend(Backend):
    """joblib's loky process pool, used through its executor so each task's fate is known on its own
    (joblib.Parallel fails the whole batch, and drops finished results, when one worker dies)."""

    name = "joblib"

    def __init__(self, n_jobs: int = -1):
        self.n_jobs = n_jobs

    def n_workers(self) -> int:
        return resolve_n_jobs(self.n_jobs)

    def run(self, tasks):
        from joblib.externals.loky import get_reusable_executor
        from joblib.externals.loky.process_executor import BrokenProcessPool

        # a reusable pool: workers (and the envs cached in them) live across generations; after a worker
        # died this returns a fresh pool. Its workers end with this process, even when it is killed with
        # kill -9 (loky's own workers would otherwise wait out their idle timeout as orphans).
        executor = get_reusable_executor(max_workers=self.n_workers(), timeout=600,
                                         initializer=worker_initializer, initargs=(os.getpid(),))
        futures = [executor.submit(fn, *args, **kw) for fn, args, kw in tasks]
        out = []
        for f in futures:
            try:
                out.append(f.result())
            except BrokenProcessPool as exc:  # TerminatedWorkerError is a subclass
                out.append(_Lost(exc))
        return out


class DaskBackend(Backend):
    """A Dask distributed cluster: `address` of a running scheduler, or None for a local cluster of
    `n_workers` single-threaded worker processes started (and closed) by this backend.

    The machines that run the workers need evograd (and the env's packages) installed; functions and
    env constructors defined in a script travel by cloudpickle.
    """

    name = "dask"

    def __init__(self, address: str | None = None, n_workers: int = 2):
        from distributed import Client

        self.address, self._cluster = address, None
        if address is None or address == "local":
            self._cluster = local_cluster(n_workers)
            self.client = Client(self._cluster)
        else:
            self.client = Client(address, timeout="30s")

    def n_workers(self) -> int:
        info = self.client.scheduler_info(n_workers=-1)["workers"].values()
        return max(1, sum(int(w.get("nthreads", 1)) for w in info))

    def run(self, tasks):
        from distributed import KilledWorker

        # the scheduler itself moves a dead worker's tasks to the remaining workers; KilledWorker means a
        # task was running on `distributed.scheduler.allowed-failures` workers that all died
        futures = [self.client.submit(fn, *args, pure=False, **kw) for fn, args, kw in tasks]
        out = []
        for f in futures:
            try:
                out.append(f.result())
            except KilledWorker as exc:
                out.append(_Lost(exc))
        return out

    def close(self) -> None:
        self.client.close()
        if self._cluster is not None:
            self._cluster.close()


def local_cluster(n_workers: int):
    """A Dask LocalCluster of `n_workers` single-threaded worker processes on loopback, quiet. Its worker
    processes end with this process, even by kill -9 (distributed gives each one a pipe to its parent)."""
    try:
        from distributed import LocalCluster
    except ImportError:
        raise ImportError("the dask backend needs Dask distributed: pip install 'evograd[dask]'") from None
    import logging

    return LocalCluster(n_workers=int(n_workers), threads_per_worker=1, processes=True, dashboard_address=None,
                        silence_logs=logging.ERROR)


def check_backend(backend: Any, address: str | None, owner: str) -> None:
    """A backend name from BACKENDS (or a Backend object), and an address only with backend='dask'."""
    if not (isinstance(backend, Backend) or backend in BACKENDS):
        raise ParameterError(f"The 'backend' parameter of {owner} must be one of {list(BACKENDS)} or a Backend. "
                             f"Got {backend!r} instead.")
    if address is not None and backend != "dask":
        raise ParameterError(f"The 'address' parameter of {owner} is a Dask scheduler address; it needs "
                             f"backend='dask'. Got backend={backend!r}.")


def make_backend(backend: str | Backend | None = "joblib", n_jobs: int = 1, address: str | None = None,
                 owner: str = "evaluator") -> Backend:
    """The backend a user asked for by name (or given as an object); serial when there is nothing to split."""
    check_backend(backend, address, owner)
    if isinstance(backend, Backend):
        return backend
    if backend == "dask":
        return DaskBackend(address, n_workers=resolve_n_jobs(n_jobs))
    return Backend() if n_jobs == 1 else JoblibBackend(n_jobs)


def check_n_jobs(n_jobs: Any, owner: str) -> int:
    if isinstance(n_jobs, bool) or not isinstance(n_jobs, int) or n_jobs == 0 or n_jobs < -1:
        raise ParameterError(f"The 'n_jobs' parameter of {owner} must be an int >= 1 or -1 (all cores). "
                             f"Got {n_jobs!r} instead.")
    return n_jobs


def resolve_n_jobs(n_jobs: int) -> int:
    """-1 means every core."""
    from joblib import cpu_count

    return cpu_count() if n_jobs == -1 else n_jobs


def slice_spans(n: int, n_workers: int) -> list[tuple[int, int]]:
    """Rows 0..n-1 as one contiguous, non-empty (a, b) span per worker, in candidate order."""
    bounds = np.linspace(0, n, max(1, min(n, n_workers)) + 1).astype(int)
    return [(int(a), int(b)) for a, b in zip(bounds[:-1], bounds[1:]) if b > a]


def run_slices(backend: Backend, make_task: Callable[[int, int], Task], n: int, combine: Callable[[list], Any],
               ids: np.ndarray | None = None, retries: int = 2) -> Any:
    """Evaluate rows 0..n-1 as one contiguous slice per worker and combine the slice results in order.

    make_task(a, b) builds the task for rows a..b-1; ids maps rows to the candidate numbers used in
    messages. Lost slices are retried and then isolated as described in the module docstring.
    """
    ids = np.arange(n) if ids is None else np.asarray(ids)
    pending = slice_spans(n, backend.n_workers())
    done: dict[tuple[int, int], Any] = {}
    last_error = None
    for attempt in range(retries + 1):
        results = backend.run([make_task(a, b) for a, b in pending])
        lost = [span for span, r in zip(pending, results) if isinstance(r, _Lost)]
        done.update((span, r) for span, r in zip(pending, results) if not isinstance(r, _Lost))
        if not lost:
            break
        last_error = next(r for r in results if isinstance(r, _Lost)).error
        rows = [int(i) for a, b in lost for i in ids[a:b]]
        action = "re-running them on fresh workers" if attempt < retries else "re-running them one at a time"
        warn_repeating(f"a worker process died while evaluating candidates {_ranges(rows)} "
                       f"({type(last_error).__name__}); {action}", WorkerLostWarning, stacklevel=3)
        pending = lost
    else:
        dead = []
        for a, b in pending:
            for i in range(a, b):
                (r,) = backend.run([make_task(i, i + 1)])
                if isinstance(r, _Lost):
                    dead.append(int(ids[i]))
                    last_error = r.error
                else:
                    done[(i, i + 1)] = r
        if dead:
            raise WorkerLostError(dead, retries + 2, f"{type(last_error).__name__}: {last_error}")
    return combine([done[span] for span in sorted(done)])


def _ranges(rows: list[int]) -> str:
    """[0, 1, 2, 5] -> '0-2, 5' (a lost slice can be long)."""
    parts, start = [], None
    for i, r in enumerate(rows):
        if start is None:
            start = r
        if i + 1 == len(rows) or rows[i + 1] != r + 1:
            parts.append(str(start) if start == r else f"{start}-{r}")
            start = None
    return ", ".join(parts)
