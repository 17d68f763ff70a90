"""Results of a comparison run directory: summary.md, summary.csv, learning-curve PNGs and a performance profile.

Everything here reads only what the runner wrote (progress.csv, result.json, config.resolved.yaml), so a
report can be rebuilt at any time: while jobs still run, or after some were killed. A missing result.json
marks the job incomplete; a progress.csv whose last line has no newline lost that line mid-write, so the
line is dropped rather than parsed as a truncated number.

Threshold figures are recomputed from progress.csv against the threshold given here, so a report may use
another threshold than the run did; result.json's own figures fill in only where progress.csv lacks them.
A seed that never reached the threshold is missing from the to-threshold medians, never silently dropped:
the markdown says how many seeds the median covers.

Every run's own budget figures stand beside its result (the "Runs" table: env steps or evaluations, wall
seconds, evaluation steps, why it stopped), and a budget check names each completed run that stopped for a
reason other than its budget (a callback, a crash swallowed somewhere, a cap nobody chose): a comparison in
which one method silently got less than the others must not read like a fair one.

A "Statistics" section follows the table (report_stats.py, with stats.py): IQM and mean of the final return and
of the steps to threshold with 95% stratified-bootstrap intervals, runs that never reached the threshold
counted as the budget (censored, and counted), the probability of improvement of every pair of methods, and a
performance profile of normalized final returns (performance_profile.png; 0 = a random policy's score, 1 = the
threshold, both stated).
"""
from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import numpy as np

from .budgets import budget_text, method_budget
from .cputime import CPU_JSON, read_cpu_seconds
from .numfmt import fmt_number as _g
from .plots import plot_curves, plot_profile
from .records import RunRecord, detect_kind, num, read_config, read_runs, task_title
from .report_matched import curve
from .report_stats import PROFILE_PNG, STATS_COLUMNS, normalized_finals, profiles, run_samples, stats_section

__all__ = ["REQUIRED_COLUMNS", "RunRecord", "read_runs", "report", "summarize",
           "write_summary"]

REQUIRED_COLUMNS = ["method", "seeds", "successes", "final_return_mean", "final_return_std",
                    "steps_to_threshold_median", "seconds_to_threshold_median", "failed_jobs"]
_EXTRA = {"env": ["completed", "best_eval_return_mean", "env_steps_mean", "wall_s_mean",
                  "gap_to_optimal_mean"],
          "function": ["completed", "best_value_median", "best_value_mean", "evals_to_threshold_median",
                       "evals_mean", "wall_s_mean"]}
# appended after every other summary.csv column (readers by position keep working): each method's own budget,
# its CPU-hours over the runs that recorded them, and how many did
_APPENDED = {"env": ["budget_env_steps", "cpu_hours", "cpu_runs"],
             "function": ["budget_evals", "cpu_hours", "cpu_runs"]}

# why a run may end: its budget, or a reason that means "done" (a target reached, an exact method converged)
BUDGET_STOPS = ("max_env_steps", "max_seconds", "max_evals", "max_generations")
DONE_STOPS = ("target_return", "converged")


def stop_reason(r: RunRecord) -> str | None:
    extra = (r.result or {}).get("extra")
    reason = extra.get("stop_reason") if isinstance(extra, dict) else None
    return reason if isinstance(reason, str) else None


def stopped_short(r: RunRecord) -> bool:
    """A completed run that ended for a reason other than its budget or being done. Runs written before
    stop reasons were recorded (none in result.json) cannot be judged and do not count."""
    reason = stop_reason(r)
    return r.status == "ok" and reason is not None and reason not in BUDGET_STOPS + DONE_STOPS


def _seed_stats(r: RunRecord, threshold: float | None, kind: str) -> dict[str, float]:
    """Best, first-reach step/seconds (NaN if never reached) of one job."""
    if kind == "env":
        y, x, sign = r.column("eval_return"), r.column("env_steps"), 1.0
        best_key, steps_key = "best_eval_return", "steps_to_threshold"
    else:
        y, x, sign = r.column("best_value"), r.column("evals"), -1.0
        best_key, steps_key = "best_value", "evals_to_threshold"
    wall = r.column("wall_s")
    n = min(len(y), len(x), len(wall)) if len(x) and len(wall) else 0
    y = y[:n]
    seen = [v for v in (*(sign * y[np.isfinite(y)]), sign * r.value(best_key)) if np.isfinite(v)]
    best = sign * max(seen) if seen else float("nan")
    out = {"best": best, "steps": float("nan"), "seconds": float("nan")}
    if threshold is None or not np.isfinite(best) or sign * best < sign * threshold:
        out["reached"] = False
        return out
    out["reached"] = True
    hit = np.flatnonzero(np.isfinite(y) & (sign * y >= sign * threshold))
    if hit.size:
        out["steps"], out["seconds"] = float(x[hit[0]]), float(wall[hit[0]])
    else:  # progress.csv lost the row (killed job, torn line): trust result.json where it has the figure
        out["steps"], out["seconds"] = r.value(steps_key), r.value("seconds_to_threshold")
    return out


