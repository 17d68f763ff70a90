"""Deep GA: convergence, elitism, truncation, crossover, reproducibility, errors.

Behaviour tests run with both encodings; seed lists themselves are tested in test_lineage.py."""

import copy
import warnings

import numpy as np
import pytest

import evograd
from evograd import functions
from evograd.optim.base import NonFiniteWarning
from evograd.optim.ga import GA


def run(opt, f, gens):
    for _ in range(gens):
        X = opt.ask()
        opt.tell(f(X))
    return opt


def nearest_row(points, rows):
    """Index of the row of `rows` closest to each point, and the distance to it."""
    d = np.linalg.norm(points[:, None, :] - rows[None, :, :], axis=-1)
    return d.argmin(1), d.min(1)


ENCODINGS = pytest.mark.parametrize("encoding", ["seeds", "dense"])


@ENCODINGS
@pytest.mark.parametrize("seed", [0, 1])
def test_converges_on_sphere_and_rosenbrock(seed, encoding):
    x0 = 2 * np.ones(10)
    kw = {"x0": x0, "seed": seed, "encoding": encoding}
    assert run(evograd.make("ga", **kw), functions.sphere, 200).best.value < 4.0 / 10
    assert run(evograd.make("ga", **kw), functions.rosenbrock, 200).best.value < 360.9 / 10


def test_defaults():
    opt = GA(x0=np.zeros(3))
    assert (opt.popsize, opt.truncation, opt.elitism, opt.sigma0, opt.crossover) == (64, 12, 1, 0.1, None)
    assert (opt.encoding, opt.noise) == ("seeds", "rng")
    assert GA(x0=np.zeros(3), popsize=2).truncation == 2


@ENCODINGS
def test_initial_population_from_a_center(encoding):
    x0 = np.arange(5.0)
    X = GA(x0=x0, popsize=400, sigma0=0.5, seed=0, encoding=encoding).ask()
    assert X.shape == (400, 5)
    np.testing.assert_array_equal(X[0], x0)
    assert np.std(X[1:] - x0) == pytest.approx(0.5, rel=0.05)
    assert np.abs(np.mean(X[1:] - x0)) < 0.05


@ENCODINGS
def test_initial_population_given_explicitly(encoding):
    P = np.arange(12.0).reshape(4, 3)
    opt = GA(x0=P, seed=0, encoding=encoding)
    assert opt.popsize == 4
    np.testing.assert_array_equal(opt.ask(), P)
    with pytest.raises(evograd.ParameterError, match="'popsize' parameter of GA"):
        GA(x0=P, popsize=5)


@ENCODINGS
def test_elitism_keeps_the_best_and_carries_it_unchanged(encoding):
    opt = GA(x0=np.zeros(5), popsize=10, sigma0=1.0, elitism=1, seed=0, encoding=encoding)
    prev_min = np.inf
    for _ in range(30):
        X = opt.ask()
        v = functions.sphere(X)
        assert v.min() <= prev_min
        prev_min = v.min()
        best_row = X[np.argmin(v)].copy()
        opt.tell(v)
        np.testing.assert_array_equal(opt.ask()[0], best_row)


def test_without_elitism_the_population_best_can_get_worse():
    # Same setting as above: with a large mutation and no elite, some generation loses the best point.
    opt = GA(x0=np.zeros(5), popsize=10, sigma0=1.0, elitism=0, seed=0)
    mins = [functions.sphere(opt.ask()).min()]
    for _ in range(30):
        X = opt.ask()
        v = functions.sphere(X)
        opt.tell(v)
        mins.append(v.min())
    assert np.any(np.diff(mins[1:]) > 0)


@ENCODINGS
def test_several_elites_in_rank_order(encoding):
    P = np.arange(8.0)[:, None] * np.ones((8, 3))
    opt = GA(x0=P, elitism=3, truncation=4, seed=0, encoding=encoding)
    opt.ask()
    values = np.array([5.0, 3.0, 7.0, 1.0, 0.0, 6.0, 4.0, 2.0])
    opt.tell(values)
    np.testing.assert_array_equal(opt.ask()[:3], P[[4, 3, 7]])


@ENCODINGS
@pytest.mark.parametrize("maximize", [False, True])
def test_truncation_only_top_t_become_parents(maximize, encoding):
    rng = np.random.default_rng(0)
    n, T = 64, 3
    P = rng.normal(size=(n, 4)) * 10
    values = rng.permutation(n).astype(float)
    opt = GA(x0=P, truncation=T, elitism=0, sigma0=1e-9, maximize=maximize, seed=1, encoding=encoding)
    opt.ask()
    opt.tell(values)
    order = np.argsort(-values if maximize else values)
    np.testing.assert_array_equal(opt.parents, P[order[:T]])
    idx, dist = nearest_row(opt.ask(), P)
    assert dist.max() < 1e-6
    assert set(idx) == set(order[:T])  # every parent used, nothing outside the top T


