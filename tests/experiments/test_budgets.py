"""Methods with budgets of their own (ES at millions of env steps beside SAC at 300k) and the CPU seconds every
job records: the config merges and checks the method's budget, each job runs to it, and the reports state
each method's budget and CPU time."""
import json
import subprocess
import sys
import textwrap
import time

import pytest
import yaml

from evograd.experiments.budgets import budget_text, job_config, method_budget
from evograd.experiments.config import ConfigError, dump_resolved, load_config
from evograd.experiments.cputime import CPU_JSON, CPUMeter, read_cpu_seconds, tree_cpu_seconds

CONFIG = """\
task: {env: {id: CartPole-v1}}
policy: {type: linear}
budget: {env_steps: 3000, seconds: 600}
evaluation: {every: 1000, episodes: 2}
seeds: 1
methods:
  long: {name: cmaes, popsize: 8, sigma0: 0.5}
  short: {name: cmaes, popsize: 8, sigma0: 0.5, budget: {env_steps: 1000}}
  ppo: {name: ppo, n_envs: 2, n_steps: 64, batch_size: 64, budget: {env_steps: 512}}
"""


@pytest.fixture
def config_path(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "exp.yaml"
    path.write_text(textwrap.dedent(CONFIG))
    return path


def test_a_methods_budget_merges_over_the_top_level(config_path):
    cfg = load_config(config_path)
    assert "budget" not in cfg["methods"]["long"]
    assert method_budget(cfg, "long") == {"env_steps": 3000, "evals": None, "seconds": 600}
    assert method_budget(cfg, "short") == {"env_steps": 1000, "evals": None, "seconds": 600}  # seconds inherited
    job = job_config(cfg, "short")
    assert job["budget"]["env_steps"] == 1000 and "budget" not in job["methods"]["short"]
    assert job_config(cfg, "long") is cfg
    assert budget_text(cfg) == ("3,000 env steps / 600 s wall-clock per run (long); 1,000 env steps / 600 s "
                                "wall-clock per run (short); 512 env steps / 600 s wall-clock per run (ppo)")
    same = load_config(config_path, ["methods.short.budget.env_steps=3000", "methods.ppo.budget.env_steps=3000"])
    assert budget_text(same) == "3,000 env steps / 600 s wall-clock per run"
    # the resolved config loads again to the same budgets (config.resolved.yaml round trip)
    again = load_config(_dump(config_path.parent, cfg))
    assert method_budget(again, "short") == method_budget(cfg, "short")


def _dump(d, cfg):
    path = d / "resolved.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


@pytest.mark.parametrize("override, key, words", [
    ("methods.short.budget.evals=5", "methods.short.budget.evals", "env tasks count env steps"),
    ("methods.short.budget.env_steps=0", "methods.short.budget.env_steps", "must be an int >= 1"),
    ("methods.short.budget={}", "methods.short.budget", "needs at least one of"),
    ("methods.short.budget.steps=5", "methods.short.budget.steps", ""),
    ("methods.ppo.budget={seconds: 60, env_steps: null}", "methods.ppo.name", "ppo needs budget.env_steps"),
    ("optimizer={name: cmaes, budget: {env_steps: 5}}", "optimizer.budget", "is for the blocks of `methods`"),
])
def test_a_methods_budget_is_checked_under_its_key(config_path, override, key, words):
    with pytest.raises(ConfigError) as info:
        load_config(config_path, [override])
    assert info.value.key == key and words in str(info.value)


@pytest.fixture(scope="module")
def compared(tmp_path_factory):
    """One small comparison with three budgets, run once for the tests below; threshold 1e6 is out of reach,
    so every run's steps to threshold are censored at its own budget."""
    from evograd.experiments.compare import run_compare

    d = tmp_path_factory.mktemp("compared")
    path = d / "exp.yaml"
    path.write_text(textwrap.dedent(CONFIG) + "threshold: 1000000\n")
    cfg = load_config(path)
    results = {r["method"]: r for r in run_compare(cfg, d / "run", jobs=1, quiet=True)}
    dump_resolved(cfg, d / "run" / "config.resolved.yaml")  # as `evograd compare` writes it
    return cfg, d / "run", results


def test_each_job_runs_to_its_methods_budget_and_records_its_cpu_time(compared):
    _, _, results = compared
    assert {m: r["status"] for m, r in results.items()} == {"long": "ok", "short": "ok", "ppo": "ok"}
    for label, budget in (("long", 3000), ("short", 1000), ("ppo", 512)):
        # population runs end with the generation that crosses the budget, PPO at the update boundary
        assert budget <= results[label]["env_steps"] < budget + 500, label
        assert results[label]["extra"]["stop_reason"] == "max_env_steps"
        assert results[label]["cpu_s"] > 0


def test_the_reports_state_each_methods_budget_and_censor_at_it(compared):
    import csv

    from evograd.experiments.html_report import write_html
    from evograd.experiments.report import report

    _, run, results = compared
    report(run)
    md = (run / "summary.md").read_text()
    assert "- Budget: 3,000 env steps / 600 s wall-clock per run (long); 1,000 env steps" in md
    assert "Budget check: every completed run used its whole budget" in md
    assert "CPU h (all runs)" in md and "| CPU s |" in md
    assert "counts as the budget (its method's budget, or the env steps it ran to" in md
    with open(run / "summary.csv", newline="") as fh:
        rows = {r["method"]: r for r in csv.DictReader(fh)}
    for label, budget in (("long", 3000), ("short", 1000), ("ppo", 512)):
        row = rows[label]
        assert int(row["budget_env_steps"]) == budget and row["cpu_runs"] == "1" and float(row["cpu_hours"]) > 0
        # censored at the run's own budget: its env steps, which went past the budget by part of a generation
        assert float(row["steps_to_threshold_mean"]) == pytest.approx(results[label]["env_steps"])
        assert row["censored_runs"] == "1"
    html = write_html(run).read_text()
    assert "1,000 env steps / 600 s wall-clock per run (short)" in html and "CPU s" in html


def test_a_resumed_or_failed_job_keeps_its_cpu_count(compared, tmp_path):
    from evograd.experiments.experiment import run_job
    from evograd.experiments.report import summarize

    cfg, _, _ = compared
    job = tmp_path / "out" / "short" / "seed0"
    job.mkdir(parents=True)
    (job / CPU_JSON).write_text(json.dumps({"cpu_s": 100.0}))  # an earlier session's count
    res = run_job(cfg, "short", 0, tmp_path / "out", resume=True)
    assert res["status"] == "ok" and 100.0 < res["cpu_s"] < 200.0
    assert read_cpu_seconds(job) == pytest.approx(res["cpu_s"], abs=1.0)
    broken = {**cfg, "methods": {**cfg["methods"], "short": {**cfg["methods"]["short"], "popsize": "many"}}}
    failed = run_job(broken, "short", 1, tmp_path / "out")
    assert failed["status"] == "failed" and failed["cpu_s"] >= 0
    # a job killed before writing result.json: the report reads what cpu.json last said
    (job / CPU_JSON).write_text(json.dumps({"cpu_s": 7200.0}))
    (job / "result.json").unlink()
    rows = {r["method"]: r for r in summarize(tmp_path / "out")}
    assert rows["short"]["cpu_hours"] >= 2.0 and rows["short"]["cpu_runs"] == 2


def _burn(seconds):
    end = time.process_time() + seconds
    while time.process_time() < end:
        pass


def test_cpu_seconds_count_live_and_reaped_children(tmp_path):
    code = "import time\nend = time.process_time() + 0.6\nwhile time.process_time() < end: pass\ntime.sleep(30)"
    before = tree_cpu_seconds()
    child = subprocess.Popen([sys.executable, "-c", code])
    try:
        deadline = time.monotonic() + 60
        while tree_cpu_seconds() - before < 0.5 and time.monotonic() < deadline:  # the live child's time counts
            time.sleep(0.05)
        assert tree_cpu_seconds() - before >= 0.5
    finally:
        child.kill()
        child.wait()
    assert tree_cpu_seconds() - before >= 0.5  # and still counts once reaped (RUSAGE_CHILDREN)


def test_cpu_meter_writes_while_running_and_resumes_from_the_file(tmp_path):
    with CPUMeter(tmp_path, resume=False, interval=0.05) as meter:
        _burn(0.3)
        deadline = time.monotonic() + 30
        while read_cpu_seconds(tmp_path) < 0.2 and time.monotonic() < deadline:  # written while it runs
            time.sleep(0.05)
        assert read_cpu_seconds(tmp_path) >= 0.2
    first = read_cpu_seconds(tmp_path)
    assert first == pytest.approx(meter.total(), abs=0.2) and first >= 0.3
    with CPUMeter(tmp_path, resume=True, interval=10) as again:  # a resumed job adds to what was written
        _burn(0.2)
    assert read_cpu_seconds(tmp_path) >= first + 0.2
    assert CPUMeter(tmp_path, resume=False).base == 0.0
    (tmp_path / CPU_JSON).write_text("not json")
    assert read_cpu_seconds(tmp_path) == 0.0
    (tmp_path / CPU_JSON).write_text(json.dumps({"cpu_s": -3}))
    assert read_cpu_seconds(tmp_path) == 0.0
    assert again.base == pytest.approx(first)


def test_curves_turn_logarithmic_when_budgets_are_far_apart():
    from matplotlib.figure import Figure

    from evograd.experiments.plots import _x_scale

    ax = Figure().add_subplot()
    assert _x_scale(ax, [3000.0, 1000.0, 512.0]) == "" and ax.get_xscale() == "linear"
    assert _x_scale(ax, [5e6, 1e6, 3e5]) == "; x logarithmic above 30k" and ax.get_xscale() == "symlog"
    assert _x_scale(Figure().add_subplot(), [0.0, 5e6]) == ""  # a run with no progress yet: left linear


def test_publish_run_copies_plain_files_that_rebuild_the_report(compared, tmp_path):
    from pathlib import Path

    from evograd.experiments.report import report

    _, run, _ = compared
    script = Path(__file__).resolve().parents[2] / "benchmarks" / "publish_run.py"
    dest = tmp_path / "published"
    cmd = [sys.executable, str(script), str(run), str(dest), "--command", "evograd compare exp.yaml"]
    assert subprocess.run(cmd, capture_output=True, text=True).returncode == 0
    files = {p.relative_to(dest).as_posix() for p in dest.rglob("*") if p.is_file()}
    assert {"README.md", "config.resolved.yaml", "long/seed0/progress.csv", "ppo/seed0/result.json",
            "short/seed0/cpu.json"} <= files
    assert not [f for f in files if f.endswith((".state", ".pt", ".npz"))]  # nothing a loader would execute
    text = (dest / "README.md").read_text()
    assert "`evograd compare exp.yaml`" in text and "CPU-hours" in text and "Jobs not finished: none." in text
    assert {"summary.md", "summary.csv", "report.html", "curves_env_steps.png"} <= files  # rebuilt from the copy
    assert str(run) not in (dest / "config.resolved.yaml").read_text() + (dest / "report.html").read_text()
    again = subprocess.run(cmd, capture_output=True, text=True)
    assert again.returncode == 2 and "--replace" in again.stderr
    notes = tmp_path / "notes.md"
    notes.write_text("The long method diverged after 1M steps.\n")
    assert subprocess.run(cmd + ["--replace", "--notes", str(notes)], capture_output=True, text=True).returncode == 0
    assert (dest / "README.md").read_text().endswith("## Notes\n\nThe long method diverged after 1M steps.\n")
    missing = subprocess.run(cmd + ["--replace", "--notes", str(tmp_path / "nope.md")], capture_output=True,
                             text=True)
    assert missing.returncode == 2 and "nope.md is not a file" in missing.stderr and dest.exists()
    # never the run itself or a folder above it; a wrong RUN leaves DEST as it was
    for bad in ([str(run), str(run), "--replace"], [str(run), str(run.parent), "--replace"],
                [str(tmp_path / "nowhere"), str(dest), "--replace"]):
        out = subprocess.run([sys.executable, str(script), *bad, "--command", "x"], capture_output=True, text=True)
        assert out.returncode == 2, out.stderr
    assert (run / "config.resolved.yaml").exists() and (dest / "README.md").exists()
    assert not list(dest.parent.glob(".published.*"))  # no half-built copy left beside DEST
    report(dest)  # the copy alone rebuilds the summary
    assert "short" in (dest / "summary.md").read_text()
    # an unfinished run: a job that failed, one never started; the README names both
    import shutil

    part = tmp_path / "part"
    shutil.copytree(run, part)
    shutil.rmtree(part / "short")
    (part / "ppo" / "seed0" / "result.json").unlink()
    cmd[2:4] = [str(part), str(dest)]
    assert subprocess.run(cmd + ["--replace"], capture_output=True, text=True).returncode == 0
    text = (dest / "README.md").read_text()
    assert "Jobs not finished: ppo seed 0 (missing); short seed 0 (not started)." in text


def test_the_schema_offers_a_budget_in_methods_only():
    from evograd.experiments.config_models import schema

    sc = schema()
    assert sc["$defs"]["cmaes"]["properties"]["budget"]["anyOf"][0] == {"$ref": "#/$defs/Budget"}
    assert sc["properties"]["optimizer"]["not"] == {"required": ["budget"]}  # `evograd run` refuses one


def test_snapshot_run_carries_an_unfinished_run_that_resumes_from_the_copy(compared, tmp_path):
    """benchmarks/snapshot_run.py: an unfinished run copied into the repository (no locks, no checkpoints of
    finished jobs, nothing over the size limit, no machine paths) resumes from the copy: the finished jobs are
    kept as they are and only the unfinished one runs."""
    import importlib.util
    import shutil
    from pathlib import Path

    from evograd.experiments.compare import run_compare

    cfg, done, _ = compared
    run = tmp_path / "machine" / "runs17" / "cartpole"
    shutil.copytree(done, run)
    (run / "short" / "seed0" / "result.json").unlink()  # the short job is still to run
    (run / "short" / "seed0" / "checkpoint.state").write_bytes(b"x" * 2000)  # over a 0.001 MB limit
    (run / "long" / "seed0" / "job.lock").write_text("123")
    result = json.loads((run / "ppo" / "seed0" / "result.json").read_text())  # a traceback names machine paths
    src, venv = tmp_path / "src" / "evograd", tmp_path / "venv" / "lib" / "python3.11"  # another machine's layout
    result["traceback"] = (f'File "{src}/evograd/experiments/job.py", line 1\n'
                           f'File "{venv}/site-packages/torch/nn.py"\nOSError: {run}/ppo/seed0')
    (run / "ppo" / "seed0" / "result.json").write_text(json.dumps(result))
    entry = str(src / "evograd" / "__main__.py")
    sessions = [{"argv": [entry, "compare", "x.yaml", "--out", str(run)]},
                {"argv": [entry, "compare", "--resume", str(tmp_path / "old" / "cartpole")]}]  # before a move
    (run / "run_meta.json").write_text(json.dumps({"sessions": sessions}))
    script = Path(__file__).resolve().parents[2] / "benchmarks" / "snapshot_run.py"
    spec = importlib.util.spec_from_file_location("snapshot_run", script)
    snapshot_run = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(snapshot_run)
    dest = tmp_path / "repo" / "docs" / "results" / "cartpole" / "unfinished"
    args = [str(run), str(dest), "--max-mb", "0.001", "--name", "cartpole"]
    assert snapshot_run.main(args) == 0
    (dest / "stale").mkdir()
    (dest / "stale" / "gone.csv").write_text("a file that left the run leaves the copy")
    assert snapshot_run.main(args) == 0  # over the earlier snapshot: replaced, not merged
    files = {p.relative_to(dest).as_posix() for p in dest.rglob("*") if p.is_file()}
    assert "long/seed0/result.json" in files and "README.md" in files and not any("stale" in f for f in files)
    assert not [f for f in files if f.endswith(("job.lock", "checkpoint.state"))]
    meta = (dest / "run_meta.json").read_text()
    assert json.loads(meta)["sessions"][0]["argv"] == ["evograd", "compare", "x.yaml", "--out", "runs/cartpole"]
    assert json.loads(meta)["sessions"][1]["argv"] == ["evograd", "compare", "--resume", "runs/cartpole"]
    tb = json.loads((dest / "ppo" / "seed0" / "result.json").read_text())["traceback"]
    assert tb == ('File "evograd/experiments/job.py", line 1\nFile "<site-packages>/torch/nn.py"\n'
                  "OSError: runs/cartpole/ppo/seed0")
    readme = (dest / "README.md").read_text()
    assert "short/seed0/checkpoint.state (0.002 MB, over the limit)" in readme and "--resume" in readme
    assert snapshot_run.main([str(tmp_path / "nowhere"), str(dest)]) == 2
    # DEST is replaced whole: never the run itself, a folder in it or above it, or a folder of other files
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "precious.txt").write_text("keep")
    (tmp_path / "afile").write_text("keep")
    for bad in (run, run / "long", run.parent, tmp_path / "mine", tmp_path / "afile"):
        assert snapshot_run.main([str(run), str(bad)]) == 2
    assert snapshot_run.main([str(run), str(dest), "--name", "lunarlander"]) == 2  # another run's snapshot
    assert (tmp_path / "mine" / "precious.txt").exists() and (run / "long" / "seed0" / "job.lock").exists()
    assert sorted(p.name for p in dest.parent.iterdir()) == ["unfinished"]  # nothing left beside it
    assert snapshot_run.main(args[:2] + ["--name", 'a"b']) == 2 and snapshot_run.main(args[:2] + ["--max-mb",
                                                                                                   "nan"]) == 2

    carried = tmp_path / "next_session"
    shutil.copytree(dest, carried)
    long_before = (carried / "long" / "seed0" / "result.json").read_text()
    results = {r["method"]: r for r in run_compare(cfg, carried, jobs=1, quiet=True, resume=True)}
    assert {m: r["status"] for m, r in results.items()} == {"long": "ok", "short": "ok", "ppo": "ok"}
    assert (carried / "long" / "seed0" / "result.json").read_text() == long_before  # kept, not run again
    assert results["short"]["env_steps"] >= 1000


