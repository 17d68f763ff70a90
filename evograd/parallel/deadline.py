"""A wall-clock limit on one call into user code (a fitness function, an env's reset or step).

A hanging evaluation must not stall a whole generation forever, so an optional per-evaluation timeout
turns it into a failed one (NaN fitness, ranked worst). Two mechanisms, because Python can only
interrupt a thread from outside in limited ways:

* in a process's main thread (serial runs, joblib/loky workers): SIGALRM through `setitimer`. The
  handler raises in the guarded code, which also interrupts blocking calls such as `time.sleep`.
* in any other thread (Dask runs tasks in worker threads): one watchdog thread per process raises
  the exception asynchronously in the guarded thread (`PyThreadState_SetAsyncExc`). That fires at the
  next Python bytecode, so pure-Python hangs are stopped, but a call blocked inside C code is only
  stopped once it returns to Python.
"""
from __future__ import annotations

import ctypes
import signal
import threading
import time
from contextlib import contextmanager


class EvaluationTimeout(Exception):
    """A guarded call ran past its time limit."""


def _on_alarm(signum, frame):
    raise EvaluationTimeout()


class _Watchdog:
    """Raises EvaluationTimeout in threads whose deadline has passed; polls every 5 ms."""

    def __init__(self):
        self._lock = threading.Lock()
        self._deadlines: dict[int, float] = {}
        threading.Thread(target=self._loop, name="evograd-timeout-watchdog", daemon=True).start()

    def arm(self, seconds: float) -> int:
        tid = threading.get_ident()
        with self._lock:
            self._deadlines[tid] = time.monotonic() + seconds
        return tid

    def disarm(self, tid: int) -> None:
        with self._lock:
            if self._deadlines.pop(tid, None) is None:  # it fired: drop the exception if still pending
                ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(tid), None)

    def _loop(self) -> None:
        while True:
            time.sleep(0.005)
            now = time.monotonic()
            with self._lock:
                for tid in [t for t, d in self._deadlines.items() if d <= now]:
                    del self._deadlines[tid]
                    ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(tid),
                                                               ctypes.py_object(EvaluationTimeout))


_watchdog: _Watchdog | None = None
_watchdog_lock = threading.Lock()


def _get_watchdog() -> _Watchdog:
    global _watchdog
    with _watchdog_lock:
        if _watchdog is None:
            _watchdog = _Watchdog()
        return _watchdog


@contextmanager
def time_limit(seconds: float | None):
    """Raise EvaluationTimeout inside the block once it has run `seconds`; no limit for None."""
    if seconds is None:
        yield
        return
    if threading.current_thread() is threading.main_thread() and hasattr(signal, "setitimer"):
        previous = signal.signal(signal.SIGALRM, _on_alarm)
        signal.setitimer(signal.ITIMER_REAL, float(seconds))
        try:
            yield
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, previous)
    else:
        dog = _get_watchdog()
        tid = dog.arm(float(seconds))
        try:
            yield
        finally:
            dog.disarm(tid)