def _stat(values: list[float], fn) -> float | None:
    v = [x for x in values if np.isfinite(x)]
    return float(fn(v)) if v else None


def _error_line(r: RunRecord, kind: str) -> str:
    if r.error:
        lines = [ln for ln in str(r.error).strip().splitlines() if ln.strip()]
        return lines[0] if lines else "failed (empty error message)"
    if r.status == "failed":
        return "failed (no error message)"
    xcol = "env_steps" if kind == "env" else "evals"
    x = r.column(xcol)
    x = x[np.isfinite(x)]
    where = f"ends at {int(x.max()):,} {xcol.replace('_', ' ')}" if x.size else "has no rows"
    return f"no result.json (killed or still running); progress.csv {where}"


def summarize(out_dir: str | Path, threshold: float | None = None, task_kind: str | None = None, *,
              records: list[RunRecord] | None = None) -> list[dict[str, Any]]:
    """One row per method label; `None` stands for "no value". threshold None: the config's threshold.

    Keys starting with "_" are for the markdown only (not CSV columns): `_errors` (one line per job that
    did not finish ok) and `_reached` (seeds whose to-threshold figures are known).
    Final / best returns, env steps and wall time are over completed ("ok") jobs; successes and the
    to-threshold figures over all seeds, since reaching the threshold is a fact even if a job later died.
    """
    out_dir = Path(out_dir)
    cfg = read_config(out_dir)
    records = read_runs(out_dir) if records is None else records
    if threshold is None and cfg.get("threshold") is not None:
        threshold = float(cfg["threshold"])
    kind = task_kind or detect_kind(records, cfg)
    if kind not in ("env", "function"):
        raise ValueError(f"task_kind must be 'env' or 'function'. Got {task_kind!r} instead.")
    rows = []
    for label in dict.fromkeys(r.label for r in records):
        runs = [r for r in records if r.label == label]
        ok = [r for r in runs if r.status == "ok"]
        per_seed = [_seed_stats(r, threshold, kind) for r in runs]
        reached = [s for s in per_seed if s["reached"]]
        row: dict[str, Any] = {c: None for c in REQUIRED_COLUMNS + _EXTRA[kind]}
        row.update(method=label, seeds=len(runs), completed=len(ok), failed_jobs=len(runs) - len(ok),
                   successes=len(reached) if threshold is not None else None,
                   seconds_to_threshold_median=_stat([s["seconds"] for s in reached], np.median),
                   wall_s_mean=_stat([r.value("wall_s") for r in ok], np.mean))
        to_thr = _stat([s["steps"] for s in reached], np.median)
        if kind == "env":
            final = [r.value("final_eval_return") for r in ok]
            extras = [r.result.get("extra") for r in ok]
            gaps = [num(e.get("gap_to_optimal")) if isinstance(e, dict) else np.nan for e in extras]
            row.update(final_return_mean=_stat(final, np.mean), final_return_std=_stat(final, np.std),
                       steps_to_threshold_median=to_thr, gap_to_optimal_mean=_stat(gaps, np.mean),
                       best_eval_return_mean=_stat([r.value("best_eval_return") for r in ok], np.mean),
                       env_steps_mean=_stat([r.value("env_steps") for r in ok], np.mean))
        else:
            best = [s["best"] for r, s in zip(runs, per_seed) if r.status == "ok"]
            row.update(best_value_median=_stat(best, np.median), best_value_mean=_stat(best, np.mean),
                       evals_to_threshold_median=to_thr,
                       evals_mean=_stat([r.value("evals") for r in ok], np.mean))
        row["_reached"] = sum(1 for s in reached if np.isfinite(s["steps"]))
        row["runs_short_of_budget"] = sum(stopped_short(r) for r in ok)
        row["_short"] = [f"{label} seed {r.seed}: stopped by {stop_reason(r)!r}" for r in ok if stopped_short(r)]
        row["_runs"] = [_run_line(r, kind) for r in runs]
        cpu = [x["cpu_s"] for x in row["_runs"] if x["cpu_s"] is not None]
        row["cpu_hours"] = sum(cpu) / 3600 if cpu else None  # every run's, finished or not
        row["cpu_runs"] = len(cpu)  # runs from before jobs counted CPU, or killed before their first write, lack it
        unit = "env_steps" if kind == "env" else "evals"
        cap = row[f"budget_{unit}"] = method_budget(cfg, label).get(unit)  # this method's own budget
        row["_errors"] = [f"{label} seed {r.seed}: {_error_line(r, kind)}" for r in runs if r.status != "ok"]
        row.update(run_samples(runs, per_seed, kind, threshold is not None, cap))
        row["_curves"] = [curve(r) for r in runs] if kind == "env" else []
        rows.append(row)
    return rows


