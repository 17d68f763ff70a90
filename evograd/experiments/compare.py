"""`evograd compare`: every (method, seed) job of a config, in parallel, then one table and the plots.

Each job runs in its own process (`python -m evograd.experiments.job`), so a crash, a kill or a hang in one job
never takes the others down: a job that dies without writing its result is recorded as failed with its
exit status. Jobs write progress to their run directory; this process only polls those files to drive
the progress display (bars on a terminal, one line per job event in a log), and builds the summary from
what is on disk (so a resumed comparison reports the same way as an uninterrupted one).

Job processes, and their own worker processes, end when this process ends, even by `kill -9`; each holds
its job directory's lock while it lives, so a comparison resumed (or started again) on the same directory
refuses to start while one of them still runs, naming its pid (see evograd.parallel.joblock).
"""
from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from ..core.progress import fmt, is_terminal
from ..parallel import joblock
from .experiment import DASK_ADDRESS_ENV, RESULT, STATUS, job_dir
from .runmeta import record_session

CONFIG_JSON = "config.json"


def jobs_of(config: dict) -> list[tuple[str, int]]:
    return [(label, seed) for label in config["methods"] for seed in config["seeds"]]


def _job_done(out: Path, label: str, seed: int) -> bool:
    path = job_dir(out, label, seed) / RESULT
    if not path.exists():
        return False
    try:
        return json.loads(path.read_text()).get("status") == "ok"
    except (OSError, ValueError):
        return False


def _fraction(out: Path, label: str, seed: int) -> float:
    try:
        st = json.loads((job_dir(out, label, seed) / STATUS).read_text())
    except (OSError, ValueError):
        return 0.0
    done, budget = st.get("env_steps", st.get("evals")), st.get("budget")
    if done is None or not budget:
        return 0.0
    return max(0.0, min(1.0, float(done) / float(budget)))


def run_compare(config: dict, out: str | os.PathLike, resume: bool = False, jobs: int | None = None,
                quiet: bool = False, python: str | None = None) -> list[dict]:
    """Run (or resume) all jobs of `config` under `out`; returns the per-job results."""
    out = Path(out)
    check_not_running(config, out)
    out.mkdir(parents=True, exist_ok=True)
    (out / CONFIG_JSON).write_text(json.dumps(config, indent=2))
    record_session(out, resume)  # run_meta.json: versions, git revision, machine of this start or resume
    with _shared_cluster(config) as cluster_env:
        return _run_jobs(config, out, resume, jobs, quiet, python, cluster_env)


@contextlib.contextmanager
def _shared_cluster(config: dict):
    """workers.backend dask without an address: one local cluster for all jobs, not one per job. Its
    address reaches the jobs through the environment (config.json stays as written, so a resumed
    comparison starts a fresh cluster)."""
    w = config.get("workers") or {}
    if w.get("backend") != "dask" or w.get("address") is not None:
        yield {}
        return
    from ..parallel.backends import local_cluster

    with local_cluster(w.get("n", 1)) as cluster:
        yield {DASK_ADDRESS_ENV: cluster.scheduler_address}


def check_not_running(config: dict, out: str | os.PathLike) -> None:
    """Refuse (JobRunningError, naming the pid) when a job of `config` under `out` still runs: a process
    left by a killed comparison, or another comparison on the same directory."""
    running = [(lb, s, pid) for lb, s in jobs_of(config)
               if (pid := joblock.holder(job_dir(out, lb, s))) is not None]
    if running:
        label, seed, pid = running[0]
        raise joblock.JobRunningError(job_dir(out, label, seed), pid or None, more=len(running) - 1)


def _run_jobs(config: dict, out: Path, resume: bool, jobs: int | None, quiet: bool, python: str | None,
              extra_env: dict) -> list[dict]:
    todo = [(lb, s) for lb, s in jobs_of(config) if not (resume and _job_done(out, lb, s))]
    n_parallel = max(1, int(jobs or config.get("jobs", 1)))
    running: dict[tuple[str, int], subprocess.Popen] = {}
    show = None if quiet else _Display(config, out, len(jobs_of(config)), len(todo), n_parallel)
    env = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1", **extra_env)
    queue = list(todo)
    try:
        while queue or running:
            while queue and len(running) < n_parallel:
                key = queue.pop(0)
                proc = _start(key, out, resume, python, env, show)
                if proc is not None:
                    running[key] = proc
            time.sleep(0.25)
            for key, proc in list(running.items()):
                if proc.poll() is None:
                    if show is not None:
                        show.progress(key, _fraction(out, *key))
                    continue
                del running[key]
                _record_exit(out, key, proc.returncode)
                if show is not None:
                    show.ended(key, _read_result(out, *key))
    except KeyboardInterrupt:
        for proc in running.values():
            proc.send_signal(signal.SIGTERM)
        raise
    finally:
        if show is not None:
            show.close()
    return [_read_result(out, lb, s) for lb, s in jobs_of(config)]


