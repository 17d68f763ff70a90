"""Statistics for comparisons with few runs, after Agarwal et al. 2021, "Deep Reinforcement Learning at the Edge
of the Statistical Precipice" (the definitions of google-research/rliable), written in numpy alone.

Scores come per task: one task's runs as a 1-D array, or a list with one 1-D array per task (tasks may have
different numbers of runs). A 2-D array is read as rliable's (runs x tasks) matrix.

- `iqm`: the interquartile mean, the mean of the middle 50% of all runs of all tasks pooled: with n runs,
  int(n / 4) lowest and as many highest are dropped (scipy.stats.trim_mean(x, 0.25), rliable's aggregate_iqm).
- `mean`: the mean over tasks of each task's mean over its runs (rliable's aggregate_mean).
- `stratified_bootstrap_ci`: each bootstrap replication resamples the runs of every task with replacement,
  independently per task and keeping each task's number of runs, and computes the aggregate on them; the
  interval is the percentile interval of the replications (rliable's default method).
- `probability_of_improvement`: P(X > Y) on a task is the probability that a random run of X scores higher than
  a random run of Y, ties counting 1/2 (the Mann-Whitney U statistic over m n); averaged over tasks. Its
  interval resamples X's and Y's runs independently within each task.
- `performance_profile`: at each tau, the fraction of runs whose score is above tau, per task and averaged over
  tasks (rliable's score distribution, which pools the runs when every task has as many); bands from the
  stratified bootstrap at each tau.
- `normalize`: (score - random_score) / (threshold - random_score), so a random policy scores 0 and the threshold
  1. `censor_at_budget`: steps to a threshold, with the budget standing in for a run that never reached it.

Bootstraps are seeded (`seed`, default 0), so a report rebuilt from the same runs shows the same intervals.
`reps` defaults to 2000 replications (rliable uses 2000 for profiles, 50,000 for interval estimates): the 2.5% and
97.5% percentiles then rest on 50 replications in each tail, and an endpoint moves by a few percent of the
interval's width from one seed to another; pass more for a figure to print.
"""
from __future__ import annotations

from typing import Callable, NamedTuple, Sequence

import numpy as np

__all__ = ["Estimate", "Profile", "as_tasks", "bootstrap_replications", "censor_at_budget", "interval_estimate",
           "iqm", "mean", "normalize", "performance_profile", "probability_of_improvement",
           "stratified_bootstrap_ci"]

REPS = 2000
CONFIDENCE = 0.95
_PAIRS_AT_ONCE = 1 << 22

Aggregate = Callable[[list], np.ndarray]


class Estimate(NamedTuple):
    """A point estimate and its confidence interval [low, high]."""

    value: float
    low: float
    high: float


class Profile(NamedTuple):
    """A performance profile: at each tau, the fraction of runs scoring above it, and its band [low, high]."""

    taus: np.ndarray
    fraction: np.ndarray
    low: np.ndarray
    high: np.ndarray


def as_tasks(scores) -> list[np.ndarray]:
    """Scores as a list of per-task 1-D float arrays (see the module's docstring), each non-empty and finite."""
    if isinstance(scores, np.ndarray) and scores.ndim in (1, 2):
        tasks = [scores] if scores.ndim == 1 else [scores[:, j] for j in range(scores.shape[1])]  # rliable's
    elif isinstance(scores, (list, tuple)) and scores and all(np.ndim(v) == 0 for v in scores):
        tasks = [scores]  # one task's runs
    elif isinstance(scores, (list, tuple)):
        tasks = list(scores)
    else:
        raise ValueError(f"scores must be one task's runs (1-D), a list of per-task 1-D arrays or a (runs x tasks)"
                         f" array; got shape {np.shape(scores)}")
    out = [np.asarray(t, dtype=float) for t in tasks]
    if not out or any(t.ndim != 1 or t.size == 0 for t in out):
        raise ValueError("every task needs a 1-D array of at least one run's score")
    if not all(np.all(np.isfinite(t)) for t in out):
        raise ValueError("scores must be finite (leave out runs without a score before calling)")
    return out


