"""Faults a user meets outside the happy path: `compare` killed with kill -9 (no orphan, no job run twice,
the resumed result equals an uninterrupted one), a job directory that another process still runs, and
output that goes to a log file instead of a terminal."""
import csv
import io
import json
import os
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import pytest

from evograd.core.progress import Progress, run_warnings, warn_repeating
from evograd.parallel.joblock import LOCKED_EXIT, PARENT_PID_ENV, JobLock, JobRunningError, holder

psutil = pytest.importorskip("psutil")

REPO = Path(__file__).resolve().parents[2]
ENV = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1")

CARTPOLE = """
name: cp
task: {env: {id: CartPole-v1}}
policy: {type: linear}
budget: {env_steps: 800000}
evaluation: {every: 20000, episodes: 3}
seeds: 2
jobs: 2
workers: {n: 2}
methods:
  snes: {name: snes}
"""

# a function task where about half the values are NaN (a NonFiniteWarning every generation) and the
# method with a huge step size fails its job
PATCHY = """
name: patchy
task: {function: {fn: "tests.fault_helpers:touchy_patchy_sphere", dim: 5, x0: 1.0}}
budget: {evals: 2000}
seeds: 2
jobs: 2
optimizer: {name: cmaes, sigma0: 1.0, popsize: 8}
methods:
  cmaes: {name: cmaes, sigma0: 1.0, popsize: 8}
  wild: {name: snes, sigma0: 1.0e+5}
"""

JOB = [sys.executable, "-m", "evograd.experiments.job"]


def evograd(*args, timeout=300, log=None, check=True):
    """`evograd ARGS` with stdout and stderr going to the file `log` (not a terminal)."""
    with open(log, "w") if log else open(os.devnull, "w") as fh:
        proc = subprocess.run([sys.executable, "-m", "evograd", *map(str, args)], cwd=REPO, stdout=fh,
                              stderr=subprocess.STDOUT if log else subprocess.PIPE, text=True, timeout=timeout,
                              env=ENV)
    if check and proc.returncode != 0:
        raise AssertionError(f"evograd {' '.join(map(str, args))} exited {proc.returncode}\n"
                             f"{Path(log).read_text() if log else proc.stderr}")
    return proc