def test_comparison_table_cli_states_budgets_and_refuses_bad_flags(compared):
    from pathlib import Path

    _, run, _ = compared
    script = Path(__file__).resolve().parents[2] / "benchmarks" / "comparison_table.py"

    def cli(*args):
        return subprocess.run([sys.executable, str(script), str(run), *args], capture_output=True, text=True)

    ok = cli("--titles", "Toy", "--at-steps", "1000")
    assert ok.returncode == 0, ok.stderr
    head = ok.stdout.splitlines()[0]
    assert "Toy: budget" in head and "return at 1k steps" in head and "env steps to 1,000,000" in head
    rows = {ln.split("|")[1].strip(): [c.strip() for c in ln.strip("|").split("|")[1:]]
            for ln in ok.stdout.splitlines()[2:] if ln.startswith("| ")}
    assert [rows[m][0] for m in ("long", "short", "ppo")] == ["3k", "1k", "512"]
    assert rows["ppo"][2] == "—"  # its budget (512) is below 1k steps
    assert rows["long"][3] == "never (0/1)" and rows["long"][4] == "never (0/1)"  # 1e6 is out of reach
    for args, message in ((("--thresholds", "nan"), "--thresholds: finite numbers"),
                          (("--at-steps", "-5"), "--at-steps: positive numbers"),
                          (("--at-steps", "1", "2"), "--at-steps: 2 given for 1"),
                          (("--titles", "a", "b"), "--titles: 2 given for 1")):
        bad = cli(*args)
        assert bad.returncode == 2 and message in bad.stderr, (args, bad.stderr)
