"""One markdown table across several comparisons (a README's summary of published runs): a row per method, and per
comparison its final return, its env steps and seconds to the threshold, its return at the quickest method's
median wall-clock, and where asked its return at a given env-step count.

The figures are the ones each comparison's own report gives (summarize and the equal-budgets table), written
compactly: IQM [95% CI] over the runs, env steps as 590k / 1.5M. A to-threshold IQM with runs that never got there
counts the budget for the runs that never got there, so it is a lower bound, written "≥ ..." with how many runs
reached the threshold; in seconds a miss counts as never, and the IQM is ∞ once more than a quarter of the runs
missed (report_stats' rules).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from . import stats
from .budgets import method_budget
from .numfmt import fmt_number
from .records import read_config
from .report import summarize
from .report_matched import quickest_wall, return_at_seconds, return_at_steps

__all__ = ["across_table", "fmt_steps"]


def fmt_steps(x: float | None) -> str:
    """Env steps, short: 590k, 1.51M, 950."""
    if x is None or not np.isfinite(x):
        return fmt_number(x)
    if abs(x) >= 1e6:
        return f"{x / 1e6:.3g}M"
    if abs(x) >= 1e3:
        return f"{x / 1e3:.3g}k"
    return f"{x:.0f}"


def _num(x: float | None) -> str:
    return fmt_number(x, digits=3)


def _interval(value, low, high, fmt=_num) -> str:
    if value is None:
        return "—"
    return f"{fmt(value)} [{fmt(low)}, {fmt(high)}]" if low is not None else fmt(value)


def _iqm(values: list[float | None]) -> str:
    sample = [v for v in values if v is not None and np.isfinite(v)]
    if len(sample) < 2:
        return _num(sample[0]) if sample else "—"
    est = stats.interval_estimate(sample, stats.iqm)
    return _interval(est.value, est.low, est.high)


def _to_threshold(r: dict, key: str, fmt, censored: bool) -> str:
    """IQM [95% CI] (reached/runs) when some run missed; "never" when none reached. `censored`: a miss counts as
    the budget (env steps), so the IQM is a lower bound and written "≥"; else it counts as ∞ (seconds)."""
    reached, runs = r.get("successes") or 0, r.get("seeds") or 0
    if not reached:
        return f"never (0/{runs})"
    cell = _interval(r.get(f"{key}_iqm"), r.get(f"{key}_iqm_low"), r.get(f"{key}_iqm_high"), fmt)
    if cell == "—" or reached == runs:
        return cell
    lower = "≥ " if censored and np.isfinite(r.get(f"{key}_iqm") or np.inf) else ""
    return f"{lower}{cell} ({reached}/{runs})"


def across_table(runs: list[str | Path], titles: list[str] | None = None,
                 thresholds: list[float | None] | None = None,
                 at_steps: list[float | None] | None = None) -> list[str]:
    """The markdown lines of the table. One entry per run directory (or published copy) in each list: its title
    (default: the config's env id), its threshold (None: the config's), and an env-step count at which to read
    every method's return as well (None: no such column)."""
    runs = [Path(r) for r in runs]
    if not runs:
        raise ValueError("runs: give at least one comparison directory")
    for name, values in (("titles", titles), ("thresholds", thresholds), ("at_steps", at_steps)):
        if values is not None and len(values) != len(runs):
            raise ValueError(f"{name}: {len(values)} given for {len(runs)} run directories")
    head, columns, methods, clocks = ["method"], [], {}, []
    for i, run in enumerate(runs):
        cfg = read_config(run)
        title = titles[i] if titles else (cfg.get("task", {}).get("env", {}) or {}).get("id", run.name)
        thr = thresholds[i] if thresholds and thresholds[i] is not None else cfg.get("threshold")
        rows = {r["method"]: r for r in summarize(run, None if thr is None else float(thr))}
        methods.update(dict.fromkeys(rows))
        budgets = {m: method_budget(cfg, m).get("env_steps") for m in rows}
        varied = len({b for b in budgets.values()}) > 1
        n = at_steps[i] if at_steps else None
        quick = quickest_wall(list(rows.values()))
        cols = []
        if varied:
            cols.append(("budget", lambda m, r, b=budgets: fmt_steps(b[m])))
        cols.append(("final return", lambda m, r: _interval(r.get("final_return_iqm"), r.get("final_return_iqm_low"),
                                                              r.get("final_return_iqm_high"))))
        if n is not None:
            def at_n(m, r, n=n, b=budgets):
                if b[m] is not None and b[m] < n:
                    return "—"
                return _iqm([x[0] for c in r.get("_curves", []) if (x := return_at_steps(c, n))])
            cols.append((f"return at {fmt_steps(n)} steps", at_n))
        if thr is not None:
            cols.append((f"env steps to {_num(float(thr))}",
                         lambda m, r: _to_threshold(r, "steps_to_threshold", fmt_steps, True)))
            cols.append((f"seconds to {_num(float(thr))}",
                         lambda m, r: _to_threshold(r, "seconds_to_threshold", _num, False)))
        if quick is not None:
            t = quick[1]
            clocks.append(f"{title}: {quick[0]}, {_num(t)} s")
            cols.append((f"return at {_num(t)} s",
                         lambda m, r, t=t: _iqm([return_at_seconds(c, t) for c in r.get("_curves", [])])))
        head += [f"{title}: {name}" if j == 0 else name for j, (name, _) in enumerate(cols)]
        columns.append((rows, cols))
    lines = ["| " + " | ".join(head) + " |", "|---" + "|---:" * (len(head) - 1) + "|"]
    for m in methods:
        cells = [m.replace("|", "\\|")]
        for rows, cols in columns:
            r = rows.get(m)
            cells += [fn(m, r) if r is not None else "—" for _, fn in cols]
        lines.append("| " + " | ".join(cells) + " |")
    if clocks:
        lines += ["", "Return at T s: each run's last evaluation at or before T, T the median wall-clock of the "
                  f"quickest method's completed runs ({'; '.join(clocks)})."]
    return lines