def wait_for(condition, timeout, what, proc=None):
    """Poll `condition` until it holds; fail naming `what` after `timeout` s (or when `proc` ended)."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        if condition():
            return
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"the process ended (status {proc.returncode}) before {what}")
        time.sleep(0.05)
    raise AssertionError(f"no {what} after {timeout} s")


def alive(pids):
    out = []
    for pid in pids:
        try:
            if psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
                out.append(pid)
        except psutil.NoSuchProcess:
            pass
    return out


def status(job):
    try:
        return json.loads((job / "status.json").read_text())
    except (OSError, ValueError):
        return {}


def rows(path):
    with open(path) as fh:
        return [{k: v for k, v in r.items() if k != "wall_s"} for r in csv.DictReader(fh)]


def kill_compare_mid_run(cfg, out, jobs, ready):
    """Start `compare`, wait until every job is `ready(status)`, kill -9 compare; returns the pids of every
    process it had started (jobs, their workers, Dask workers) and the job pids from the lock files."""
    with open(out.with_suffix(".log"), "w") as log:
        proc = subprocess.Popen([sys.executable, "-m", "evograd", "compare", str(cfg), "--out", str(out)],
                                cwd=REPO, stdout=log, stderr=subprocess.STDOUT, env=ENV)
    try:
        wait_for(lambda: all(ready(status(out / j)) for j in jobs), 120, "checkpoint of every job", proc)
        descendants = [p.pid for p in psutil.Process(proc.pid).children(recursive=True)]
        job_pids = [int((out / j / "job.lock").read_text()) for j in jobs]
        assert not any((out / j / "result.json").exists() for j in jobs), \
            "a job finished before compare could be killed: make the budget larger"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    finally:
        if proc.poll() is None:
            proc.kill()
    assert set(job_pids) <= set(descendants)
    return descendants, job_pids


def test_kill_9_of_compare_leaves_no_orphan_and_resume_ends_as_an_uninterrupted_run(tmp_path):
    cfg = tmp_path / "cp.yaml"
    cfg.write_text(CARTPOLE)
    jobs = ["snes/seed0", "snes/seed1"]
    killed = tmp_path / "killed"
    # killed as soon as every job has written its first checkpoint (after its first generation): a later
    # point (a status written every 2 s) let a fast, idle machine finish a job before the kill
    descendants, job_pids = kill_compare_mid_run(cfg, killed, jobs, lambda st: st.get("env_steps", 0) > 0)
    workers = [p for p in descendants if p not in job_pids]
    assert len(workers) >= 4  # each job's two loky workers (and their resource trackers)
    try:  # they end within a second (an orphan would run on for seconds, and finish its job)
        wait_for(lambda: not alive(descendants), 5, "end of every job and worker process of the killed compare")
    finally:
        for pid in alive(descendants):
            os.kill(pid, signal.SIGKILL)
    for j in jobs:
        assert not (killed / j / "result.json").exists()
        assert holder(killed / j) is None  # the kernel dropped the dead jobs' locks: resume may take them over
    evograd("compare", "--resume", killed, log=tmp_path / "resume.log")
    full = tmp_path / "full"
    evograd("compare", cfg, "--out", full, log=tmp_path / "full.log")
    for j in jobs:
        a = json.loads((full / j / "result.json").read_text())
        b = json.loads((killed / j / "result.json").read_text())
        assert b["status"] == "ok"
        for key in ("best_eval_return", "final_eval_return", "env_steps", "steps_to_threshold"):
            assert a[key] == b[key], (j, key)
        assert a["extra"]["generations"] == b["extra"]["generations"]
        assert rows(full / j / "progress.csv") == rows(killed / j / "progress.csv")  # the exact same run
        # each job ran once before the kill and once on resume, never beside a copy of itself: the first
        # process was gone before the second started
        starts = [ln for ln in (killed / j / "job.log").read_text().splitlines() if " job snes seed" in ln]
        assert len(starts) == 2 and "started" in starts[0] and "resumed" in starts[1], starts
        pids = [int(ln.split("pid ")[1].split(",")[0]) for ln in starts]
        assert pids[0] in job_pids and pids[1] not in job_pids
    log = (tmp_path / "resume.log").read_text()
    assert log.count("started (pid") == 2 and log.count("finished in") == 2


def test_kill_9_of_compare_also_ends_its_dask_workers(tmp_path):
    pytest.importorskip("distributed")
    cfg = tmp_path / "cp.yaml"
    cfg.write_text(CARTPOLE.replace("workers: {n: 2}", "workers: {backend: dask, n: 2}")
                   .replace("seeds: 2", "seeds: 1").replace("800000", "400000"))
    out = tmp_path / "run"
    descendants, job_pids = kill_compare_mid_run(cfg, out, ["snes/seed0"], lambda st: bool(st))
    assert len(descendants) >= 3  # the job and the local cluster's two worker processes
    try:
        wait_for(lambda: not alive(descendants), 5, "end of every process the killed compare started")
    finally:
        for pid in alive(descendants):
            os.kill(pid, signal.SIGKILL)
    evograd("compare", "--resume", out, log=tmp_path / "resume.log")
    assert json.loads((out / "snes/seed0/result.json").read_text())["status"] == "ok"


def test_a_running_job_is_never_started_twice(tmp_path):
    cfg = tmp_path / "slow.yaml"
    cfg.write_text("""
name: slow
task: {function: {fn: "tests.fault_helpers:slow_sphere", dim: 3, x0: 1.0}}
budget: {evals: 100000}
seeds: 1
methods:
  cmaes: {name: cmaes, sigma0: 0.5}
