"""One markdown table across several comparisons (a README's summary of published runs): a row per method, and per
comparison its final return, its env steps and seconds to the threshold, its return at the quickest method's
median wall-clock, and where asked its return at a given env-step count.

The figures are the ones each comparison's own report gives (summarize and the equal-budgets table), written
compactly: IQM [95% CI] over the runs, env steps as 590k / 1.5M. In env steps to a threshold, a completed run that
never got there counts as its budget, so the IQM is then a lower bound, written "≥ ..." with how many runs reached
the threshold; in seconds such a run counts as never, and the IQM is ∞ once more than a quarter of the runs missed
(report_stats' rules). A cell says how many runs it covers where that is fewer than the seeds.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from . import stats
from .budgets import method_budget
from .numfmt import fmt_number
from .records import read_config, task_title
from .report import summarize
from .report_matched import quickest_wall, return_at_seconds, return_at_steps
from .report_stats import NEVER

__all__ = ["across_table", "fmt_steps"]


def fmt_steps(x: float | None) -> str:
    """Env steps, short: 590k, 1.51M, 950 (rounded to 3 significant digits before the unit is chosen)."""
    if x is None or not np.isfinite(x):
        return fmt_number(x)
    r = float(f"{x:.3g}")
    for unit, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(r) >= scale:
            return f"{r / scale:.3g}{unit}"
    return f"{r:.0f}"


def _num(x: float | None) -> str:
    if x is not None and np.isfinite(x) and abs(x) >= 999.5:  # 3 digits would write 999.7 as 1e+03
        return f"{x:,.0f}"
    return fmt_number(x, digits=3)


def _interval(value, low, high, fmt=_num) -> str:
    if value is None:
        return "—"
    return f"{fmt(value)} [{fmt(low)}, {fmt(high)}]" if low is not None else fmt(value)


def _runs_note(n: int, seeds: int) -> str:
    """How many runs a cell covers, where it is not every seed (unfinished or failed jobs)."""
    return f" ({n} run{'s' if n != 1 else ''})" if n < seeds else ""


def _iqm(values: list[float | None], seeds: int) -> str:
    sample = [v for v in values if v is not None and np.isfinite(v)]
    if not sample:
        return "—"
    if len(sample) == 1:
        return _num(sample[0]) + _runs_note(1, seeds)
    est = stats.interval_estimate(sample, stats.iqm)
    return _interval(est.value, est.low, est.high) + _runs_note(len(sample), seeds)


def _to_threshold(r: dict, key: str, fmt, seeds: int) -> str:
    """IQM [95% CI] of the statistics' sample, with "(k/n)" where k of its n runs reached the threshold (n below
    the seeds: jobs that failed or are unfinished and had not reached it are left out). In env steps a miss counts
    as the budget (`censored_runs`), so the IQM is then a lower bound, written "≥"; in seconds a miss is ∞."""
    if key == "steps_to_threshold":
        n = len(r.get("_steps") or [])
        reached = n - (r.get("censored_runs") or 0)
        bound = bool(r.get("censored_runs"))
    else:
        sample = r.get("_seconds") or []
        n, reached, bound = len(sample), sum(v < NEVER for v in sample), False
    if not n:
        return "—"
    if not reached:
        return f"never (0/{n})"
    cell = _interval(r.get(f"{key}_iqm"), r.get(f"{key}_iqm_low"), r.get(f"{key}_iqm_high"), fmt)
    if bound and np.isfinite(r.get(f"{key}_iqm") or np.inf):
        cell = "≥ " + cell
    return cell + (f" ({reached}/{n})" if reached < n or n < seeds else "")


def _seed_count(cfg: dict) -> int:
    seeds = cfg.get("seeds", 1)
    return len(seeds) if isinstance(seeds, list) else int(seeds)


def _check(runs: list[Path], titles, thresholds, at_steps) -> None:
    if not runs:
        raise ValueError("runs: give at least one comparison directory")
    for name, values in (("titles", titles), ("thresholds", thresholds), ("at_steps", at_steps)):
        if values is not None and len(values) != len(runs):
            raise ValueError(f"{name}: {len(values)} given for {len(runs)} run directories")
    for name, values in (("thresholds", thresholds), ("at_steps", at_steps)):
        bad = [v for v in values or [] if v is not None and not (np.isfinite(v) and (name == "thresholds" or v > 0))]
        if bad:
            raise ValueError(f"{name}: must be {'finite' if name == 'thresholds' else 'positive'} numbers, got {bad}")


def _comparison_columns(run: Path, title: str | None, thr: float | None, n: float | None):
    """One comparison's rows (by method), its columns ((name, cell function)), its title and its clock note."""
    cfg = read_config(run)
    if isinstance(cfg.get("task"), dict) and cfg["task"].get("function"):
        raise ValueError(f"{run} is a function task: the table reads env returns (use `evograd report` there)")
    seeds = _seed_count(cfg)
    title = (title or task_title(cfg, run)).replace("|", "\\|")
    thr = thr if thr is not None else cfg.get("threshold")
    rows = {r["method"]: r for r in summarize(run, None if thr is None else float(thr), "env")}
    budgets = {m: method_budget(cfg, m).get("env_steps") for m in rows}
    cols = []
    if len(set(budgets.values())) > 1:
        cols.append(("budget", lambda m, r: fmt_steps(budgets[m])))
    cols.append(("final return", lambda m, r: _interval(
        r.get("final_return_iqm"), r.get("final_return_iqm_low"), r.get("final_return_iqm_high"))
        + _runs_note(len(r.get("_final") or []), seeds)))
    if n is not None:
        def at_n(m, r):
            if budgets[m] is not None and budgets[m] < n:
                return "—"
            return _iqm([x[0] for c in r.get("_curves", []) if (x := return_at_steps(c, n))], seeds)
        cols.append((f"return at {fmt_steps(n)} steps", at_n))
    if thr is not None:
        cols.append((f"env steps to {_num(float(thr))}",
                     lambda m, r: _to_threshold(r, "steps_to_threshold", fmt_steps, seeds)))
        cols.append((f"seconds to {_num(float(thr))}",
                     lambda m, r: _to_threshold(r, "seconds_to_threshold", _num, seeds)))
    quick, clock = quickest_wall(list(rows.values())), None
    if quick is not None:
        clock = f"{title}: {quick[0]}, {_num(quick[1])} s"
        cols.append((f"return at {_num(quick[1])} s", lambda m, r: _iqm(
            [return_at_seconds(c, quick[1]) for c in r.get("_curves", [])], seeds)))
    return rows, cols, title, clock


