"""The Statistics section of a comparison report (summary.md, summary.csv, performance_profile.png), from the
runs' figures, with evograd.experiments.stats (Agarwal et al. 2021, "Deep RL at the Edge of the Statistical
Precipice").

Per method: IQM and mean of the final return (function tasks: best value) of the completed runs, and of the
env steps (evaluations) to the threshold, each with a 95% stratified-bootstrap interval, and the IQM of the wall
seconds to it (a run that missed counts as never: ∞); env tasks also get each method's return at equal budgets
(report_matched.py: at the smaller methods' env steps and at the quickest method's wall-clock); the probability
of improvement of every pair of methods; a performance profile of normalized final returns.

Steps to threshold are censored: a completed run that never reached the threshold counts as the budget it
spent (its method's budget.env_steps or budget.evals, or the run's own env steps or evaluations at its end where
more: a generation's rollouts may run past the budget, and a run that reached the threshold there counts its
own figure), and the report says how many runs were censored. A failed or killed job that had not reached the
threshold is left out: when it would have is unknown.

Normalized score = (final return - R) / (threshold - R): the threshold is 1 and R is 0. R is the config's
`evaluation.random_score` when given, else the mean evaluation return of the untrained policies of all runs of
all methods (each run's evaluation at env step 0, which every env run records before training). That is the
policy each method starts from, not necessarily a uniformly random one (a zero-initialized linear policy
acts deterministically), and the report says which R it used. Function tasks have no such reference: no
normalized scores and no profile.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from . import stats
from .budgets import method_budget
from .numfmt import fmt_number
from .records import RunRecord, num
from .report_matched import equal_budget_lines

__all__ = ["PROFILE_PNG", "STATS_COLUMNS", "fmt_number", "initial_return", "normalized_finals", "profiles",
           "random_score", "run_samples", "stats_section"]

# summary.csv's columns of the Statistics section: IQM and mean with 95% stratified-bootstrap intervals
STATS_COLUMNS = {
    kind: [f"{v}_iqm", f"{v}_iqm_low", f"{v}_iqm_high", f"{v}_mean_low", f"{v}_mean_high", f"{s}_iqm", f"{s}_iqm_low",
           f"{s}_iqm_high", f"{s}_mean", f"{s}_mean_low", f"{s}_mean_high", "seconds_to_threshold_iqm",
           "seconds_to_threshold_iqm_low", "seconds_to_threshold_iqm_high", "censored_runs"]
    for kind, v, s in (("env", "final_return", "steps_to_threshold"), ("function", "best_value", "evals_to_threshold"))}
PROFILE_PNG = "performance_profile.png"


def run_samples(runs: list[RunRecord], seed_stats: list[dict], kind: str, threshold: bool,
                cap: float | None) -> dict[str, Any]:
    """What the Statistics section aggregates: `_final` (final return, or best value, of each completed run),
    `_steps` (steps to threshold of the runs that reached it, and of the completed runs that never did, counted
    as the budget they spent: `cap`, or their own env steps or evaluations at their end where more, as when the
    last generation ran past the budget, or without a `cap`: `censored_runs`) and `_initial` (each run's
    evaluation at env step 0); and their IQM and mean with 95% stratified-bootstrap intervals."""
    spent = "env_steps" if kind == "env" else "evals"
    final = [r.value("final_eval_return") if kind == "env" else s["best"]
             for r, s in zip(runs, seed_stats) if r.status == "ok"]
    steps, budgets, left_out = [], [], 0
    for r, s in zip(runs, seed_stats) if threshold else ():
        known = [b for b in (num(cap), r.value(spent)) if np.isfinite(b)]
        budget = max(known) if known else np.nan
        if s["reached"] and np.isfinite(s["steps"]):
            steps.append(s["steps"])
            budgets.append(np.nan)
        elif not s["reached"] and r.status == "ok" and np.isfinite(budget):
            steps.append(None)
            budgets.append(budget)
        else:  # failed or killed before reaching it (when it would have is unknown), or its figure was lost
            left_out += 1
    steps, censored = stats.censor_at_budget(steps, budgets)
    seconds = _seconds_sample(runs, seed_stats) if threshold else []
    out = {"_final": [v for v in final if np.isfinite(v)], "_steps": steps.tolist(), "_steps_left_out": left_out,
           "censored_runs": censored if threshold else None, "_seconds": seconds,
           "_initial": [v for v in map(initial_return, runs) if np.isfinite(v)] if kind == "env" else []}
    keys = ("final_return", "steps_to_threshold") if kind == "env" else ("best_value", "evals_to_threshold")
    for key, sample in zip((*keys, "seconds_to_threshold"), (out["_final"], out["_steps"], out["_seconds"])):
        for name, agg in (("iqm", stats.iqm), ("mean", stats.mean)) if sample else ():
            est = stats.interval_estimate(sample, agg)  # one run: its value, and no interval to speak of
            out.update({f"{key}_{name}": est.value, f"{key}_{name}_low": est.low if len(sample) > 1 else None,
                        f"{key}_{name}_high": est.high if len(sample) > 1 else None})
    _infinite_if_never(out, "seconds_to_threshold")
    return out


NEVER = 1e300  # a run that never reached the threshold, in the seconds sample: "never", shown as ∞
_NEVER_FROM = 1e200  # an aggregate at or above this involved a NEVER: it is ∞


def _seconds_sample(runs: list[RunRecord], seed_stats: list[dict]) -> list[float]:
    """Wall seconds to the threshold; a completed run that never reached it counts as never (NEVER: its own end
    would make a method that stops early look quick), a failed or killed one that had not is left out."""
    out = []
    for r, s in zip(runs, seed_stats):
        if s["reached"]:
            value = s["seconds"]
        elif r.status == "ok":
            value = NEVER
        else:
            continue
        if np.isfinite(value):
            out.append(float(value))
    return out


def _infinite_if_never(out: dict, key: str) -> None:
    """An IQM, mean or interval end of the seconds sample that a NEVER entered is ∞ (inf in summary.csv)."""
    for k in [k for k in out if k.startswith(key) and isinstance(out[k], float) and out[k] >= _NEVER_FROM]:
        out[k] = float("inf")


def initial_return(r: RunRecord) -> float:
    """The evaluation of a run's untrained policy (its row at env step 0), NaN without one."""
    x, y = r.column("env_steps"), r.column("eval_return")
    n = min(len(x), len(y))
    hit = np.flatnonzero((x[:n] == 0) & np.isfinite(y[:n]))
    return float(y[hit[0]]) if hit.size else float("nan")


