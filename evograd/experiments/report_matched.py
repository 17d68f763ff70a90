"""The Statistics section's "equal budgets" table: every method's return at the same env steps and at the same
wall-clock, so methods that run on different budgets (ES at 5M env steps, SAC at 300k) are compared where they
all stand, not at their own ends.

- At N env steps, for each env-step budget N of the config's methods below the largest: of every run that got
  to N (an evaluation at or after it), the evaluation nearest to N training env steps (a run whose own budget is
  N: its final one, just past N). Evaluations fall at generation or update boundaries, so a method that evaluates
  every 64k steps is read up to 32k steps off N, either way: each cell says at how many steps, on average, its
  runs were read. Methods whose budget is below N have no cell.
- At T seconds, T the median wall seconds of the completed runs of the quickest method: the last evaluation at
  or before T wall seconds (evaluations included in the clock) of every run that either lasted T or completed
  (a completed shorter run counts its final evaluation: it is what its user holds at T). A job that failed or
  was killed before T is left out.

Each cell is the IQM with its 95% stratified-bootstrap interval (report_stats' conventions), and the number of
runs. Wall-clock compares only where the runs had the same kind of core each, one job per core.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from . import stats
from .budgets import method_budget
from .numfmt import fmt_number
from .records import RunRecord

__all__ = ["curve", "equal_budget_lines", "quickest_wall", "return_at_seconds", "return_at_steps"]


def curve(r: RunRecord) -> dict[str, Any]:
    """A run's evaluation points (env steps, wall seconds, return), how far its clock got, and its status."""
    x, w, y = r.column("env_steps"), r.column("wall_s"), r.column("eval_return")
    n = min(len(x), len(w), len(y))
    x, w, y = x[:n], w[:n], y[:n]
    keep = np.isfinite(x) & np.isfinite(w) & np.isfinite(y)
    last_wall = float(np.nanmax(w)) if n and np.isfinite(w).any() else float("nan")
    return {"steps": x[keep], "wall": w[keep], "ret": y[keep], "last_wall": last_wall, "ok": r.status == "ok",
            "wall_s": r.value("wall_s")}


def return_at_steps(c: dict, n: float) -> tuple[float, float] | None:
    """(return, env steps) of the evaluation nearest to `n` training env steps (the earlier one on a tie), of a
    run with an evaluation at or after `n`; None for a run that never got there."""
    if not (c["steps"].size and c["steps"].max() >= n):
        return None
    i = int(np.argmin(np.abs(c["steps"] - n)))
    return float(c["ret"][i]), float(c["steps"][i])


def return_at_seconds(c: dict, t: float) -> float | None:
    """The last evaluation at or before `t` wall seconds, of a run that lasted `t` or completed; else None."""
    lasted = np.isfinite(c["last_wall"]) and c["last_wall"] >= t
    if not (lasted or c["ok"]):
        return None
    before = np.flatnonzero(c["wall"] <= t)
    return float(c["ret"][before[-1]]) if before.size else None


def _cell(values: list[float | None], steps: list[float] | None = None) -> str:
    """IQM [95% CI] (runs), and where given, the mean env steps the runs were read at."""
    sample = [v for v in values if v is not None and np.isfinite(v)]
    if not sample:
        return "—"
    at = f"; at {fmt_number(float(np.mean(steps)))}" if steps else ""
    if len(sample) == 1:
        return f"{fmt_number(sample[0])} (1 run{at})"
    est = stats.interval_estimate(sample, stats.iqm)
    return f"{fmt_number(est.value)} [{fmt_number(est.low)}, {fmt_number(est.high)}] ({len(sample)}{at})"


def _at_steps(curves: list[dict], n: float) -> str:
    read = [x for x in (return_at_steps(c, n) for c in curves) if x is not None and np.isfinite(x[0])]
    return _cell([v for v, _ in read], [s for _, s in read])


def quickest_wall(rows: list[dict]) -> tuple[str, float] | None:
    """(method, T): the method whose completed runs have the smallest median wall seconds, and that median; None
    with fewer than two methods that completed a run (nothing to compare)."""
    walls = {r["method"]: [c["wall_s"] for c in r.get("_curves", []) if c["ok"] and np.isfinite(c["wall_s"])]
             for r in rows}
    medians = {label: float(np.median(w)) for label, w in walls.items() if w}
    if len(medians) < 2:
        return None
    quickest = min(medians, key=medians.get)
    return quickest, medians[quickest]


def equal_budget_lines(rows: list[dict], cfg: dict) -> list[str]:
    """The markdown of the equal-budgets table ([] for function tasks, or when there is nothing to match)."""
    rows = [r for r in rows if r.get("_curves")]
    budgets = {r["method"]: method_budget(cfg, r["method"]).get("env_steps") for r in rows}
    steps = sorted({int(b) for b in budgets.values() if b})
    steps = steps[:-1] if len(steps) > 1 else []  # the largest is where the final-return table already stands
    quickest, t = quickest_wall(rows) or (None, None)
    if not steps and t is None:
        return []
    head = ["method"] + [f"return at {fmt_number(n)} env steps" for n in steps]
    head += [f"return at {fmt_number(t)} s" for _ in [t] if t is not None]
    lines = ["### Equal budgets", "",
             "Each method's evaluation return where all methods stand on the same budget: IQM [95% CI] (runs). "
             + ("At N env steps (the config's smaller method budgets): each run's evaluation nearest to N "
                "training env steps (\"at\": the mean env steps they were read at), of the runs that got to N; a "
                "method whose budget is below N has none. " if steps else "")
             + (f"At {fmt_number(t)} s ({quickest}'s median run, wall-clock with evaluations): each run's last "
                "evaluation at or before it, a completed shorter run counting its final one; a job that failed or "
                "was killed before it is left out. —: no run to read. Wall-clock compares only where every job "
                "had a core of the same kind to itself."
                if t is not None else ""), "",
             "| " + " | ".join(head) + " |", "|---" + "|---:" * (len(head) - 1) + "|"]
    for r in rows:
        own = budgets[r["method"]]
        cells = [r["method"].replace("|", "\\|")]
        cells += [_at_steps(r["_curves"], n) if own is None or own >= n else "—" for n in steps]
        if t is not None:
            cells.append(_cell([return_at_seconds(c, t) for c in r["_curves"]]))
        lines.append("| " + " | ".join(cells) + " |")
    return lines