def across_table(runs: list[str | Path], titles: list[str] | None = None,
                 thresholds: list[float | None] | None = None,
                 at_steps: list[float | None] | None = None) -> list[str]:
    """The markdown lines of the table and its footnote. One entry per run directory (or published copy) in each
    list: its title (default: the config's name and env id), its threshold (None: the config's), and an env-step
    count at which to read every method's return as well (None: no such column)."""
    runs = [Path(r) for r in runs]
    _check(runs, titles, thresholds, at_steps)
    head, columns, methods, clocks = ["method"], [], {}, []
    for i, run in enumerate(runs):
        rows, cols, title, clock = _comparison_columns(run, titles[i] if titles else None,
                                                       thresholds[i] if thresholds else None,
                                                       at_steps[i] if at_steps else None)
        methods.update(dict.fromkeys(rows))
        clocks += [clock] if clock else []
        head += [f"{title}: {name}" if j == 0 else name for j, (name, _) in enumerate(cols)]
        columns.append((rows, cols))
    lines = ["| " + " | ".join(head) + " |", "|---" + "|---:" * (len(head) - 1) + "|"]
    for m in methods:
        cells = [m.replace("|", "\\|")]
        for rows, cols in columns:
            r = rows.get(m)
            cells += [fn(m, r) if r is not None else "·" for _, fn in cols]
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", "IQM [95% CI] over the runs; (n runs): fewer runs than seeds (unfinished or failed jobs). To a "
              "threshold, (k/n): k of the n runs counted reached it; \"≥\": the others count as the budget, so the "
              "figure is a lower bound; in seconds they count as never (∞). —: no value; ·: the method is not in that "
              "comparison."]
    if clocks:
        lines += ["", "Return at T s: each run's last evaluation at or before T, T the median wall-clock of the "
                  f"quickest method's completed runs ({'; '.join(clocks)})."]
    return lines
