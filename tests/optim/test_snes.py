"""SNES: convergence, the update rule itself, sigma adaptation, reproducibility, errors."""

import copy
import math
import warnings

import numpy as np
import pytest

import evograd
from evograd import SeededCandidates, functions
from evograd.core.candidates import Candidates
from evograd.core.shaping import nes_utilities
from evograd.optim.base import NonFiniteWarning
from evograd.optim.snes import SNES


def run(opt, f, gens):
    for _ in range(gens):
        X = opt.ask()
        opt.tell(f(X))
    return opt


@pytest.mark.parametrize("seed", [0, 1])
def test_converges_on_sphere(seed):
    opt = run(evograd.make("snes", x0=2 * np.ones(10), seed=seed), functions.sphere, 300)
    assert opt.best.value < 1e-8  # seeds 0-29 end at 1e-14..4e-13


def test_converges_on_rosenbrock_in_most_runs():
    # From f(x0) = 3609, 2000 generations end at 0-9 in most runs (often near the local minimum at ~4),
    # but about 1 run in 35 stalls at 58-77 (seeds 0-39, and 2 of ~64 other random streams): one seed
    # that must reach 36.09 was a coin. At least 4 of 6 seeds must (3 stalls at a 3% rate: 5e-4); an SNES
    # that stops adapting misses in all.
    x0 = 2 * np.ones(10)
    vals = [run(evograd.make("snes", x0=x0, seed=s), functions.rosenbrock, 2000).best.value for s in range(6)]
    assert sum(v < 360.9 / 10 for v in vals) >= 4, vals


def test_defaults_follow_the_paper():
    for d in (1, 10, 1000):
        opt = SNES(x0=np.zeros(d))
        assert opt.popsize == 4 + math.floor(3 * math.log(d))
        assert opt.lr_sigma == pytest.approx((3 + math.log(d)) / (5 * math.sqrt(d)))
        assert opt.lr == 1.0 and opt.shaping == "nes" and not opt.antithetic
        np.testing.assert_array_equal(opt.sigma, np.ones(d))
    assert SNES(x0=np.zeros(10), antithetic=True).popsize % 2 == 0
    assert SNES(x0=np.zeros(10), popsize=2).popsize == 2


def test_one_update_matches_the_formula():
    opt = SNES(
        x0=np.array([0.5, -1.0, 2.0]), sigma0=[0.3, 1.0, 2.0], popsize=6, lr=0.7, lr_sigma=0.2, seed=3
    )
    mu, sigma = opt.mu.copy(), opt.sigma.copy()
    cand = opt.ask_candidates()
    X = opt.ask()
    z = (X - mu) / sigma
    np.testing.assert_allclose(z, cand.noise(), atol=1e-12)
    f = functions.rosenbrock(X)
    u = nes_utilities(f)
    opt.tell(f)
    np.testing.assert_allclose(opt.mu, mu + 0.7 * sigma * (u @ z), rtol=1e-12)
    np.testing.assert_allclose(opt.sigma, sigma * np.exp(0.1 * (u @ (z**2 - 1))), rtol=1e-12)


def test_candidates_are_seeded_with_a_sigma_vector_and_rebuild_from_seeds():
    opt = SNES(x0=np.arange(4.0), sigma0=[1.0, 2.0, 3.0, 4.0], seed=0)
    cand = opt.ask_candidates()
    assert isinstance(cand, SeededCandidates) and cand.sigma.shape == (4,)
    shipped = Candidates.from_state(copy.deepcopy(cand.to_state()))  # no noise cache: regenerated from seeds
    np.testing.assert_array_equal(shipped.materialize(), opt.ask())
    np.testing.assert_array_equal(shipped.take([2, 0]), opt.ask()[[2, 0]])


def test_antithetic_pairs_mirror_and_converge():
    opt = SNES(x0=2 * np.ones(6), popsize=8, antithetic=True, seed=1)
    X = opt.ask()
    np.testing.assert_allclose(X[:4] - opt.mu, -(X[4:] - opt.mu), atol=1e-12)
    assert run(opt, functions.sphere, 300).best.value < 1e-8


def test_sigma_shrinks_near_the_optimum():
    opt = run(SNES(x0=np.zeros(5), sigma0=1.0, seed=0), functions.sphere, 60)
    assert opt.sigma.max() < 0.05


def test_sigma_adapts_per_coordinate_on_an_ill_scaled_function():
    scales = np.array([1.0, 1.0, 1.0, 100.0, 100.0, 100.0])
    opt = run(SNES(x0=np.ones(6), seed=0), lambda X: ((X * scales) ** 2).sum(-1), 150)
    log_s = np.log10(opt.sigma)
    # The natural gradient learns sigma_i ~ 1 / scale_i: a factor ~100 between the two groups.
    assert log_s[:3].min() - log_s[3:].max() > 1.0
    assert -2.5 < log_s[3:].mean() - log_s[:3].mean() < -1.5


