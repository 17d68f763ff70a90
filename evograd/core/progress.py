"""What a run prints while it works: progress, and warnings that would repeat every generation.

`Progress` is a tqdm bar on a terminal (or in a notebook). Anywhere else (a file, a pipe, a CI or cluster
job log) a redrawn bar is only noise, so it writes plain lines instead, never a carriage return or an
escape code: one line for each event its caller marks (an evaluation of the policy), one at each
`milestones`-th of the budget where the caller has no events (function minimization), a heartbeat when
nothing was printed for `heartbeat_s`, and the final state when it closes. Lines go to the stream the bar
would use (stderr by default).

`warn_repeating` is `warnings.warn` for a warning that can fire every generation (non-finite values,
timed-out evaluations, lost workers). Inside a `run_warnings()` scope (`train`, `minimize`) the first one
is shown and later ones from the same place are only counted; when the scope ends, one more warning of the
same category states how many there were. Outside a scope it is a plain `warnings.warn`. Both go through
the `warnings` machinery, so filters (`ignore`, `error`, pytest.warns) apply to them as to any warning.
"""
from __future__ import annotations

import contextlib
import contextvars
import sys
import time
import warnings
from typing import Any, TextIO


def is_terminal(stream: Any) -> bool:
    """Whether `stream` redraws a bar in place: a TTY, or a Jupyter/IPython kernel's output stream."""
    if type(stream).__module__.split(".")[0] in ("ipykernel", "IPython"):
        return True
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError, OSError):
        return False


def fmt(v: Any) -> str:
    """A short human form: thousands separators for ints, 4 significant digits for floats."""
    if isinstance(v, bool) or v is None:
        return str(v)
    if isinstance(v, int):
        return f"{v:,}"
    if isinstance(v, float):
        return f"{v:,.0f}" if 1e4 <= abs(v) < 1e15 else f"{v:.4g}"
    return str(v)


class Progress:
    """Progress of one run towards `total` (None: unknown) in `unit`s.

    `update(n, fields, event=False)` sets the position to n (absolute) with the fields shown beside it;
    `event=True` marks a moment worth a line in a log (e.g. an evaluation)."""

    def __init__(self, desc: str, total: float | None = None, unit: str = "it", initial: float = 0,
                 stream: TextIO | None = None, milestones: int | None = None, heartbeat_s: float = 60.0):
        self.desc, self.total, self.unit = desc, total, unit
        self.stream = sys.stderr if stream is None else stream
        self.n, self.fields = initial, {}
        self.t0 = self._last_line = time.perf_counter()
        self.heartbeat_s, self.milestones = heartbeat_s, milestones
        self._step = (total / milestones) if (milestones and total) else None
        self._next = (initial // self._step + 1) * self._step if self._step else None
        self._printed = True  # nothing new to report until the first update
        self.bar = None
        if is_terminal(self.stream):
            from tqdm.auto import tqdm

            self.bar = tqdm(total=total, initial=initial, unit=unit, desc=desc, file=self.stream)

    @property
    def plain(self) -> bool:
        return self.bar is None

    def update(self, n: float, fields: dict[str, Any] | None = None, event: bool = False) -> None:
        fields = dict(fields or {})
        if self.bar is not None:
            self.bar.update(n - self.bar.n)
            if fields:
                self.bar.set_postfix({k: fmt(v) for k, v in fields.items()}, refresh=False)
            return
        self.n, self.fields, self._printed = n, fields, False
        now = time.perf_counter()
        due = event or now - self._last_line >= self.heartbeat_s
        if self._next is not None and n >= self._next:
            due = True
            while self._next <= n:
                self._next += self._step
        if due:
            self._line(now)

    def _line(self, now: float) -> None:
        where = f"{fmt(self.n)}/{fmt(self.total)} {self.unit}" if self.total else f"{fmt(self.n)} {self.unit}"
        parts = [f"{self.desc}: {now - self.t0:7.1f} s", where] + [f"{k} {fmt(v)}" for k, v in self.fields.items()]
        print("  ".join(parts), file=self.stream, flush=True)
        self._last_line, self._printed = now, True

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None
        elif not self._printed:  # the log ends with the final state
            self._line(time.perf_counter())


def progress(enabled: bool, desc: str, total: float | None, unit: str, **kwargs) -> Progress | None:
    """A `Progress`, or None when progress is off (the callers' `progress=False`)."""
    return Progress(desc, total, unit, **kwargs) if enabled else None


# ------------------------------------------------------------------------------------------- warnings
_SCOPE: contextvars.ContextVar[dict | None] = contextvars.ContextVar("evograd_run_warnings", default=None)
_REPEAT_NOTE = " (repeats in this run are counted, and the count is shown when it ends)"


def warn_repeating(message: str, category: type[Warning], stacklevel: int = 2) -> None:
    """`warnings.warn(message, category, stacklevel)`, shown once per run scope per call site."""
    counts = _SCOPE.get()
    if counts is None:
        warnings.warn(message, category, stacklevel=stacklevel + 1)
        return
    caller = sys._getframe(1)
    key = (category, caller.f_code.co_filename, caller.f_lineno)
    entry = counts.get(key)
    if entry is not None:
        entry[0] += 1
        return
    counts[key] = [1, message]
    warnings.warn(message + _REPEAT_NOTE, category, stacklevel=stacklevel + 1)


@contextlib.contextmanager
def run_warnings():
    """One run: repeated `warn_repeating` warnings are counted and summarised at the end (nested scopes
    belong to the outermost one)."""
    if _SCOPE.get() is not None:
        yield
        return
    counts: dict = {}
    token = _SCOPE.set(counts)
    try:
        yield
    finally:
        _SCOPE.reset(token)
        for (category, _, _), (n, first) in counts.items():
            if n > 1:
                warnings.warn(f"{category.__name__} was raised {n} times in this run, shown once; the first: {first}",
                              category, stacklevel=3)
