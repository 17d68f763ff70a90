"""Fitness shaping functions and the compact candidate forms."""
import numpy as np
import pytest

from evograd.core import shaping
from evograd.core.candidates import Candidates, DenseCandidates, SeededCandidates, noise_from_seed


@pytest.mark.parametrize("name", list(shaping.SHAPERS))
def test_better_fitness_gets_larger_utility(name):
    f = np.array([3.0, -1.0, 2.0, 0.5, 10.0, np.inf])
    u = shaping.SHAPERS[name](f)
    order = np.argsort(f)
    assert np.all(np.diff(u[order]) <= 1e-12), name  # non-increasing as fitness gets worse
    assert np.all(np.isfinite(u))


def test_centered_ranks_range_and_ties():
    u = shaping.centered_ranks(np.array([5.0, 1.0, 3.0]))
    assert np.allclose(u, [-0.5, 0.5, 0.0])
    assert np.array_equal(shaping.centered_ranks(np.ones(6)), np.zeros(6))  # flat fitness: no preference


def test_nes_and_cma_weights_sum():
    f = np.random.default_rng(0).normal(size=20)
    assert abs(shaping.nes_utilities(f).sum()) < 1e-12
    w = shaping.cma_weights(f)
    assert abs(w.sum() - 1) < 1e-12 and np.count_nonzero(w) == 10


def test_finite_worst_keeps_order():
    out = shaping.finite_worst(np.array([1.0, np.nan, 3.0, np.inf]))
    assert np.all(np.isfinite(out)) and out[1] > 3 and out[3] > 3


def test_seeded_candidates_regenerate_rows_anywhere():
    rng = np.random.default_rng(0)
    center, sigma = rng.normal(size=7), np.abs(rng.normal(size=7))
    seeds = np.array([11, 22, 33])
    eps = np.stack([noise_from_seed(s, 7) for s in seeds])
    cached = SeededCandidates(center, sigma, seeds, [0, 0, 1, 1, 2], [1, -1, 1, -1, 0], noise_cache=eps)
    shipped = Candidates.from_state(cached.to_state())  # what a worker rebuilds from seeds alone
    X = cached.materialize()
    assert np.array_equal(X, shipped.materialize())
    assert np.array_equal(X[0], center + sigma * eps[0]) and np.array_equal(X[1], center - sigma * eps[0])
    assert np.array_equal(X[4], center)
    assert np.array_equal(shipped.take([3, 1]), X[[3, 1]])


def test_dense_round_trip():
    X = np.arange(6.0).reshape(3, 2)
    c = Candidates.from_state(DenseCandidates(X).to_state())
    assert np.array_equal(c.materialize(), X) and len(c) == 3 and c.dim == 2