def test_same_seed_same_run_other_seed_other_run():
    a = run(SNES(x0=np.ones(5), seed=7), functions.sphere, 5)
    b = run(SNES(x0=np.ones(5), seed=7), functions.sphere, 5)
    c = run(SNES(x0=np.ones(5), seed=8), functions.sphere, 5)
    np.testing.assert_array_equal(a.ask(), b.ask())
    assert not np.array_equal(a.ask(), c.ask())


@pytest.mark.parametrize("antithetic", [False, True])
@pytest.mark.parametrize("mid_generation", [False, True])
def test_state_round_trip_is_bit_exact(antithetic, mid_generation):
    kw = {"x0": np.linspace(-1, 1, 7), "antithetic": antithetic, "seed": 5}
    a = run(SNES(**kw), functions.rastrigin, 4)
    if mid_generation:
        a.ask()  # the pending population travels as seeds; tell must regenerate the same noise
    b = SNES(**kw)
    b.load_state_dict(copy.deepcopy(a.state_dict()))
    for _ in range(3):
        Xa, Xb = a.ask(), b.ask()
        np.testing.assert_array_equal(Xa, Xb)
        a.tell(functions.rastrigin(Xa))
        b.tell(functions.rastrigin(Xb))
    np.testing.assert_array_equal(a.mu, b.mu)
    np.testing.assert_array_equal(a.sigma, b.sigma)
    assert a.best.value == b.best.value


def test_maximize():
    opt = run(SNES(x0=2 * np.ones(4), maximize=True, seed=0), lambda X: -functions.sphere(X), 200)
    assert -1e-8 < opt.best.value <= 0
    assert np.abs(opt.mu).max() < 1e-3


def test_nan_values_never_crash_nor_win():
    def f(X):
        v = functions.sphere(X)
        v[X[:, 0] > 0] = np.nan
        return v

    opt = SNES(x0=np.ones(3), seed=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NonFiniteWarning)
        run(opt, f, 100)
        assert np.isfinite(opt.best.value) and opt.best.x[0] <= 0
        assert opt.nonfinite > 0 and np.all(np.isfinite(opt.mu)) and np.all(opt.sigma > 0)
        mu, sigma = opt.mu.copy(), opt.sigma.copy()
        opt.ask()
        opt.tell(np.full(opt.popsize, np.nan))  # nothing to learn from: the distribution stays put
    np.testing.assert_array_equal(opt.mu, mu)
    np.testing.assert_array_equal(opt.sigma, sigma)


@pytest.mark.parametrize(
    "kwargs, name",
    [
        ({"sigma0": 0.0}, "sigma0"),
        ({"sigma0": -1.0}, "sigma0"),
        ({"sigma0": [1.0, 2.0]}, "sigma0"),
        ({"sigma0": [1.0, 0.0, 1.0]}, "sigma0"),
        ({"popsize": 1}, "popsize"),
        ({"popsize": 2.5}, "popsize"),
        ({"popsize": 5, "antithetic": True}, "popsize"),
        ({"lr": 0.0}, "lr"),
        ({"lr_sigma": -0.1}, "lr_sigma"),
        ({"shaping": "ranks!"}, "shaping"),
        ({"antithetic": "yes"}, "antithetic"),
    ],
)
def test_invalid_parameters_name_the_parameter(kwargs, name):
    with pytest.raises(evograd.ParameterError, match=f"'{name}' parameter of SNES"):
        SNES(x0=np.zeros(3), **kwargs)


def test_lr_center_is_deprecated_for_lr_and_means_the_same():
    kw = {"x0": np.full(4, 1.5), "popsize": 8, "seed": 6}
    with pytest.deprecated_call(match="'lr_center' parameter of SNES.*now called 'lr'"):
        old = evograd.make("snes", lr_center=0.6, **kw)
    new = evograd.make("snes", lr=0.6, **kw)
    for _ in range(6):
        Xa, Xb = old.ask(), new.ask()
        np.testing.assert_array_equal(Xa, Xb)
        old.tell(functions.rosenbrock(Xa))
        new.tell(functions.rosenbrock(Xb))
    np.testing.assert_array_equal(old.mu, new.mu)
    np.testing.assert_array_equal(old.sigma, new.sigma)
    with pytest.deprecated_call(match="'lr_center' attribute of SNES"):
        assert old.lr_center == 0.6