""")
    out = tmp_path / "run"
    job = out / "cmaes" / "seed0"
    # a job left running, as a killed compare used to leave them (started by hand: it locks its directory)
    evograd("compare", cfg, "--out", out, "--set", "budget.evals=8", log=tmp_path / "first.log")
    (job / "result.json").unlink()  # ...unfinished, and with a long budget
    config = json.loads((out / "config.json").read_text())
    (out / "config.json").write_text(json.dumps({**config, "budget": {"evals": 100_000}}))
    first = subprocess.Popen(JOB + [str(out / "config.json"), "cmaes", "0", str(out)],
                             cwd=REPO, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for(lambda: holder(job) == first.pid and status(job), 60, "lock and status of the running job", first)
        before = {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()}
        for args in (["compare", "--resume", out], ["compare", cfg, "--out", out], ["run", "--resume", out]):
            proc = evograd(*args, check=False)
            assert proc.returncode == 2, args
            lines = proc.stderr.strip().splitlines()
            assert len(lines) == 1 and f"pid {first.pid}" in lines[0] and "running" in lines[0], proc.stderr
        second = subprocess.run(JOB + [str(out / "config.json"), "cmaes", "0", str(out)],
                                cwd=REPO, env=ENV, capture_output=True, text=True, timeout=120)
        assert second.returncode == LOCKED_EXIT and f"pid {first.pid}" in second.stderr
        # nothing of the running job was touched (its own progress files aside)
        after = {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()}
        mine = {"status.json", "progress.csv", "job.log", "checkpoint.state", "cpu.json"}
        assert {p for p in before if p.name not in mine} == {p for p in after if p.name not in mine}
        assert [p for p, t in before.items() if p.name not in mine and after[p] != t] == []
        assert first.poll() is None
    finally:
        first.kill()
        first.wait()
    # its lock file stays, naming a dead pid: the next run takes it over (from scratch, with the short budget)
    assert int((job / "job.lock").read_text()) == first.pid and holder(job) is None
    (job / "checkpoint.state").unlink(missing_ok=True)
    evograd("compare", cfg, "--resume", out, "--set", "budget.evals=8", log=tmp_path / "resume.log")
    assert json.loads((job / "result.json").read_text())["status"] == "ok"


def test_job_lock_in_process(tmp_path):
    d = tmp_path / "job"
    with JobLock(d) as lock:
        assert holder(d) == os.getpid() and int((d / "job.lock").read_text()) == os.getpid()
        with pytest.raises(JobRunningError, match=f"pid {os.getpid()}"):
            JobLock(d).acquire()  # flock is per open file: a second one in the same process is refused too
        assert lock.fd is not None
    assert holder(d) is None
    (d / "job.lock").write_text("garbage, not a pid")  # a stale or damaged file is simply taken over
    with JobLock(d):
        assert holder(d) == os.getpid()
    assert holder(tmp_path / "never-ran") is None and not (tmp_path / "never-ran").exists()


def test_a_job_process_whose_parent_is_already_gone_ends_at_once(tmp_path):
    # what a job started by a compare that died before the job could ask for PR_SET_PDEATHSIG sees: its
    # parent is not the pid it was given. It ends before touching anything.
    proc = subprocess.run(JOB + ["nothing.json", "x", "0", str(tmp_path / "out")],
                          cwd=REPO, env=dict(ENV, **{PARENT_PID_ENV: "1" if os.getppid() != 1 else "2"}),
                          capture_output=True, timeout=120)
    assert proc.returncode == 1 and not (tmp_path / "out").exists()


# ----------------------------------------------------------------------------------- logs in files
def _plain(text):
    assert "\r" not in text and "\x1b" not in text


def test_run_logged_to_a_file_has_plain_lines(tmp_path):
    log = tmp_path / "run.log"
    evograd("run", REPO / "configs" / "quickstart.yaml", "--set", "budget.env_steps=20000", "--out",
            tmp_path / "run", log=log)
    text = log.read_text()
    _plain(text)
    progress = [ln for ln in text.splitlines() if ln.startswith("train:")]
    # one line per evaluation (every 5,000 of 20,000 steps), each with time, steps and returns
    assert 3 <= len(progress) <= 5, progress
    assert all(" s  " in ln and "/20,000 steps" in ln and "ret " in ln and "eval " in ln for ln in progress)
    # the progress part stays short: everything before the printed summary ("# quickstart: ...")
    before_summary = text.split("\n# ", 1)[0]
    assert "\n# " in text and len(before_summary.splitlines()) < 15, before_summary


def test_a_warning_repeated_every_generation_is_shown_once_with_its_count(tmp_path):
    cfg = tmp_path / "patchy.yaml"
    cfg.write_text(PATCHY)
    log = tmp_path / "run.log"
    evograd("run", cfg, "--out", tmp_path / "run", log=log)  # 250 generations, about half the values NaN
    text = log.read_text()
    _plain(text)
    warned = [ln for ln in text.splitlines() if "NonFiniteWarning:" in ln]
    assert len(warned) == 2, warned  # the first one, then the count
    count = int(warned[1].split("raised ")[1].split(" times")[0])
    assert 100 <= count <= 250 and "generation 0" in warned[1]
    progress = [ln for ln in text.splitlines() if ln.startswith("minimize:")]
    assert 1 <= len(progress) <= 21 and all("/2,000 evals" in ln and "best " in ln for ln in progress)
    assert len(text.splitlines()) < 80


def test_compare_logged_to_a_file_has_one_line_per_job_event(tmp_path):
    cfg = tmp_path / "patchy.yaml"
    cfg.write_text(PATCHY)
    log = tmp_path / "compare.log"
    out = tmp_path / "run"
    proc = evograd("compare", cfg, "--out", out, log=log, check=False)
    assert proc.returncode == 1  # the wild method's jobs failed
    text = log.read_text()
    _plain(text)
    events = [ln for ln in text.splitlines() if ln.startswith("patchy:")]
    assert len(events) == 1 + 4 + 4, events  # the plan, then each job started and ended
    for seed in (0, 1):
        assert sum(f"cmaes seed {seed}: started (pid" in ln for ln in events) == 1
        assert sum(f"cmaes seed {seed}: finished in" in ln and "best_value" in ln for ln in events) == 1
        assert sum(f"wild seed {seed}: failed after" in ln and "out of range on purpose" in ln for ln in events) == 1
    # each job's own log: its warning once, then its count
    job_log = (out / "cmaes" / "seed0" / "job.log").read_text()
    _plain(job_log)
    assert job_log.count("NonFiniteWarning:") == 2 and "times in this run" in job_log


# ----------------------------------------------------------------------------------- units
class _Tty(io.StringIO):
    def isatty(self):
        return True


def test_progress_is_a_bar_on_a_terminal_and_lines_elsewhere():
    tty, log = _Tty(), io.StringIO()
    for stream in (tty, log):
        bar = Progress("train", 100, "steps", stream=stream)
        for n in range(1, 101):
            bar.update(n, {"ret": float(n)}, event=n % 25 == 0)
        bar.close()
    assert "\r" in tty.getvalue()  # tqdm redraws in place on a terminal
    lines = log.getvalue().splitlines()
    _plain(log.getvalue())
    assert len(lines) == 4 and lines[-1].startswith("train:") and "100/100 steps  ret 100" in lines[-1]
    log = io.StringIO()
    bar = Progress("minimize", 1000, "evals", stream=log, milestones=10)
    for n in range(8, 1001, 8):
        bar.update(n, {"best": 1.0 / n})
    bar.close()
    assert len(log.getvalue().splitlines()) == 10  # one per tenth of the budget, the last at the end


def test_repeated_warnings_outside_and_inside_a_run():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for g in range(5):
            warn_repeating(f"generation {g}: bad", RuntimeWarning)
    assert len(caught) == 5  # outside a run: plain warnings
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with run_warnings():
            for g in range(5):
                warn_repeating(f"generation {g}: bad", RuntimeWarning)
                with run_warnings():  # a nested run belongs to the outer one
                    warn_repeating(f"generation {g}: worse", UserWarning)
    texts = [str(w.message) for w in caught]
    assert len(texts) == 4, texts
    assert texts[0].startswith("generation 0: bad") and texts[1].startswith("generation 0: worse")
    assert "raised 5 times" in texts[2] and "generation 0: bad" in texts[2]
    assert caught[2].category is RuntimeWarning and caught[3].category is UserWarning
