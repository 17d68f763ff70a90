"""`evograd compare`: every (method, seed) job of a config, in parallel, then one table and the plots.

Each job runs in its own process (`python -m evograd.job`), so a crash, a kill or a hang in one job
never takes the others down: a job that dies without writing its result is recorded as failed with its
exit status. Jobs write progress to their run directory; this process only polls those files to drive
the progress bars, and builds the summary from what is on disk (so a resumed comparison reports the
same way as an uninterrupted one).
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

from .experiment import DASK_ADDRESS_ENV, RESULT, STATUS, job_dir

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
    out.mkdir(parents=True, exist_ok=True)
    (out / CONFIG_JSON).write_text(json.dumps(config, indent=2))
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
    from .parallel import local_cluster

    with local_cluster(w.get("n", 1)) as cluster:
        yield {DASK_ADDRESS_ENV: cluster.scheduler_address}


def _run_jobs(config: dict, out: Path, resume: bool, jobs: int | None, quiet: bool, python: str | None,
              extra_env: dict) -> list[dict]:
    todo = [(lb, s) for lb, s in jobs_of(config) if not (resume and _job_done(out, lb, s))]
    n_parallel = max(1, int(jobs or config.get("jobs", 1)))
    running: dict[tuple[str, int], subprocess.Popen] = {}
    bars: dict[tuple[str, int], object] = {}
    overall = None
    if not quiet:
        from tqdm.auto import tqdm

        overall = tqdm(total=len(jobs_of(config)), initial=len(jobs_of(config)) - len(todo), unit="job",
                       desc=f"{config['name']}: jobs", position=0)
    env = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1", **extra_env)
    queue = list(todo)
    try:
        while queue or running:
            while queue and len(running) < n_parallel:
                label, seed = queue.pop(0)
                d = job_dir(out, label, seed)
                d.mkdir(parents=True, exist_ok=True)
                for stale in (RESULT, STATUS):
                    (d / stale).unlink(missing_ok=True)
                cmd = [python or sys.executable, "-m", "evograd.job", str(out / CONFIG_JSON), label, str(seed),
                       str(out)] + (["--resume"] if resume else [])
                with open(d / "job.log", "ab") as log:
                    running[(label, seed)] = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
                if overall is not None:
                    from tqdm.auto import tqdm

                    slot = 1 + len(bars)
                    bars[(label, seed)] = tqdm(total=100, desc=f"{label} seed {seed}", position=slot,
                                               leave=False, bar_format="{desc:>24} {percentage:3.0f}%|{bar}|")
            time.sleep(0.25)
            for key, proc in list(running.items()):
                if key in bars:
                    bar = bars[key]
                    bar.n = int(100 * _fraction(out, *key))
                    bar.refresh()
                if proc.poll() is None:
                    continue
                del running[key]
                _record_exit(out, key, proc.returncode)
                if key in bars:
                    bars.pop(key).close()
                if overall is not None:
                    overall.update(1)
    except KeyboardInterrupt:
        for proc in running.values():
            proc.send_signal(signal.SIGTERM)
        raise
    finally:
        for bar in bars.values():
            bar.close()
        if overall is not None:
            overall.close()
    return [_read_result(out, lb, s) for lb, s in jobs_of(config)]


def _record_exit(out: Path, key: tuple[str, int], returncode: int) -> None:
    """A job process that ended without a result (killed, crashed) is recorded as failed."""
    label, seed = key
    path = job_dir(out, label, seed) / RESULT
    if path.exists():
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
