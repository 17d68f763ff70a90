"""The `evograd` command end to end, in subprocesses, as a user runs it."""
import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

TINY = """
name: tiny
task:
  env:
    id: CartPole-v1
policy:
  type: linear
budget:
  env_steps: 20000
threshold: 475
evaluation:
  every: 5000
  episodes: 5
seeds: 2
jobs: 2
optimizer: {name: snes}
methods:
  snes: {name: snes}
  ga: {name: ga}
"""


def evograd(*args, timeout=300, check=True):
    proc = subprocess.run([sys.executable, "-m", "evograd", *args], cwd=REPO, capture_output=True, text=True,
                          timeout=timeout, env=dict(os.environ, OMP_NUM_THREADS="1"))
    if check and proc.returncode != 0:
        raise AssertionError(f"evograd {' '.join(args)} exited {proc.returncode}\n{proc.stdout}\n{proc.stderr}")
    return proc


def _rows(path):
    with open(path) as fh:
        return list(csv.DictReader(fh))


def test_compare_end_to_end_then_eval_the_saved_policy(tmp_path):
    cfg = tmp_path / "tiny.yaml"
    cfg.write_text(TINY)
    out = tmp_path / "run"
    proc = evograd("compare", str(cfg), "--out", str(out), "--quiet")
    assert "| snes |" in proc.stdout and "| ga |" in proc.stdout
    summary = _rows(out / "summary.csv")
    assert [r["method"] for r in summary] == ["snes", "ga"]
    for col in ["method", "seeds", "successes", "final_return_mean", "final_return_std", "steps_to_threshold_median",
                "seconds_to_threshold_median", "failed_jobs"]:
        assert col in summary[0]
    assert all(r["failed_jobs"] == "0" for r in summary)
    for png in ("curves_env_steps.png", "curves_wall_clock.png"):
        assert (out / png).stat().st_size > 10_000
    resolved = (out / "config.resolved.yaml").read_text()
    assert "_meta" in resolved and "torch" in resolved and "git" in resolved
    job = out / "snes" / "seed1"
    progress = _rows(job / "progress.csv")
    assert progress[0]["method"] == "snes" and progress[0]["seed"] == "1"
    assert {"env_steps", "wall_s", "return_mean", "return_max", "eval_return"} <= set(progress[0])
    result = json.loads((job / "result.json").read_text())
    assert result["status"] == "ok" and result["env_steps"] >= 20_000
    # eval a saved checkpoint: the returns it reports are real episodes of that policy
    gif = tmp_path / "episode.gif"
    ev = evograd("eval", str(job / "best.pt"), "--episodes", "3", "--video", str(gif))
    report = json.loads(ev.stdout.splitlines()[0])
    assert report["episodes"] == 3 and len(report["returns"]) == 3 and report["env"] == "CartPole-v1"
    assert gif.stat().st_size > 1000
    # a finished comparison refuses to be overwritten; --resume on it only rebuilds the report
    again = evograd("compare", str(cfg), "--out", str(out), "--quiet", check=False)
    assert again.returncode == 2 and "--resume" in again.stderr
    evograd("compare", "--resume", str(out), "--quiet")


def test_a_failing_job_is_reported_and_the_others_kept(tmp_path):
    cfg = tmp_path / "touchy.yaml"
    cfg.write_text("""
name: touchy
task: {env: {id: "tests.cli_envs:TouchyEnv"}}
policy: {type: linear}
budget: {env_steps: 3000}
evaluation: {every: 1000, episodes: 2}
seeds: 1
jobs: 2
methods:
  calm: {name: snes, sigma0: 0.01}
  wild: {name: ga, sigma0: 100.0}
""")
    out = tmp_path / "run"
    proc = evograd("compare", str(cfg), "--out", str(out), "--quiet", check=False)
    assert proc.returncode == 1
    summary = {r["method"]: r for r in _rows(out / "summary.csv")}
    assert summary["calm"]["failed_jobs"] == "0" and summary["wild"]["failed_jobs"] == "1"
    md = (out / "summary.md").read_text()
    assert "actuator limit exceeded" in md and "candidate" in md
    assert json.loads((out / "calm" / "seed0" / "result.json").read_text())["status"] == "ok"