# Aggregates take per-task arrays whose LAST axis holds the runs and may have leading axes (the bootstrap's
# replications); they return one value per leading index.
def iqm(scores) -> np.ndarray | float:
    """Interquartile mean over all runs of all tasks pooled: int(n/4) lowest and highest of n runs dropped."""
    tasks = _batched(scores)
    pooled = np.sort(np.concatenate(tasks, axis=-1), axis=-1)
    n = pooled.shape[-1]
    cut = int(0.25 * n)
    return _scalar(pooled[..., cut:n - cut].mean(axis=-1))


def mean(scores) -> np.ndarray | float:
    """The mean over tasks of each task's mean score."""
    return _scalar(np.mean([t.mean(axis=-1) for t in _batched(scores)], axis=0))


def _batched(scores) -> list[np.ndarray]:
    """Per-task arrays, runs on the last axis; a plain score collection goes through as_tasks."""
    if isinstance(scores, list) and scores and all(isinstance(t, np.ndarray) and t.ndim >= 2 for t in scores):
        return scores
    return as_tasks(scores)


def _scalar(a: np.ndarray) -> np.ndarray | float:
    return float(a) if np.ndim(a) == 0 else a


def _resample(tasks: list[np.ndarray], reps: int, rng: np.random.Generator) -> list[np.ndarray]:
    """(reps, runs) per task: each row the task's runs drawn with replacement."""
    return [t[rng.integers(0, t.size, size=(reps, t.size))] for t in tasks]


def _check(reps: int, confidence: float) -> None:
    if isinstance(reps, bool) or not isinstance(reps, (int, np.integer)) or reps < 1:
        raise ValueError(f"reps must be an int >= 1, got {reps!r}")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence!r}")


def _percentiles(replications: np.ndarray, confidence: float) -> tuple[np.ndarray, np.ndarray]:
    tail = 100 * (1 - confidence) / 2
    low, high = np.percentile(replications, [tail, 100 - tail], axis=0)
    return low, high


def bootstrap_replications(scores, aggregate: Aggregate = iqm, *, reps: int = REPS, seed: int | None = 0,
                           vectorized: bool = True) -> np.ndarray:
    """The aggregate on `reps` stratified resamples of the runs (first axis: replications).

    aggregate: a function of per-task arrays (see iqm); vectorized=False calls it once per replication with
    1-D per-task arrays, for a function that cannot take the replications axis."""
    _check(reps, CONFIDENCE)
    tasks = as_tasks(scores)
    resampled = _resample(tasks, reps, np.random.default_rng(seed))
    if vectorized:
        return np.asarray(aggregate(resampled), dtype=float)
    return np.array([aggregate([t[i] for t in resampled]) for i in range(reps)], dtype=float)


def stratified_bootstrap_ci(scores, aggregate: Aggregate = iqm, *, reps: int = REPS,
                            confidence: float = CONFIDENCE, seed: int | None = 0,
                            vectorized: bool = True) -> tuple[float, float]:
    """(low, high): the percentile interval of the aggregate over stratified bootstrap resamples."""
    _check(reps, confidence)
    low, high = _percentiles(bootstrap_replications(scores, aggregate, reps=reps, seed=seed,
                                                    vectorized=vectorized), confidence)
    return float(low), float(high)


def interval_estimate(scores, aggregate: Aggregate = iqm, *, reps: int = REPS, confidence: float = CONFIDENCE,
                      seed: int | None = 0) -> Estimate:
    """The aggregate of the scores and its stratified-bootstrap interval."""
    value = aggregate(as_tasks(scores))
    return Estimate(float(value), *stratified_bootstrap_ci(scores, aggregate, reps=reps, confidence=confidence,
                                                          seed=seed))