def random_score(rows: list[dict], cfg: dict) -> tuple[float | None, str]:
    """The score a normalized score puts at 0, and where it comes from: the config's evaluation.random_score, or
    else the mean evaluation return of the runs' untrained policies (each run's evaluation at env step 0)."""
    given = (cfg.get("evaluation") or {}).get("random_score")
    if given is not None:
        return float(given), f"{fmt_number(float(given))}, the config's evaluation.random_score"
    initial = [v for r in rows for v in r.get("_initial", [])]
    if not initial:
        return None, "no run has an evaluation at env step 0 to stand for a random policy"
    value = float(np.mean(initial))
    return value, (f"{fmt_number(value)}, the mean evaluation return of the untrained policies (each run's "
                   f"evaluation at env step 0, {len(initial)} runs; evaluation.random_score sets another)")


def normalized_finals(rows: list[dict], cfg: dict, threshold: float | None) -> tuple[dict | None, str]:
    """Each method's final returns on the normalized scale (random policy 0, threshold 1), and the convention
    in words; None and the reason when there is no such scale (function tasks, no threshold)."""
    if any("best_value_median" in r for r in rows):
        return None, "none for function tasks (no random-policy score to normalize by)"
    if threshold is None:
        return None, "none without a threshold (it is the normalized score 1)"
    r0, source = random_score(rows, cfg)
    if r0 is None or threshold <= r0:
        return None, f"none: {source}" if r0 is None else f"none: the threshold is not above R = {source}"
    norm = {r["method"]: stats.normalize(r["_final"], r0, threshold) for r in rows if r.get("_final")}
    return norm, (f"normalized score = (final return − R) / (threshold − R): 0 is R = {source}; 1 is the "
                  f"threshold {threshold:g}")


def profiles(normalized: dict[str, Any]) -> dict[str, stats.Profile]:
    """Performance profiles of normalized scores on one tau grid covering 0, 1 and every score."""
    pooled = np.concatenate([np.atleast_1d(v) for v in normalized.values()])
    lo, hi = min(0.0, pooled.min()), max(1.0, pooled.max())
    taus = np.linspace(lo - 0.05 * (hi - lo), hi + 0.05 * (hi - lo), 201)
    return {label: stats.performance_profile(np.atleast_1d(v), taus) for label, v in normalized.items()}


def _ci(value: float | None, low: float | None, high: float | None) -> str:
    if value is None or low is None:
        return "—" if value is None else f"{fmt_number(value)} (1 run)"
    return f"{fmt_number(value)} [{fmt_number(low)}, {fmt_number(high)}]"


