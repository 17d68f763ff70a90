"""One running process per job directory, and processes that end with the process that started them.

**The job lock.** A job (`<out>/<method>/seed<k>/`) is run only by the process that holds an exclusive
`fcntl.flock` on `<job dir>/job.lock` for its whole life; the file holds that process's pid. The kernel
drops the lock when its holder dies however it dies (even `kill -9`), so a lock file left by a dead job
is simply locked again by the next one: there is no stale state to clean up. The file itself is never
deleted (deleting a lock file lets two processes lock two different files). `compare` takes a job's
lock before it touches the directory and hands the locked descriptor to the job process, so no other
process can start that job in between. Without `fcntl` (Windows) the lock does nothing.

**Dying with the parent.** `die_with_parent` makes a child process end when its parent ends, even by
`kill -9` (which signals nobody else): on Linux the kernel sends the child SIGKILL when its parent dies
(`prctl(PR_SET_PDEATHSIG)`; the signal follows the parent *thread* that started the child, so it is only
used where that thread lives as long as the child), and on every system a daemon thread polls
`os.getppid()` and ends the process once the parent is gone. Both are checked right after they are set
up, which closes the race where the parent died before the child could ask.
"""
from __future__ import annotations

import os
import signal
import sys
import threading
import time
from pathlib import Path

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None

LOCK_FILE = "job.lock"
LOCK_FD_ENV = "EVOGRAD_JOB_LOCK_FD"  # a locked descriptor handed to the job process by `compare`
PARENT_PID_ENV = "EVOGRAD_PARENT_PID"  # the process a job process must not outlive
LOCKED_EXIT = 75  # a job process that found its directory locked (EX_TEMPFAIL)


class JobRunningError(RuntimeError):
    """The job directory is locked by a running process."""

    def __init__(self, directory: str | os.PathLike, pid: int | None, more: int = 0):
        self.directory, self.pid = Path(directory), pid
        who = f"pid {pid}" if pid else "a process whose pid is not written yet"
        others = f" ({more} more job{'s' if more > 1 else ''} of this run {'are' if more > 1 else 'is'} running too)"
        super().__init__(f"{self.directory} is in use by a running job ({who}){others if more else ''}; wait for "
                         f"it to end or stop it{f' (kill {pid})' if pid else ''} before starting it again")


def _read_pid(path: Path) -> int | None:
    for _ in range(20):  # the holder writes its pid right after locking
        try:
            text = path.read_text().strip()
        except OSError:
            return None
        if text.isdigit():
            return int(text)
        time.sleep(0.01)
    return None


class JobLock:
    """The lock of one job directory. `acquire()` raises `JobRunningError` (naming the holder's pid) when
    another process holds it; use as a context manager to hold it for a block."""

    def __init__(self, directory: str | os.PathLike, fd: int | None = None):
        self.directory = Path(directory)
        self.path = self.directory / LOCK_FILE
        self.fd = fd

    def acquire(self) -> JobLock:
        if fcntl is None or self.fd is not None:
            return self
        self.directory.mkdir(parents=True, exist_ok=True)
        self.fd = _lock(self.path, create=True)
        self.write_pid(os.getpid())  # over the pid of a dead holder, if any
        return self

    @classmethod
    def inherited(cls, directory: str | os.PathLike, fd: int) -> JobLock:
        """Adopt the locked descriptor a parent handed over (pass_fds), and write this process's pid."""
        lock = cls(directory, fd)
        if fcntl is not None:
            os.set_inheritable(fd, False)  # this process's own children do not hold the job's lock
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # already ours: a no-op that proves it
        lock.write_pid(os.getpid())
        return lock

    def write_pid(self, pid: int) -> None:
        if self.fd is None:
            return
        data = f"{pid}\n".encode()
        os.ftruncate(self.fd, 0)
        os.pwrite(self.fd, data, 0)

    def detach(self) -> None:
        """Close this process's descriptor without unlocking: a child that shares it keeps the lock."""
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None

    def release(self) -> None:
        if self.fd is not None:
            if fcntl is not None:
                fcntl.flock(self.fd, fcntl.LOCK_UN)
            os.close(self.fd)
            self.fd = None

    def __enter__(self) -> JobLock:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


def _lock(path: Path, create: bool) -> int:
    """A descriptor of `path` holding its exclusive lock; JobRunningError names the holder otherwise."""
    fd = os.open(path, os.O_RDWR | (os.O_CREAT if create else 0), 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise JobRunningError(path.parent, _read_pid(path)) from None
    except BaseException:
        os.close(fd)
        raise
    return fd


def holder(directory: str | os.PathLike) -> int | None:
    """The pid of the running process that holds the job directory's lock, 0 if its pid is not known, or
    None when no process holds it. Changes nothing on disk."""
    path = Path(directory) / LOCK_FILE
    if fcntl is None:
        return None
    try:
        fd = _lock(path, create=False)
    except FileNotFoundError:
        return None
    except JobRunningError as exc:
        return exc.pid or 0
    fcntl.flock(fd, fcntl.LOCK_UN)
    os.close(fd)
    return None


def check_free(directory: str | os.PathLike) -> None:
    """Raise `JobRunningError` when a running process holds the job directory's lock."""
    pid = holder(directory)
    if pid is not None:
        raise JobRunningError(directory, pid or None)


# ------------------------------------------------------------------------------ dying with the parent
def die_with_parent(parent_pid: int | str | None = None, pdeathsig: bool = True, poll_s: float = 0.5) -> None:
    """End this process when `parent_pid` (default: the current parent) is no longer its parent.

    pdeathsig: also ask Linux for SIGKILL when the parent thread that started this process ends (use it
    only when that thread outlives this process, as `compare`'s does; pool workers started by a manager
    thread rely on the poll alone)."""
    parent = int(parent_pid) if parent_pid else os.getppid()
    if pdeathsig and sys.platform.startswith("linux"):
        _set_pdeathsig(signal.SIGKILL)
    if os.getppid() != parent:  # the parent died before we could ask: nobody will signal us
        os._exit(1)
    threading.Thread(target=_watch_parent, args=(parent, poll_s), name="evograd-parent-watch", daemon=True).start()


def _set_pdeathsig(sig: int) -> None:
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        PR_SET_PDEATHSIG = 1
        libc.prctl(PR_SET_PDEATHSIG, int(sig), 0, 0, 0)
    except (OSError, AttributeError):  # pragma: no cover - no prctl: the poll below still ends us
        pass


def _watch_parent(parent: int, poll_s: float) -> None:
    while True:
        time.sleep(poll_s)
        if os.getppid() != parent:
            os._exit(1)


def worker_initializer(parent_pid: int) -> None:
    """Initializer of local pool workers (see evograd.parallel.backends): they end with the process that uses them."""
    die_with_parent(parent_pid, pdeathsig=False)