def _improvement(xs: list[np.ndarray], ys: list[np.ndarray]) -> np.ndarray | float:
    """P(X > Y) per task (ties 1/2), averaged over tasks; runs on the last axis, leading axes kept."""
    per_task = []
    for x, y in zip(xs, ys):
        flat_x, flat_y = x.reshape(-1, x.shape[-1]), y.reshape(-1, y.shape[-1])
        chunk = max(1, _PAIRS_AT_ONCE // (x.shape[-1] * y.shape[-1]))  # bounds the (rows, m, n) comparison
        wins = [(1 + np.sign(a[:, :, None] - b[:, None, :]).mean(axis=(1, 2))) / 2
                for a, b in ((flat_x[i:i + chunk], flat_y[i:i + chunk]) for i in range(0, len(flat_x), chunk))]
        per_task.append(np.concatenate(wins).reshape(x.shape[:-1]))
    return _scalar(np.mean(per_task, axis=0))


def probability_of_improvement(x, y, *, reps: int = REPS, confidence: float = CONFIDENCE,
                               seed: int | None = 0) -> Estimate:
    """P(X > Y): how likely a run of X beats a run of Y on a task (ties 1/2), averaged over tasks, with a
    stratified-bootstrap interval (X's and Y's runs resampled independently within each task). x and y are
    scores of the same tasks, in the same order; P(X > Y) + P(Y > X) = 1."""
    _check(reps, confidence)
    xs, ys = as_tasks(x), as_tasks(y)
    if len(xs) != len(ys):
        raise ValueError(f"x and y must have the same tasks, got {len(xs)} and {len(ys)}")
    rng = np.random.default_rng(seed)
    reps_x = _resample(xs, reps, rng)
    low, high = _percentiles(_improvement(reps_x, _resample(ys, reps, rng)), confidence)
    return Estimate(float(_improvement(xs, ys)), float(low), float(high))


def _fraction_above(tasks: list[np.ndarray], taus: np.ndarray) -> np.ndarray:
    """Per tau (last axis), the fraction of each task's runs above it, averaged over tasks."""
    return np.mean([(t[..., None, :] > taus[:, None]).mean(axis=-1) for t in tasks], axis=0)


def performance_profile(scores, taus, *, reps: int = REPS, confidence: float = CONFIDENCE,
                        seed: int | None = 0) -> Profile:
    """The fraction of runs with a (normalized) score above each tau, with stratified-bootstrap bands. The
    profile and both band edges are non-increasing in tau."""
    _check(reps, confidence)
    tasks = as_tasks(scores)
    taus = np.asarray(taus, dtype=float)
    if taus.ndim != 1 or taus.size == 0 or not np.all(np.isfinite(taus)):
        raise ValueError(f"taus must be a non-empty 1-D array of finite values, got shape {taus.shape}")
    reps_scores = _resample(tasks, reps, np.random.default_rng(seed))
    low, high = _percentiles(_fraction_above(reps_scores, taus), confidence)
    return Profile(taus, _fraction_above(tasks, taus), low, high)


def normalize(score, random_score: float, threshold: float):
    """(score - random_score) / (threshold - random_score): 0 for a random policy's score, 1 at the threshold."""
    if not (np.isfinite(random_score) and np.isfinite(threshold)) or threshold == random_score:
        raise ValueError(f"normalize needs finite, distinct random_score and threshold; got {random_score!r} and "
                         f"{threshold!r}")
    out = (np.asarray(score, dtype=float) - random_score) / (threshold - random_score)
    return _scalar(out)


def censor_at_budget(steps: Sequence[float | None], budget) -> tuple[np.ndarray, int]:
    """Steps to a threshold with runs that never reached it (None or NaN) counted as `budget` (one number,
    or one per run): (the steps, how many were censored). With censored runs, an aggregate of these steps is a
    lower bound on what the runs would have needed."""
    values = np.array([np.nan if s is None else s for s in steps], dtype=float)
    budget = np.broadcast_to(np.asarray(budget, dtype=float), values.shape)
    never = np.isnan(values)
    if not np.all(np.isfinite(budget[never])):
        raise ValueError("censor_at_budget needs a finite budget for every run that never reached the threshold")
    values[never] = budget[never]
    return values, int(never.sum())