def _run_line(r: RunRecord, kind: str) -> dict[str, Any]:
    """One job's result beside what it spent (the markdown's "Runs" table)."""
    res = r.result or {}
    extra = res.get("extra") if isinstance(res.get("extra"), dict) else {}
    value = r.value("final_eval_return" if kind == "env" else "best_value")
    spent = r.value("env_steps" if kind == "env" else "evals")
    return {"method": r.label, "seed": r.seed, "status": r.status, "value": None if np.isnan(value) else value,
            "spent": None if np.isnan(spent) else spent, "eval_env_steps": num(extra.get("eval_env_steps")),
            "wall_s": None if np.isnan(r.value("wall_s")) else r.value("wall_s"),
            "cpu_s": _cpu_seconds(r), "stop_reason": stop_reason(r) or "—", "short": stopped_short(r)}


def _cpu_seconds(r: RunRecord) -> float | None:
    """The job's CPU seconds (its worker processes included): result.json, else what a killed or running job
    last wrote to cpu.json; None for runs written before jobs counted them."""
    cpu = r.value("cpu_s")
    if np.isnan(cpu) and (r.path / CPU_JSON).exists():
        cpu = read_cpu_seconds(r.path)
    return None if np.isnan(cpu) else float(cpu)


def _runs_table(rows: list[dict], function: bool) -> list[str]:
    head = ("best value", "evaluations") if function else ("final return", "env steps")
    lines = [f"| method | seed | status | {head[0]} | {head[1]} |" + ("" if function else " eval env steps |")
             + " wall s | CPU s | stopped by |", "|---|---:|---|---:|---:|" + ("" if function else "---:|")
             + "---:|---:|---|"]
    for row in rows:
        for x in row.get("_runs", []):
            ev = "" if function else f" {'—' if np.isnan(x['eval_env_steps']) else _g(x['eval_env_steps'])} |"
            why = x["stop_reason"] + (" (**short of its budget**)" if x["short"] else "")
            lines.append(f"| {x['method'].replace('|', chr(92) + '|')} | {x['seed']} | {x['status']} | "
                         f"{_g(x['value'])} | {_g(x['spent'])} |{ev} {fmt_seconds(x['wall_s'])} | "
                         f"{fmt_seconds(x['cpu_s'])} | {why} |")
    return lines


def fmt_hours(x: float | None) -> str:
    return "—" if x is None else f"{x:.2f}" if x < 10 else f"{x:.1f}"


def cpu_cell(row: dict) -> str:
    """A method's CPU-hours, saying over how many of its runs when some recorded none."""
    text = fmt_hours(row.get("cpu_hours"))
    k, n = row.get("cpu_runs"), row.get("seeds")
    return text if row.get("cpu_hours") is None or k == n else f"{text} ({k}/{n} runs)"


def fmt_seconds(x: float | None) -> str:
    return "—" if x is None else f"{x:,.0f}" if x >= 1000 else f"{x:.1f}"


def _md_table(rows: list[dict], function: bool, gap: bool) -> list[str]:
    def num(key, fmt=_g):
        return lambda r: fmt(r[key])

    def reach(key, fmt=_g, unit=""):  # the median, and over how many seeds it was taken
        return lambda r: "—" if r[key] is None else f"{fmt(r[key])}{unit} ({r['_reached']}/{r['seeds']})"

    spec = [("method", lambda r: r["method"].replace("|", "\\|")), ("seeds", num("seeds")),
            ("successes", num("successes"))]
    if function:
        spec += [("best value (median)", num("best_value_median")),
                 ("best value (mean)", num("best_value_mean")),
                 ("evals to threshold (median)", reach("evals_to_threshold_median")),
                 ("seconds to threshold (median)", reach("seconds_to_threshold_median", fmt_seconds, " s")),
                 ("evals (mean)", num("evals_mean"))]
    else:
        spec += [("final return (mean ± std)", lambda r: "—" if r["final_return_mean"] is None else
                  f"{_g(r['final_return_mean'])} ± {_g(r['final_return_std'], 2)}"),
                 ("best eval (mean)", num("best_eval_return_mean")),
                 ("env steps to threshold (median)", reach("steps_to_threshold_median")),
                 ("seconds to threshold (median)", reach("seconds_to_threshold_median", fmt_seconds, " s")),
                 ("env steps (mean)", num("env_steps_mean"))]
    spec += [("wall s (mean)", num("wall_s_mean", fmt_seconds)), ("CPU h (all runs)", cpu_cell),
             ("failed jobs", num("failed_jobs")),
             ("runs short of budget", num("runs_short_of_budget"))]
    spec += [("gap to optimal (mean)", num("gap_to_optimal_mean"))] if gap else []
    return (["| " + " | ".join(h for h, _ in spec) + " |", "|---" + "|---:" * (len(spec) - 1) + "|"]
            + ["| " + " | ".join(str(f(r)) for _, f in spec) + " |" for r in rows])


