"""Fitness shaping: pure functions with one signature, shared by every ES.

Each takes the internal fitness `f` (shape (n,), lower is better, +inf for failed evaluations) and
returns utilities `u` (shape (n,)) where a *larger* utility marks a *better* candidate, so an ES
gradient estimate is always `sum_i u_i * eps_i` (an ascent direction on utility).
"""
from __future__ import annotations

import numpy as np


def ranks(f: np.ndarray) -> np.ndarray:
    """0 for the best (lowest) value, n-1 for the worst; ties broken by position (stable)."""
    f = np.asarray(f, dtype=np.float64)
    r = np.empty(len(f), dtype=np.int64)
    r[np.argsort(f, kind="stable")] = np.arange(len(f))
    return r


def identity(f: np.ndarray) -> np.ndarray:
    """Negated fitness (failed evaluations get the worst finite value)."""
    return -_finite_worst(f)


def standardize(f: np.ndarray) -> np.ndarray:
    """Negated z-scores of the fitness."""
    u = -_finite_worst(f)
    std = u.std()
    return (u - u.mean()) / std if std > 0 else np.zeros_like(u)


def average_ranks(f: np.ndarray) -> np.ndarray:
    """Like `ranks`, but tied values share the mean of their ranks (a flat fitness gives equal ranks)."""
    f = np.asarray(f, dtype=np.float64)
    order = np.argsort(f, kind="stable")
    fs = f[order]
    # start index of each run of equal values, then the mean rank of that run
    starts = np.flatnonzero(np.r_[True, fs[1:] != fs[:-1]])
    ends = np.r_[starts[1:], len(f)]
    mean_rank = (starts + ends - 1) / 2.0
    r = np.empty(len(f))
    r[order] = np.repeat(mean_rank, ends - starts)
    return r


def centered_ranks(f: np.ndarray) -> np.ndarray:
    """Ranks mapped linearly to [-0.5, 0.5], best = +0.5 (OpenAI-ES); ties share their mean rank, so a
    flat fitness (common early in RL) gives zero utilities instead of a random walk driven by position."""
    n = len(f)
    if n < 2:
        return np.zeros(n)
    return 0.5 - average_ranks(f) / (n - 1)


def nes_utilities(f: np.ndarray) -> np.ndarray:
    """Wierstra et al.'s log-rank utilities, summing to zero (SNES/xNES)."""
    n = len(f)
    raw = np.maximum(0.0, np.log(n / 2 + 1) - np.log(np.arange(1, n + 1)))
    u_sorted = raw / raw.sum() - 1.0 / n
    return u_sorted[ranks(f)]


def cma_weights(f: np.ndarray) -> np.ndarray:
    """Positive log-weights on the best half, zero elsewhere, summing to one (CMA-ES recombination)."""
    n = len(f)
    mu = n // 2
    raw = np.log((n + 1) / 2) - np.log(np.arange(1, mu + 1))
    w = np.zeros(n)
    w[:mu] = raw / raw.sum()
    return w[ranks(f)]


SHAPERS = {
    "identity": identity,
    "standardize": standardize,
    "centered_ranks": centered_ranks,
    "nes": nes_utilities,
    "cma": cma_weights,
}


def _finite_worst(f: np.ndarray) -> np.ndarray:
    """Replace +inf/NaN by a value just worse than the worst finite one (so linear shapers stay finite)."""
    f = np.array(f, dtype=np.float64)
    bad = ~np.isfinite(f)
    if bad.any():
        good = f[~bad]
        worst = good.max() + (good.max() - good.min() + 1.0) if good.size else 0.0
        f[bad] = worst
    return f


finite_worst = _finite_worst
