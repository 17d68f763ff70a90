"""evograd.experiments.report on synthetic run directories: numbers, missing-not-dropped medians, failed/killed jobs."""
import csv
import json

import numpy as np
import pytest
import yaml

from evograd.experiments.report import REQUIRED_COLUMNS, plot_curves, read_runs, report, summarize, write_summary
from evograd.experiments.report_stats import NEVER

ENV_HEADER = ["method", "seed", "generation", "env_steps", "eval_env_steps", "wall_s", "return_mean",
              "return_max", "eval_return", "eval_return_std"]
THRESHOLD = 100.0

# evaluation points per (label, seed): (env_steps, wall_s, eval_return); a training row without evaluation
# is written between consecutive evaluations, as the runner does.
EVALS = {
    ("cmaes", 0): [(0, 0.0, 10), (1000, 1.0, 50), (2000, 2.0, 100), (3000, 3.0, 120)],
    ("cmaes", 1): [(0, 0.0, 10), (1010, 1.5, 110), (2010, 3.0, 105), (3010, 4.5, 108)],
    ("cmaes", 2): [(0, 0.0, 5), (1020, 1.1, 60), (2020, 2.2, 90), (3020, 3.3, 101)],
    ("ars", 0): [(0, 0.0, 0), (1000, 0.5, 20), (2000, 1.0, 60), (3000, 1.5, 130)],
    ("ars", 1): [(0, 0.0, 0), (1000, 0.5, 100), (2000, 1.0, 90), (3000, 1.5, 140)],
    ("ars", 2): [(0, 0.0, 5), (1000, 0.5, 40), (2000, 1.0, 80), (3000, 1.5, 99.5)],  # never reaches 100
    ("ppo", 0): [(0, 0.0, 20), (1000, 4.0, 70), (2000, 8.0, 150), (3000, 12.0, 160)],
    ("ppo", 1): [(0, 0.0, 20), (1000, 4.0, 30)],  # failed with an error after this
    ("ppo", 2): [(0, 0.0, 20), (1000, 4.0, 105)],  # killed: no result.json, a torn last line
}


def _write_progress(path, label, seed, evals, torn=None):
    rows, prev = [], None
    for gen, (steps, wall, ret) in enumerate(evals):
        if prev is not None:  # a training-only row halfway
            mid_steps, mid_wall = (prev[0] + steps) // 2, (prev[1] + wall) / 2
            rows.append([label, seed, 2 * gen - 1, mid_steps, 0, mid_wall, 1.0, 2.0, "", ""])
        rows.append([label, seed, 2 * gen, steps, 100 * gen, wall, 1.0, 2.0, ret, 3.0])
        prev = (steps, wall)
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(ENV_HEADER)
        w.writerows(rows)
        if torn is not None:
            fh.write(torn)  # no newline: the process died while writing it


def _result(label, seed, evals, status="ok", error=None, extra=None):
    rets = [e[2] for e in evals]
    hit = next((e for e in evals if e[2] >= THRESHOLD), None)
    return {"method": label, "seed": seed, "status": status, "error": error,
            "best_eval_return": max(rets), "final_eval_return": rets[-1], "env_steps": evals[-1][0],
            "wall_s": evals[-1][1], "steps_to_threshold": hit and hit[0],
            "seconds_to_threshold": hit and hit[1],
            "extra": extra or {}}