def test_invalid_config_names_the_key_and_the_file(tmp_path):
    cfg = tmp_path / "bad.yaml"
    cfg.write_text(TINY.replace("ga: {name: ga}", "ga: {name: ga, popsize: 1}"))
    proc = evograd("compare", str(cfg), "--out", str(tmp_path / "x"), check=False)
    assert proc.returncode == 2
    assert "bad.yaml" in proc.stderr and "methods.ga.popsize" in proc.stderr
    assert not (tmp_path / "x").exists()  # nothing ran
    proc = evograd("run", str(REPO / "configs" / "quickstart.yaml"), "--set", "budget.env_steps=-5", check=False)
    assert proc.returncode == 2 and "budget.env_steps" in proc.stderr


def test_kill_and_resume_ends_with_the_same_result(tmp_path):
    cfg = tmp_path / "ll.yaml"
    cfg.write_text("""
name: ll
task: {env: {id: LunarLander-v3, max_episode_steps: 300}}
policy: {type: linear, obs_norm: true}
budget: {env_steps: 120000}
evaluation: {every: 20000, episodes: 3}
seeds: 1
optimizer: {name: snes, popsize: 20}
""")
    full = tmp_path / "full"
    evograd("run", str(cfg), "--out", str(full), "--quiet")
    killed = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, "-m", "evograd", "run", str(cfg), "--out", str(killed), "--quiet"],
                            cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    ckpt = killed / "snes" / "seed0" / "checkpoint.state"
    # Kill on an event, not after a fixed sleep: the first checkpoint is written (atomically) after the
    # first generation and the next one only 2 s later, so killing as soon as it appears lands mid-run on
    # any machine (the budget is ~60 generations) and the resume must redo everything after generation 1.
    deadline = time.monotonic() + 120
    try:
        while not ckpt.exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.01)
        still_running = proc.poll() is None
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    assert ckpt.exists(), "no checkpoint within 120 s" if still_running else "the run died before its checkpoint"
    assert still_running, "the run finished before its first checkpoint could be acted on"
    assert not (killed / "snes" / "seed0" / "result.json").exists()
    evograd("run", "--resume", str(killed), "--quiet")
    a = json.loads((full / "snes" / "seed0" / "result.json").read_text())
    b = json.loads((killed / "snes" / "seed0" / "result.json").read_text())
    for key in ("best_eval_return", "final_eval_return", "env_steps", "steps_to_threshold"):
        assert a[key] == b[key], key
    ra, rb = _rows(full / "snes" / "seed0" / "progress.csv"), _rows(killed / "snes" / "seed0" / "progress.csv")
    strip = lambda rows: [{k: v for k, v in r.items() if k != "wall_s"} for r in rows]
    assert strip(ra) == strip(rb)


def test_list_shows_optimizers_envs_and_configs():
    out = evograd("list").stdout
    for word in ("cmaes", "cbo", "ppo", "evograd/LQR-v0", "quickstart.yaml"):
        assert word in out


def test_report_rebuilds_the_summary_and_writes_one_html_page(tmp_path):
    run = tmp_path / "run"
    job = run / "snes" / "seed0"
    job.mkdir(parents=True)
    (run / "config.resolved.yaml").write_text("name: toy\ntask: {env: {id: CartPole-v1}}\nthreshold: 50\n")
    (job / "progress.csv").write_text("method,seed,generation,env_steps,wall_s,eval_return\n"
                                      "snes,0,0,0,0.0,10\nsnes,0,1,1000,1.0,60\n")
    (job / "result.json").write_text(json.dumps({"status": "ok", "final_eval_return": 60.0, "env_steps": 1000}))
    page = tmp_path / "elsewhere.html"
    proc = evograd("report", str(run), "--html", "--out", str(page))
    assert "| snes |" in proc.stdout and f"wrote {page}" in proc.stdout
    assert (run / "summary.md").exists() and (run / "curves_env_steps.png").exists()
    n_png = len(list(run.glob("*.png")))  # the two curves (and a performance profile where the report draws one)
    assert not (run / "report.html").exists() and page.read_text().count('<img src="data:image/png;base64,') == n_png
    evograd("report", str(run), "--html")
    assert "toy: CartPole-v1" in (run / "report.html").read_text()
    bad = evograd("report", str(tmp_path / "elsewhere.html"), "--html", check=False)
    assert bad.returncode == 2 and "is not a run directory" in bad.stderr
