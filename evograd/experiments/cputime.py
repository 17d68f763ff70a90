"""The CPU seconds a job spends, its worker processes included, kept across resumes.

A comparison's cost is CPU time, not wall-clock: two jobs side by side on a shared machine each take longer
without costing more, and a population method's work happens in its worker processes. So a job counts the
user + system time of its whole process tree: itself, its children already reaped (the kernel adds them to
the parent's own figures) and its live descendants (read from /proc on Linux; elsewhere only reaped ones
count, and on Windows only the job process itself). The total is written to the job directory when the job
starts, every `interval` seconds and at the end, and a resumed job starts from what was written, so a run
resumed over several sessions reports all of them (the work redone after a kill, from the last checkpoint
or, for a job that had none, from the start, counts too); a job killed between two writes loses at most
`interval` seconds of its count.
Processes outside the job's tree are not counted: a Dask cluster shared by the comparison, Ray actors, a
descendant whose parent exited before it (re-parented away).
"""
from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path

from ..core.serialization import StateError
from .jobfiles import atomic_write_text

try:
    import resource
except ImportError:  # Windows: the job process's own time only
    resource = None


CPU_JSON = "cpu.json"


def _proc_stat(pid: int) -> tuple[int, float] | None:
    """(parent pid, own + reaped children's CPU seconds) of a live process, from /proc/<pid>/stat."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text[text.rindex(")") + 2:].split()  # after "pid (comm) ": state ppid ... utime stime cutime cstime
    tick = os.sysconf("SC_CLK_TCK")
    return int(fields[1]), sum(int(f) for f in fields[11:15]) / tick


def tree_cpu_seconds(pid: int | None = None) -> float:
    """User + system seconds of this process, its reaped children and its live descendants."""
    if resource is None:
        return time.process_time()
    own = resource.getrusage(resource.RUSAGE_SELF)
    reaped = resource.getrusage(resource.RUSAGE_CHILDREN)
    total = own.ru_utime + own.ru_stime + reaped.ru_utime + reaped.ru_stime
    root = os.getpid() if pid is None else pid
    if not os.path.isdir("/proc"):
        return total
    children: dict[int, list[tuple[int, float]]] = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            st = _proc_stat(int(name))
            if st is not None:
                children.setdefault(st[0], []).append((int(name), st[1]))
    todo = [root]
    while todo:
        for child, seconds in children.get(todo.pop(), []):
            total += seconds
            todo.append(child)
    return total


def read_cpu_seconds(d: str | os.PathLike) -> float:
    """What a job directory recorded so far (0 for none or an unreadable file)."""
    try:
        value = json.loads((Path(d) / CPU_JSON).read_text()).get("cpu_s", 0.0)
        return float(value) if isinstance(value, (int, float)) and value >= 0 else 0.0
    except (OSError, ValueError, AttributeError):
        return 0.0


class CPUMeter:
    """Counts a job's CPU seconds into `d/cpu.json` while it runs (see the module docstring)."""

    def __init__(self, d: str | os.PathLike, resume: bool, interval: float = 15.0):
        self.path, self.resume = Path(d) / CPU_JSON, resume
        self.base = read_cpu_seconds(d) if resume else 0.0
        self.start_s = tree_cpu_seconds()  # what this process spent before the job (imports) is not the job's
        self.interval, self._stop = interval, threading.Event()
        self._thread = threading.Thread(target=self._loop, name="evograd-cpu-meter", daemon=True)

    def total(self) -> float:
        return self.base + max(0.0, tree_cpu_seconds() - self.start_s)

    def _write(self) -> None:
        atomic_write_text(self.path, json.dumps({"cpu_s": self.total()}))

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            self._try_write()

    def __enter__(self) -> CPUMeter:
        if not self.resume:  # a fresh start: a file left by an earlier run in this directory must not stand for it
            self._try_write()
        self._thread.start()
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self._stop.set()
        self._thread.join()
        if not (exc_type is not None and issubclass(exc_type, StateError)):  # a refused checkpoint: the resume
            self._try_write()                                                # leaves the directory as it was

    def _try_write(self) -> None:
        try:  # a count that cannot be written must not fail the job it counts
            self._write()
        except OSError:
            pass