def _start(key: tuple[str, int], out: Path, resume: bool, python: str | None, env: dict,
           show: _Display | None) -> subprocess.Popen | None:
    """Start one job process holding the job's lock (taken here, before the directory is touched, and
    handed over as an open descriptor), and ending with this process (see evograd.parallel.joblock)."""
    label, seed = key
    d = job_dir(out, label, seed)
    lock = joblock.JobLock(d)
    try:
        lock.acquire()
    except joblock.JobRunningError as exc:  # started elsewhere since check_not_running: leave it alone
        if show is not None:
            show.event(key, f"not started: {exc}")
        return None
    try:
        for stale in (RESULT, STATUS):
            (d / stale).unlink(missing_ok=True)
        cmd = [python or sys.executable, "-m", "evograd.experiments.job", str(out / CONFIG_JSON), label, str(seed),
               str(out)] + (["--resume"] if resume else [])
        job_env = dict(env, **{joblock.LOCK_FD_ENV: str(lock.fd), joblock.PARENT_PID_ENV: str(os.getpid())})
        with open(d / "job.log", "ab") as log:
            proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=job_env, pass_fds=(lock.fd,))
    except BaseException:
        lock.release()
        raise
    lock.write_pid(proc.pid)
    lock.detach()  # the job process holds the lock now, for as long as it lives
    if show is not None:
        show.started(key, proc.pid)
    return proc


class _Display:
    """Progress of a comparison: on a terminal an overall bar and one bar per running job; anywhere else
    (a log file, a pipe) one plain line per job event (started, finished with its result, failed with
    its reason), never a carriage return or an escape code."""

    def __init__(self, config: dict, out: Path, n_jobs: int, n_todo: int, n_parallel: int):
        self.name, self.stream, self.t0 = config["name"], sys.stderr, time.perf_counter()
        self.started_at: dict[tuple[str, int], float] = {}
        self.n_jobs, self.done = n_jobs, n_jobs - n_todo
        self.bars: dict[tuple[str, int], object] = {}
        self.overall = None
        if is_terminal(self.stream):
            from tqdm.auto import tqdm

            self.overall = tqdm(total=n_jobs, initial=self.done, unit="job", desc=f"{self.name}: jobs",
                                position=0, file=self.stream)
        else:
            self._line(f"{n_jobs} jobs ({self.done} already done), {n_todo} to run, {n_parallel} at a time, "
                       f"in {out}")

    def _line(self, text: str) -> None:
        print(f"{self.name}: {time.perf_counter() - self.t0:7.1f} s  {text}", file=self.stream, flush=True)

    def event(self, key: tuple[str, int], text: str) -> None:
        line = f"{key[0]} seed {key[1]}: {text}"
        if self.overall is not None:
            self.overall.write(line, file=self.stream)
        else:
            self._line(line)

    def started(self, key: tuple[str, int], pid: int) -> None:
        self.started_at[key] = time.perf_counter()
        if self.overall is None:
            self._line(f"{key[0]} seed {key[1]}: started (pid {pid})")
            return
        from tqdm.auto import tqdm

        self.bars[key] = tqdm(total=100, desc=f"{key[0]} seed {key[1]}", position=1 + len(self.bars), leave=False,
                              bar_format="{desc:>24} {percentage:3.0f}%|{bar}|", file=self.stream)

    def progress(self, key: tuple[str, int], fraction: float) -> None:
        bar = self.bars.get(key)
        if bar is not None:
            bar.n = int(100 * fraction)
            bar.refresh()

    def ended(self, key: tuple[str, int], result: dict) -> None:
        self.done += 1
        took = time.perf_counter() - self.started_at.pop(key, time.perf_counter())
        if key in self.bars:
            self.bars.pop(key).close()
        if self.overall is not None:
            self.overall.update(1)
            if result.get("status") != "ok":
                self.event(key, f"failed: {_one_line(result.get('error'))}")
            return
        if result.get("status") == "ok":
            what = ", ".join(f"{k} {fmt(result[k])}" for k in _SHOWN if result.get(k) is not None)
            self._line(f"{key[0]} seed {key[1]}: finished in {took:.1f} s: {what} ({self.done}/{self.n_jobs} done)")
        else:
            self._line(f"{key[0]} seed {key[1]}: failed after {took:.1f} s: {_one_line(result.get('error'))} "
                       f"({self.done}/{self.n_jobs} done)")

    def close(self) -> None:
        for bar in self.bars.values():
            bar.close()
        if self.overall is not None:
            self.overall.close()


_SHOWN = ("best_eval_return", "final_eval_return", "env_steps", "best_value", "evals")


def _one_line(error, limit: int = 300) -> str:
    """An error on one line: its first line and, when a traceback follows, the line that ends it."""
    lines = [ln.strip() for ln in str(error or "").splitlines() if ln.strip()] or ["no error message"]
    text = lines[0] if len(lines) == 1 else f"{lines[0].rstrip(':')}: {lines[-1]}"
    return text if len(text) <= limit else text[:limit - 3] + "..."


def _record_exit(out: Path, key: tuple[str, int], returncode: int) -> None:
    """A job process that ended without a result (killed, crashed) is recorded as failed."""
    label, seed = key
    path = job_dir(out, label, seed) / RESULT
    if path.exists() or returncode == joblock.LOCKED_EXIT:  # locked: the directory is another process's
        return
    how = f"killed by signal {-returncode}" if returncode < 0 else f"exited with status {returncode}"
    log = job_dir(out, label, seed) / "job.log"
    tail = log.read_text(errors="replace").strip().splitlines()[-5:] if log.exists() else []
    path.write_text(json.dumps({"method": label, "seed": seed, "status": "failed",
                                "error": f"job process {how} before writing a result" + (
                                    ": " + " | ".join(tail) if tail else "")}, indent=2))


def _read_result(out: Path, label: str, seed: int) -> dict:
    try:
        return json.loads((job_dir(out, label, seed) / RESULT).read_text())
    except (OSError, ValueError):
        return {"method": label, "seed": seed, "status": "missing"}