def write_summary(out_dir: str | Path, rows: list[dict[str, Any]], threshold: float | None = None, *,
                  budget: dict | None = None, title: str | None = None) -> tuple[Path, Path]:
    """summary.csv (plain numbers, empty for none) and summary.md; threshold/budget/title from the config
    when not given. Returns (md_path, csv_path)."""
    out_dir = Path(out_dir)
    cfg = read_config(out_dir)
    threshold = cfg.get("threshold") if threshold is None else threshold
    budget_line = budget_text(cfg if budget is None else {"budget": budget})
    function = any("best_value_median" in r for r in rows)
    gap = any(r.get("gap_to_optimal_mean") is not None for r in rows)  # only LQR-like tasks report it
    kind = "function" if function else "env"
    cols = [c for c in REQUIRED_COLUMNS + _EXTRA[kind] + ["runs_short_of_budget"] + STATS_COLUMNS[kind]
            + _APPENDED[kind] if gap or c != "gap_to_optimal_mean"]
    csv_path = out_dir / "summary.csv"
    with open(csv_path, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(cols)
        w.writerows([["" if r.get(c) is None else r[c] for c in cols] for r in rows])
    cmp = "best value ≤" if function else "eval return ≥"
    thr_text = "none" if threshold is None else f"{cmp} {threshold:g}"
    short = [x for r in rows for x in r.get("_short", [])]
    check = ("every completed run used its whole budget (or was done)" if not short else
             f"FAILED: {len(short)} run(s) stopped short of the budget: " + "; ".join(short))
    lines = [f"# {title or task_title(cfg, out_dir)}", "", f"- Threshold: {thr_text}",
             f"- Budget: {budget_line}", f"- Budget check: {check}",
             f"- Seeds per method: {max((r['seeds'] for r in rows), default=0)}",
             "", *_md_table(rows, function, gap), "",
             "Successes: seeds whose best evaluation reached the threshold. "
             + ("Best value: best function value of each completed run. " if function else
                "Final return: the last evaluation of each completed run, mean ± std over those runs. ")
             + "To-threshold columns: median over the seeds that reached the threshold, (reached/seeds); "
             "a seed that never reached it counts as missing, not as a number; — when none did."]
    pngs = [p for p in ("curves_env_steps.png", "curves_evals.png", "curves_wall_clock.png")
            if (out_dir / p).exists()]
    lines += [""] + [f"![{p[:-4]}]({p})" for p in pngs] if pngs else []
    lines += stats_section(rows, cfg, threshold, function, out_dir)
    lines += ["", "## Runs", "", "What each job got and spent: " + ("evaluations" if function else
              "training env steps (evaluation steps apart)") + ", wall seconds including evaluations, and why "
              "it stopped.", "", *_runs_table(rows, function)]
    errors = [e for r in rows for e in r.get("_errors", [])]
    lines += ["", "## Failed jobs", ""] + ([f"- {e}" for e in errors] if errors else ["None."])
    md_path = out_dir / "summary.md"
    md_path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return md_path, csv_path


def report(out_dir: str | Path, threshold: float | None = None,
           task_kind: str | None = None) -> dict[str, Any]:
    """Curves, then summary.md/.csv (which link the curves) for a run directory; reads it once."""
    out_dir = Path(out_dir)
    records = read_runs(out_dir)
    pngs = plot_curves(out_dir, threshold, task_kind, records=records)
    rows = summarize(out_dir, threshold, task_kind, records=records)
    cfg = read_config(out_dir)
    norm, convention = normalized_finals(rows, cfg, cfg.get("threshold") if threshold is None else threshold)
    profile = out_dir / PROFILE_PNG
    profile.unlink(missing_ok=True)  # never one left from an earlier report on another threshold
    if norm:
        plot_profile(profile, profiles(norm), task_title(cfg, out_dir), convention, [r["method"] for r in rows],
                     {label: len(v) for label, v in norm.items()})
    md, csv_path = write_summary(out_dir, rows, threshold)
    return {"rows": rows, "summary_md": md, "summary_csv": csv_path, "curves": pngs,
            "profile": profile if norm else None}