def _stats_table(rows: list[dict], function: bool, threshold: bool) -> list[str]:
    v, s = ("best_value", "evals_to_threshold") if function else ("final_return", "steps_to_threshold")
    what, to = ("best value", "evals to threshold") if function else ("final return", "env steps to threshold")
    head = ["method", "runs", f"{what} IQM [95% CI]", f"{what} mean [95% CI]"]
    head += [f"{to} IQM [95% CI]", f"{to} mean [95% CI]", "seconds to threshold IQM [95% CI]",
             "censored at budget"] if threshold else []
    lines = ["| " + " | ".join(head) + " |", "|---" + "|---:" * (len(head) - 1) + "|"]
    for r in rows:
        cells = [r["method"].replace("|", "\\|"), str(len(r.get("_final", [])))]
        cells += [_ci(*(r.get(f"{v}_{k}") for k in (a, f"{a}_low", f"{a}_high"))) for a in ("iqm", "mean")]
        if threshold:
            cells += [_ci(*(r.get(f"{s}_{k}") for k in (a, f"{a}_low", f"{a}_high"))) for a in ("iqm", "mean")]
            cells.append(_ci(*(r.get(f"seconds_to_threshold_{k}") for k in ("iqm", "iqm_low", "iqm_high"))))
            left = f", {r['_steps_left_out']} left out" if r.get("_steps_left_out") else ""
            cells.append(f"{r.get('censored_runs') or 0} of {len(r.get('_steps', []))}{left}")
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def _improvement_table(rows: list[dict], function: bool) -> list[str]:
    done = [r for r in rows if r.get("_final")]
    if len(done) < 2:
        return ["Needs two methods with completed runs."]
    sign = -1.0 if function else 1.0  # function values are minimized: X improves on Y with a lower value
    lines = ["| X | Y | P(X > Y) [95% CI] |", "|---|---|---:|"]
    for i, x in enumerate(done):
        for y in done[i + 1:]:
            est = stats.probability_of_improvement(sign * np.asarray(x["_final"]), sign * np.asarray(y["_final"]))
            names = (m.replace("|", "\\|") for m in (x["method"], y["method"]))
            lines.append("| {} | {} | ".format(*names) + f"{_ci(*est)} |")
    return lines


def stats_section(rows: list[dict], cfg: dict, threshold: float | None, function: bool, out_dir: Path) -> list[str]:
    """summary.md's "Statistics" section (the performance profile linked when report() drew it)."""
    what, unit = ("best value", "evaluations") if function else ("final return", "env steps")
    lines = ["", "## Statistics", "",
             f"95% stratified-bootstrap intervals (percentile method, {stats.REPS:,} resamples of each method's "
             "runs, seed 0; Agarwal et al. 2021, as in rliable). IQM: interquartile mean, the mean of the middle 50% "
             f"of runs (a quarter dropped at each end; with fewer than 4 runs, the mean). The {what} of completed "
             "runs.", "", *_stats_table(rows, function, threshold is not None)]
    if threshold is not None:
        caps = {method_budget(cfg, r["method"]).get("evals" if function else "env_steps") for r in rows}
        cap = caps.pop() if len(caps) == 1 else "differs"
        if cap is None:
            cap_text = f"its own {unit} at its end"
        else:
            budget = "its method's budget" if cap == "differs" else f"{fmt_number(cap)} {unit}"
            cap_text = f"{budget}, or the {unit} it ran to where its last generation went past that"
        lines += ["", f"To threshold: {unit} at the first evaluation that reached the threshold. A completed run "
                  f"that never reached it counts as the budget ({cap_text}): censored, so with censored runs IQM "
                  "and mean are lower bounds. A failed or killed job that had not reached it is left out. Seconds "
                  "to threshold: wall seconds (evaluations included) at that evaluation; a completed run that never "
                  "reached it counts as never (∞, not its own end, which would make a method that stops early look "
                  "quick), so the IQM is ∞ once more than a quarter of a method's runs missed."]
    if not function:
        matched = equal_budget_lines(rows, cfg)
        lines += ["", *matched] if matched else []
    better = "a lower best value" if function else "a higher final return"
    lines += ["", "### Probability of improvement", "",
              f"P(X > Y): the probability that a run of X ends with {better} than a run of Y (ties count 1/2: the "
              "Mann-Whitney U statistic over m n), with its 95% interval; P(Y > X) = 1 − P(X > Y).", "",
              *_improvement_table(rows, function)]
    norm, convention = normalized_finals(rows, cfg, threshold)
    lines += ["", "### Performance profile", "", convention[0].upper() + convention[1:] + "."]
    if norm and (out_dir / PROFILE_PNG).exists():
        lines += ["The profile: the fraction of each method's runs whose normalized final return is above τ, with "
                  "95% stratified-bootstrap bands.", "", f"![performance_profile]({PROFILE_PNG})"]
    return lines