def test_uniform_crossover_mixes_coordinates_of_two_parents():
    dim = 40
    P = np.vstack([np.zeros(dim), np.ones(dim), 5 * np.ones((6, dim))])
    values = np.array([0.0, 1.0, 9, 9, 9, 9, 9, 9])
    opt = GA(x0=P, truncation=2, elitism=0, sigma0=1e-9, crossover="uniform", crossover_rate=1.0, seed=0)
    opt.ask()
    opt.tell(values)
    X = opt.ask()
    near0, near1 = np.abs(X) < 1e-6, np.abs(X - 1) < 1e-6
    assert np.all(near0 | near1)  # every coordinate comes from one of the two parents
    mixed = near0.any(1) & near1.any(1)
    assert mixed.all()  # two distinct parents, 40 coordinates: an unmixed child has probability 2**-39
    # Without crossover every child is a copy (plus tiny noise) of a single parent.
    plain = GA(x0=P, truncation=2, elitism=0, sigma0=1e-9, seed=0)
    plain.ask()
    plain.tell(values)
    X = plain.ask()
    assert np.all((np.abs(X) < 1e-6).all(1) | (np.abs(X - 1) < 1e-6).all(1))


def test_crossover_converges():
    opt = GA(x0=2 * np.ones(10), crossover="uniform", seed=0)
    assert run(opt, functions.sphere, 200).best.value < 0.4


@pytest.mark.parametrize("kw", [{"crossover": "uniform"}, {}, {"noise": "table"}])
def test_same_seed_same_run_other_seed_other_run(kw):
    a = run(GA(x0=np.ones(5), seed=7, **kw), functions.sphere, 5)
    b = run(GA(x0=np.ones(5), seed=7, **kw), functions.sphere, 5)
    c = run(GA(x0=np.ones(5), seed=8, **kw), functions.sphere, 5)
    np.testing.assert_array_equal(a.ask(), b.ask())
    assert not np.array_equal(a.ask(), c.ask())


@pytest.mark.parametrize("gens", [0, 4])
@pytest.mark.parametrize("mid_generation", [False, True])
def test_state_round_trip_is_bit_exact(gens, mid_generation):
    kw = {"x0": np.linspace(-1, 1, 6), "popsize": 12, "crossover": "uniform", "elitism": 2, "seed": 3}
    a = run(GA(**kw), functions.rastrigin, gens)
    if mid_generation:
        a.ask()
    b = GA(**kw)
    b.load_state_dict(copy.deepcopy(a.state_dict()))
    for _ in range(3):
        Xa, Xb = a.ask(), b.ask()
        np.testing.assert_array_equal(Xa, Xb)
        a.tell(functions.rastrigin(Xa))
        b.tell(functions.rastrigin(Xb))
    assert a.best.value == b.best.value


def test_maximize():
    opt = run(GA(x0=2 * np.ones(4), maximize=True, seed=0), lambda X: -functions.sphere(X), 200)
    assert -0.05 < opt.best.value <= 0


@ENCODINGS
def test_nan_values_never_crash_nor_win_nor_breed(encoding):
    P = np.arange(10.0)[:, None] * np.ones((10, 2))
    opt = GA(x0=P, truncation=3, elitism=1, sigma0=1e-9, seed=0, encoding=encoding)
    opt.ask()
    values = np.array([np.nan, np.nan, 5.0, np.inf, 4.0, np.nan, 3.0, 9.0, np.nan, 8.0])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NonFiniteWarning)
        opt.tell(values)
        assert opt.best.value == 3.0
        np.testing.assert_array_equal(opt.parents, P[[6, 4, 2]])
        opt.ask()
        opt.tell(np.full(10, np.nan))  # a fully failed generation is survivable
        assert opt.best.value == 3.0
        assert opt.ask().shape == (10, 2)


@pytest.mark.parametrize(
    "kwargs, name",
    [
        ({"sigma0": 0.0}, "sigma0"),
        ({"sigma0": -0.1}, "sigma0"),
        ({"popsize": 1}, "popsize"),
        ({"popsize": 10, "truncation": 11}, "truncation"),
        ({"truncation": 0}, "truncation"),
        ({"popsize": 10, "elitism": 10}, "elitism"),
        ({"elitism": -1}, "elitism"),
        ({"crossover": "one_point"}, "crossover"),
        ({"crossover": "uniform", "crossover_rate": 1.5}, "crossover_rate"),
        ({"crossover": "uniform", "encoding": "seeds"}, "encoding"),
        ({"encoding": "bits"}, "encoding"),
        ({"noise": "gpu"}, "noise"),
    ],
)
def test_invalid_parameters_name_the_parameter(kwargs, name):
    with pytest.raises(evograd.ParameterError, match=f"'{name}' parameter of GA"):
        GA(x0=np.zeros(3), **kwargs)