@pytest.fixture
def run_dir(tmp_path):
    out = tmp_path / "run"
    cfg = {"name": "toy", "task": {"env": {"id": "CartPole-v1"}}, "budget": {"env_steps": 3000},
           "threshold": THRESHOLD, "seeds": 3,
           "methods": {"ppo": {"name": "ppo"}, "cmaes": {"name": "cmaes"}, "ars": {"name": "ars"}}}
    out.mkdir()
    (out / "config.resolved.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    for (label, seed), evals in EVALS.items():
        d = out / label / f"seed{seed}"
        d.mkdir(parents=True)
        torn = "ppo,2,3,2000,300,6.0,1.0,2.0,," if (label, seed) == ("ppo", 2) else None
        _write_progress(d / "progress.csv", label, seed, evals, torn)
        if (label, seed) == ("ppo", 2):
            continue
        if (label, seed) == ("ppo", 1):
            res = _result(label, seed, evals, "failed", "RuntimeError: env exploded\nTraceback (most recent)")
        else:
            extra = {"gap_to_optimal": 0.5 * seed} if label == "cmaes" else None
            res = _result(label, seed, evals, extra=extra)
        (d / "result.json").write_text(json.dumps(res))
    (out / "not_a_method").mkdir()  # ignored: holds no seed<k> directories
    return out


def _by_method(rows):
    return {r["method"]: r for r in rows}


def test_read_runs_order_status_and_torn_line(run_dir):
    recs = read_runs(run_dir)
    assert [(r.label, r.seed) for r in recs][:3] == [("ppo", 0), ("ppo", 1), ("ppo", 2)]  # config order
    assert {r.label for r in recs} == {"ppo", "cmaes", "ars"}
    killed = next(r for r in recs if (r.label, r.seed) == ("ppo", 2))
    assert killed.status == "missing" and killed.result is None and killed.dropped_partial_line
    assert killed.column("env_steps").tolist() == [0, 500, 1000]  # the torn 2000-step line is gone
    assert np.isnan(killed.column("eval_return")[1])  # empty cell -> NaN
    failed = next(r for r in recs if (r.label, r.seed) == ("ppo", 1))
    assert failed.status == "failed" and failed.error.startswith("RuntimeError")


def test_summary_numbers(run_dir):
    rows = _by_method(summarize(run_dir, THRESHOLD))
    assert list(rows) == ["ppo", "cmaes", "ars"]
    c, a, p = rows["cmaes"], rows["ars"], rows["ppo"]
    assert (c["seeds"], c["successes"], c["failed_jobs"]) == (3, 3, 0)
    assert c["final_return_mean"] == pytest.approx(np.mean([120, 108, 101]))
    assert c["final_return_std"] == pytest.approx(np.std([120, 108, 101]))
    assert c["steps_to_threshold_median"] == 2000 and c["seconds_to_threshold_median"] == 2.0
    assert c["gap_to_optimal_mean"] == pytest.approx(0.5)
    assert c["best_eval_return_mean"] == pytest.approx(np.mean([120, 110, 101]))
    # ars seed 2 never reached: missing from the median (median of 3000 and 1000), not dropped from seeds
    assert (a["seeds"], a["successes"], a["_reached"]) == (3, 2, 2)
    assert a["steps_to_threshold_median"] == 2000 and a["seconds_to_threshold_median"] == 1.0
    assert a["gap_to_optimal_mean"] is None
    # ppo: one completed, one failed, one killed that had reached the threshold before dying
    assert (p["seeds"], p["completed"], p["failed_jobs"], p["successes"]) == (3, 1, 2, 2)
    assert p["final_return_mean"] == 160 and p["final_return_std"] == 0
    assert p["steps_to_threshold_median"] == 1500 and p["seconds_to_threshold_median"] == 6.0
    assert any("env exploded" in e and "Traceback" not in e for e in p["_errors"])
    assert any("seed 2" in e and "no result.json" in e and "1,000 env steps" in e for e in p["_errors"])


def test_threshold_is_recomputed_and_none_reached(run_dir):
    low = _by_method(summarize(run_dir, 50.0))
    assert low["cmaes"]["steps_to_threshold_median"] == 1010 and low["cmaes"]["successes"] == 3
    high = summarize(run_dir, 1e9)
    assert all(r["successes"] == 0 and r["steps_to_threshold_median"] is None for r in high)
    md, _ = write_summary(run_dir, high, 1e9)
    assert "| cmaes | 3 | 0 |" in md.read_text() and "—" in md.read_text()


def test_result_json_fills_in_when_progress_is_gone(run_dir):
    (run_dir / "cmaes" / "seed2" / "progress.csv").unlink()
    c = _by_method(summarize(run_dir, THRESHOLD))["cmaes"]
    assert c["successes"] == 3 and c["_reached"] == 3
    assert c["steps_to_threshold_median"] == 2000  # median of 2000, 1010 and seed 2's 3020 from result.json


def test_write_summary_files(run_dir):
    rows = summarize(run_dir, THRESHOLD)
    md_path, csv_path = write_summary(run_dir, rows, THRESHOLD)
    with open(csv_path, newline="") as fh:
        table = list(csv.DictReader(fh))
    assert list(table[0])[:len(REQUIRED_COLUMNS)] == REQUIRED_COLUMNS  # required ones first, in order
    assert not any(k.startswith("_") for k in table[0])
    ars = next(t for t in table if t["method"] == "ars")
    assert float(ars["steps_to_threshold_median"]) == 2000 and int(ars["successes"]) == 2
    for t in table:  # machine-readable: plain numbers or empty
        for k, v in t.items():
            if k != "method" and v != "":
                float(v)
    md = md_path.read_text()
    assert "2,000 (2/3)" in md and "1,500 (2/3)" in md
    assert "eval return ≥ 100" in md and "3,000 env steps per run" in md and "# toy: CartPole-v1" in md
    failed = md.split("## Failed jobs")[1]
    assert "ppo seed 1: RuntimeError: env exploded" in failed and "ppo seed 2: no result.json" in failed


def test_runs_table_and_budget_check(run_dir):
    """Each run's env steps and wall seconds stand beside its return, and a completed run that stopped for a
    reason other than its budget fails the budget check by name (a silent cap must not look fair)."""
    def set_reason(label, seed, reason):
        path = run_dir / label / f"seed{seed}" / "result.json"
        res = json.loads(path.read_text())
        res["extra"] = {**res["extra"], "stop_reason": reason, "eval_env_steps": 500}
        path.write_text(json.dumps(res))

    for label, seed in [("cmaes", 0), ("cmaes", 1), ("cmaes", 2), ("ars", 0), ("ars", 1), ("ppo", 0)]:
        set_reason(label, seed, "max_env_steps")
    set_reason("ars", 2, "target_return")  # done early: fine
    rows = _by_method(summarize(run_dir, THRESHOLD))
    assert all(r["runs_short_of_budget"] == 0 for r in rows.values())
    md = write_summary(run_dir, list(rows.values()), THRESHOLD)[0].read_text()
    assert "Budget check: every completed run used its whole budget" in md
    runs = md.split("## Runs")[1]
    assert "| cmaes | 1 | ok | 108 | 3,010 | 500 | 4.5 | — | max_env_steps |" in runs
    assert "| ppo | 2 | missing |" in runs

    set_reason("cmaes", 1, "callback")
    rows = _by_method(summarize(run_dir, THRESHOLD))
    assert rows["cmaes"]["runs_short_of_budget"] == 1 and rows["ars"]["runs_short_of_budget"] == 0
    md_path, csv_path = write_summary(run_dir, list(rows.values()), THRESHOLD)
    md = md_path.read_text()
    assert "Budget check: FAILED: 1 run(s) stopped short of the budget: cmaes seed 1: stopped by 'callback'" in md
    assert "callback (**short of its budget**)" in md
    with open(csv_path, newline="") as fh:
        assert {t["method"]: t["runs_short_of_budget"] for t in csv.DictReader(fh)}["cmaes"] == "1"


def test_curves_written_and_readable(run_dir):
    import matplotlib.image

    out = report(run_dir)
    names = sorted(p.name for p in out["curves"])
    assert names == ["curves_env_steps.png", "curves_wall_clock.png"]
    for p in out["curves"]:
        assert p.stat().st_size > 10_000
        img = matplotlib.image.imread(p)
        assert img.ndim == 3 and img.shape[0] > 400 and img.shape[1] > 600
        assert img[..., :3].std() > 0.05  # something drawn, not a blank canvas
    assert "curves_env_steps.png" in out["summary_md"].read_text()


def test_panel_figure_draws_a_row_per_run_and_refuses_function_tasks(run_dir, tmp_path):
    import shutil

    import matplotlib.image

    from evograd.experiments.plots import plot_panels

    second = tmp_path / "second"
    shutil.copytree(run_dir, second)
    one = matplotlib.image.imread(plot_panels(tmp_path / "one.png", [run_dir]))
    two = matplotlib.image.imread(plot_panels(tmp_path / "two.png", [run_dir, second], ["A", "B"]))
    assert two.shape[1] == one.shape[1] and two.shape[0] == pytest.approx(2 * one.shape[0], rel=0.05)
    assert two[..., :3].std() > 0.05
    fn = tmp_path / "fn"
    (fn / "cmaes" / "seed0").mkdir(parents=True)
    (fn / "config.resolved.yaml").write_text(yaml.safe_dump({"name": "f", "task": {"function": {"fn": "sphere"}}}))
    with pytest.raises(ValueError, match="function task"):
        plot_panels(tmp_path / "x.png", [run_dir, fn])
    with pytest.raises(ValueError, match="at least one"):
        plot_panels(tmp_path / "x.png", [])
    # a floor cuts the view (the curves here start at 0-20): the picture changes; one floor per run directory
    cut = matplotlib.image.imread(plot_panels(tmp_path / "cut.png", [run_dir], y_floors=[40.0]))
    assert cut.shape == one.shape and not np.array_equal(cut, one)
    assert np.array_equal(matplotlib.image.imread(plot_panels(tmp_path / "no.png", [run_dir], y_floors=[None])), one)
    with pytest.raises(ValueError, match="y_floors: 2 given for 1"):
        plot_panels(tmp_path / "x.png", [run_dir], y_floors=[0.0, 1.0])
    with pytest.raises(ValueError, match="finite"):
        plot_panels(tmp_path / "x.png", [run_dir], y_floors=[float("nan")])
    with pytest.raises(ValueError, match=r"y_floors\[0\] = 1e\+06 is above every return"):
        plot_panels(tmp_path / "x.png", [run_dir], y_floors=[1e6])


def test_function_task(tmp_path):
    out = tmp_path / "fn"
    for label, scale in (("cmaes", 1.0), ("ga", 1000.0)):
        for seed in range(2):
            d = out / label / f"seed{seed}"
            d.mkdir(parents=True)
            values = scale * 10.0 ** -np.arange(6) * (1 + seed)
            evals = 100 * np.arange(1, 7) + 10 * seed
            with open(d / "progress.csv", "w", newline="") as fh:
                w = csv.writer(fh)
                w.writerow(["method", "seed", "generation", "evals", "wall_s", "best_value", "gen_mean"])
                for g in range(6):
                    w.writerow([label, seed, g, evals[g], 0.1 * g, values[g], 2 * values[g]])
            (d / "result.json").write_text(json.dumps({
                "method": label, "seed": seed, "status": "ok", "error": None, "best_value": values[-1],
                "evals": int(evals[-1]), "wall_s": 0.5, "evals_to_threshold": None,
                "seconds_to_threshold": None}))
    rows = _by_method(summarize(out, 1e-3))
    assert rows["cmaes"]["successes"] == 2 and rows["ga"]["successes"] == 0
    assert rows["cmaes"]["evals_to_threshold_median"] == 455  # 400 (1e-3) and 510 (2e-4)
    assert rows["cmaes"]["best_value_median"] == pytest.approx(1.5e-5)
    assert rows["ga"]["evals_to_threshold_median"] is None
    paths = plot_curves(out, 1e-3)
    assert sorted(p.name for p in paths) == ["curves_evals.png", "curves_wall_clock.png"]
    assert all(p.stat().st_size > 10_000 for p in paths)
    md, _ = write_summary(out, list(rows.values()), 1e-3)
    assert "best value ≤ 0.001" in md.read_text()
    # statistics: lower is better; no budget in a config here, so a run that never reached counts as its own evals
    assert rows["ga"]["_steps"] == [600, 610] and rows["ga"]["censored_runs"] == 2
    assert rows["cmaes"]["_steps"] == [400, 510] and rows["cmaes"]["evals_to_threshold_mean"] == 455
    section = md.read_text().split("## Statistics")[1]
    assert "| cmaes | ga | 1 [1, 1] |" in section and "a lower best value" in section
    assert "| 2 of 2 |" in section and "its own evaluations at its end" in section
    assert "None for function tasks" in section and "performance_profile.png" not in section
    assert "Equal budgets" not in section  # returns at equal budgets are an env task's


def test_empty_and_unreadable(tmp_path):
    d = tmp_path / "r" / "es" / "seed0"
    d.mkdir(parents=True)
    (d / "result.json").write_text('{"status": "ok", "fin')  # half-written
    (d / "progress.csv").write_text("method,seed,gen")  # header never finished
    out = report(tmp_path / "r", 1.0)
    row = out["rows"][0]
    assert (row["seeds"], row["failed_jobs"], row["successes"]) == (1, 1, 0)
    assert "unreadable" in out["summary_md"].read_text()
    assert all(p.exists() for p in out["curves"])


def test_statistics_columns_and_censoring(run_dir):
    """IQM and mean with bootstrap intervals; a completed run that never reached the threshold counts as the
    budget (censored, and counted); a failed job that had not reached it is left out; one run has no interval."""
    rows = _by_method(summarize(run_dir, THRESHOLD))
    c, a, p = rows["cmaes"], rows["ars"], rows["ppo"]
    assert c["final_return_iqm"] == pytest.approx(np.mean([120, 108, 101]))  # 3 runs: nothing trimmed
    assert c["final_return_iqm_low"] <= c["final_return_iqm"] <= c["final_return_iqm_high"]
    assert 101 <= c["final_return_mean_low"] and c["final_return_mean_high"] <= 120
    assert a["_steps"] == [3000, 1000, 3000] and a["censored_runs"] == 1  # seed 2 never reached: the budget
    assert a["steps_to_threshold_mean"] == pytest.approx(7000 / 3)
    assert (c["censored_runs"], c["steps_to_threshold_iqm"]) == (0, pytest.approx(np.mean([2000, 1010, 3020])))
    assert p["_steps"] == [2000, 1000] and p["censored_runs"] == 0 and p["_steps_left_out"] == 1
    assert p["final_return_iqm"] == 160 and p["final_return_iqm_low"] is None  # one completed run
    # wall seconds to the threshold: ars seed 2 never reached it and counts as never (not its own short 1.5 s),
    # so with 1 of 3 runs missing ars's IQM (nothing trimmed from 3 runs) is ∞; ppo's failed seed 1 is left out
    assert a["_seconds"] == pytest.approx([1.5, 0.5, NEVER]) and a["seconds_to_threshold_iqm"] == float("inf")
    assert c["_seconds"] == pytest.approx([2.0, 1.5, 3.3]) and p["_seconds"] == pytest.approx([8.0, 4.0])
    assert c["seconds_to_threshold_iqm"] == pytest.approx(6.8 / 3)
    assert c["seconds_to_threshold_iqm_high"] <= 3.3 + 1e-9
    assert summarize(run_dir, THRESHOLD)[1]["final_return_iqm_high"] == c["final_return_iqm_high"]  # seeded

    cfg = yaml.safe_load((run_dir / "config.resolved.yaml").read_text())
    for budget in ({"env_steps": 2500}, {"seconds": 60}):  # below what the run spent, or none: its own 3,000
        (run_dir / "config.resolved.yaml").write_text(yaml.safe_dump({**cfg, "budget": budget}))
        a = _by_method(summarize(run_dir, THRESHOLD))["ars"]
        assert a["_steps"] == [3000, 1000, 3000] and a["censored_runs"] == 1
    (run_dir / "config.resolved.yaml").write_text(yaml.safe_dump({**cfg, "budget": {"env_steps": 4000}}))
    assert _by_method(summarize(run_dir, THRESHOLD))["ars"]["_steps"] == [3000, 1000, 4000]
    (run_dir / "config.resolved.yaml").write_text(yaml.safe_dump({**cfg, "threshold": None}))
    assert all(r["censored_runs"] is None and r["_steps"] == [] for r in summarize(run_dir))


def test_statistics_section(run_dir):
    out = report(run_dir)
    md = out["summary_md"].read_text()
    section = md.split("## Statistics")[1].split("## Runs")[0]
    assert "2,000 resamples" in section and "IQM: interquartile mean" in section
    assert "| ars | 3 | 123.2 [99.5, 140] | 123.2 [99.5, 140] | 2,333 [" in section and "| 1 of 3 |" in section
    assert "| ppo | 1 | 160 (1 run) | 160 (1 run) |" in section and "| 0 of 2, 1 left out |" in section
    assert ("counts as the budget (3,000 env steps, or the env steps it ran to where its last generation went past "
            "that): censored") in section
    # cmaes (120, 108, 101) against ars (130, 140, 99.5): 3 of 9 pairs won
    assert "| cmaes | ars | 0.3333 [" in section and "| ppo | cmaes | 1 [1, 1] |" in section
    # the random-policy score: the mean of all 9 runs' evaluations at env step 0 (10, 10, 5, 0, 0, 5, 20 x 3)
    assert ("0 is R = 10, the mean evaluation return of the untrained policies (each run's evaluation at env step "
            "0, 9 runs" in section and "1 is the threshold 100" in section)
    assert "![performance_profile](performance_profile.png)" in section
    with open(out["summary_csv"], newline="") as fh:
        table = {t["method"]: t for t in csv.DictReader(fh)}
    assert table["ars"]["censored_runs"] == "1" and float(table["ars"]["steps_to_threshold_mean"]) == pytest.approx(
        7000 / 3)
    assert table["ppo"]["final_return_iqm"] == "160.0" and table["ppo"]["final_return_iqm_low"] == ""


def test_equal_budgets_table(run_dir):
    """Methods on different budgets are compared where they all stand: each method's return at the smaller
    budgets (the evaluation nearest to N env steps) and at the quickest method's median wall seconds (last
    evaluation at or before it; a completed shorter run counts its final one, a job killed before it none)."""
    cfg = yaml.safe_load((run_dir / "config.resolved.yaml").read_text())
    cfg["methods"]["ppo"]["budget"] = {"env_steps": 2000}
    (run_dir / "config.resolved.yaml").write_text(yaml.safe_dump(cfg))
    md = report(run_dir)["summary_md"].read_text()
    section = md.split("### Equal budgets")[1].split("### Probability")[0]
    assert "| method | return at 2,000 env steps | return at 1.5 s |" in section
    assert "At 1.5 s (ars's median run" in section
    # cmaes at 2,000: 100 (2,000), 105 (2,010), 90 (2,020), read at 2,010 on average; at 1.5 s: 50, 110, 60
    assert "| cmaes | 98.33 [90, 105] (3; at 2,010) | 73.33 [50, 110] (3) |" in section
    # ppo's failed and killed runs never evaluated at 2,000; at 1.5 s all three had run past it: 20 each
    assert "| ppo | 150 (1 run; at 2,000) | 20 [20, 20] (3) |" in section
    # ars completed at 1.5 s: its final returns
    assert "| ars | 76.67 [60, 90] (3; at 2,000) | 123.2 [99.5, 140] (3) |" in section

    cfg["methods"]["ppo"].pop("budget")  # one budget: only the wall-clock column
    (run_dir / "config.resolved.yaml").write_text(yaml.safe_dump(cfg))
    section = report(run_dir)["summary_md"].read_text().split("### Equal budgets")[1]
    assert "\n| method | return at 1.5 s |\n" in section and "At N env steps" not in section


def test_return_at_steps_reads_the_nearest_evaluation_of_runs_that_got_there():
    from evograd.experiments.report_matched import return_at_seconds, return_at_steps

    c = {"steps": np.array([0.0, 1900.0, 2300.0]), "wall": np.array([0.0, 1.0, 2.0]), "ret": np.array([0.0, 5.0, 9.0]),
         "last_wall": 2.5, "ok": False, "wall_s": float("nan")}
    assert return_at_steps(c, 2000) == (5.0, 1900.0)  # 100 before beats 300 after
    assert return_at_steps(c, 2200) == (9.0, 2300.0)
    assert return_at_steps(c, 2100) == (5.0, 1900.0)  # a tie: the earlier one
    assert return_at_steps(c, 2301) is None  # never got there
    assert return_at_seconds(c, 1.5) == 5.0 and return_at_seconds(c, 2.5) == 9.0
    assert return_at_seconds(c, 3.0) is None  # killed at 2.5 s: unknown at 3 s
    assert return_at_seconds({**c, "ok": True}, 3.0) == 9.0  # completed: its final evaluation


def test_performance_profile_png_and_random_score_from_the_config(run_dir):
    import matplotlib.image

    from evograd.experiments.report_stats import normalized_finals, profiles

    out = report(run_dir)
    assert out["profile"].name == "performance_profile.png" and out["profile"].stat().st_size > 10_000
    img = matplotlib.image.imread(out["profile"])
    assert img.shape[0] > 400 and img[..., :3].std() > 0.05
    rows = summarize(run_dir, THRESHOLD)
    norm, text = normalized_finals(rows, {"evaluation": {"random_score": 20.0}}, THRESHOLD)
    assert norm["cmaes"] == pytest.approx([(120 - 20) / 80, (108 - 20) / 80, (101 - 20) / 80])
    assert "R = 20, the config's evaluation.random_score" in text
    prof = profiles(norm)["cmaes"]
    assert prof.taus.min() < 0 and prof.taus.max() > 1 and np.all(np.diff(prof.fraction) <= 0)
    assert normalized_finals(rows, {"evaluation": {"random_score": 150.0}}, THRESHOLD)[0] is None  # above it

    cfg = yaml.safe_load((run_dir / "config.resolved.yaml").read_text())
    (run_dir / "config.resolved.yaml").write_text(yaml.safe_dump({**cfg, "threshold": None}))
    out = report(run_dir)
    md = out["summary_md"].read_text()
    assert out["profile"] is None and not (run_dir / "performance_profile.png").exists()  # the old one is gone
    assert "None without a threshold" in md and "censored" not in md.split("## Statistics")[1]


def test_across_table_one_row_per_method_with_bounds_and_counts(run_dir, tmp_path):
    import shutil

    from evograd.experiments.report_across import across_table, fmt_steps

    second = tmp_path / "second"
    shutil.copytree(run_dir, second)
    lines = across_table([run_dir, second], ["A", "B"], [None, 1000.0], [None, 2000])
    head = [h.strip() for h in lines[0].strip("|").split("|")]
    assert head == ["method", "A: final return", "env steps to 100", "seconds to 100", "return at 1.5 s",
                    "B: final return", "return at 2k steps", "env steps to 1,000", "seconds to 1,000",
                    "return at 1.5 s"]
    rows = {ln.split("|")[1].strip(): [c.strip() for c in ln.strip("|").split("|")[1:]] for ln in lines[2:]
            if ln.startswith("| ")}
    assert list(rows) == ["ppo", "cmaes", "ars"]
    # ars seed 2 completed without reaching 100: env steps count it as the budget (a lower bound), seconds as never
    assert rows["ars"][1].startswith("≥ ") and rows["ars"][1].endswith("(2/3)")
    assert not rows["ars"][2].startswith("≥") and rows["ars"][2].endswith("(2/3)")
    assert rows["cmaes"][1].startswith("2.01k [") and "(" not in rows["cmaes"][1]  # 2000, 1010, 3020: all reached
    assert rows["cmaes"][6] == rows["cmaes"][7] == "never (0/3)"
    assert rows["cmaes"][5].startswith("98.3 [")  # returns 100, 105, 90 at about 2,000 steps
    assert rows["ars"][3].startswith("123 [")  # at 1.5 s (ars's median run): 130, 140, 99.5
    # ppo: seed 1 failed before reaching 100 (left out), seed 2 was killed after reaching it (counted)
    assert rows["ppo"][0] == "160 (1 run)"
    assert rows["ppo"][1].endswith("(2/2)") and not rows["ppo"][1].startswith("≥")
    assert "(A: ars, 1.5 s; B: ars, 1.5 s)" in lines[-1]
    with pytest.raises(ValueError, match="titles: 1 given for 2"):
        across_table([run_dir, second], ["A"])
    with pytest.raises(ValueError, match="at least one"):
        across_table([])
    with pytest.raises(ValueError, match="thresholds: must be finite"):
        across_table([run_dir], thresholds=[float("nan")])
    fn = tmp_path / "fn"
    (fn / "cmaes" / "seed0").mkdir(parents=True)
    (fn / "config.resolved.yaml").write_text(yaml.safe_dump({"name": "f", "task": {"function": {"fn": "sphere"}}}))
    with pytest.raises(ValueError, match="function task"):
        across_table([fn])
    assert [fmt_steps(x) for x in (590_000, 1_500_000, 950, 999_600, None)] == ["590k", "1.5M", "950", "1M", "—"]
