"""OpenAI-ES: convergence, mirrored sampling, the gradient estimate, weight decay, state round trips."""
import warnings

import numpy as np
import pytest

import evograd
from evograd.core.candidates import SeededCandidates, noise_from_seed
from evograd.core.functions import rosenbrock, sphere
from evograd.core.serialization import dumps, loads
from evograd.optim.openai_es import OpenAIES
from evograd.optim.updates import SGD, Adam


def run(opt, fn, gens):
    for _ in range(gens):
        opt.tell(fn(opt.ask()))
    return opt


def test_registered_and_defaults_documented():
    opt = evograd.make("openai_es", x0=np.zeros(4))
    assert isinstance(opt, OpenAIES)
    assert opt.popsize == 50 and opt.sigma == 0.1 and opt.weight_decay == 0.005
    assert isinstance(opt.inner, Adam)
    for name in ("popsize", "sigma0", "lr", "optimizer", "shaping", "weight_decay"):
        assert name in OpenAIES.__doc__


@pytest.mark.parametrize("fn,x0_value,target", [(sphere, 2.0, 1e-2), (rosenbrock, 2.0, 15.0)])
def test_converges_with_defaults(fn, x0_value, target):
    x0 = np.full(6, x0_value)
    opt = run(OpenAIES(x0=x0, seed=0), fn, 300)  # Adam moves ~lr = 0.01 per coordinate per generation
    assert opt.best.value < target < fn(x0)
    assert opt.evals == 300 * 50


def test_mirrored_pairs_around_center():
    opt = OpenAIES(x0=np.arange(5.0), popsize=8, sigma0=0.3, seed=1)
    cand = opt.ask_candidates()
    assert isinstance(cand, SeededCandidates) and len(cand.seeds) == 4
    X = opt.ask()
    assert X.shape == (8, 5)
    np.testing.assert_allclose((X[0::2] + X[1::2]) / 2, np.tile(np.arange(5.0), (4, 1)), atol=1e-12)
    for j, s in enumerate(cand.seeds):
        np.testing.assert_allclose(X[2 * j] - np.arange(5.0), 0.3 * noise_from_seed(s, 5), atol=1e-12)
    assert len(np.unique(X[0::2] - X[1::2], axis=0)) == 4  # distinct directions


def test_gradient_estimate_drives_sgd_by_hand():
    # identity shaping, no weight decay, SGD: the step is exactly -lr * (-(1/(n sigma)) sum u_i s_i eps_i).
    rng = np.random.default_rng(5)
    a = rng.standard_normal(4)
    x0 = rng.standard_normal(4)
    opt = OpenAIES(x0=x0, popsize=6, sigma0=0.2, lr=0.05, optimizer="sgd", shaping="identity",
                   weight_decay=0.0, seed=3)
    cand = opt.ask_candidates()
    X = cand.materialize()
    f = X @ a
    eps = np.stack([noise_from_seed(s, 4) for s in cand.seeds])
    u = -f
    grad = -sum(u[i] * cand.sign[i] * eps[cand.direction[i]] for i in range(6)) / (6 * 0.2)
    opt.tell(f)
    np.testing.assert_allclose(opt.center, x0 - 0.05 * grad, rtol=1e-12, atol=1e-14)
    # on a linear function the mirrored estimate is exact along the sampled directions: descent on a
    assert (opt.center - x0) @ a < 0


def test_sgd_and_adam_are_selectable():
    kw = {"x0": np.ones(3), "popsize": 4, "seed": 0}
    sgd = OpenAIES(optimizer="sgd", optimizer_kwargs={"momentum": 0.9}, **kw)
    adam = OpenAIES(**kw)
    assert isinstance(sgd.inner, SGD) and isinstance(adam.inner, Adam)
    assert sgd.inner.momentum == 0.9
    run(sgd, sphere, 1)
    run(adam, sphere, 1)
    # Adam's first step is lr * sign(g) per coordinate; SGD's is proportional to g: they differ.
    np.testing.assert_allclose(np.abs(adam.center - 1.0), 0.01, rtol=1e-4)
    assert not np.allclose(np.abs(sgd.center - 1.0), 0.01, rtol=1e-4)


def test_weight_decay_shrinks_center_on_flat_fitness():
    x0 = np.array([1.0, -2.0, 3.0])

    def flat(X):
        return np.zeros(len(X))

    still = run(OpenAIES(x0=x0, popsize=4, shaping="identity", weight_decay=0.0, seed=0), flat, 20)
    np.testing.assert_array_equal(still.center, x0)  # no signal, no decay: nothing moves
    decayed = run(OpenAIES(x0=x0, popsize=4, shaping="identity", weight_decay=0.1, seed=0), flat, 20)
    assert np.all(np.abs(decayed.center) < np.abs(x0) - 0.15)
    assert np.all(np.sign(decayed.center) == np.sign(x0))


def test_determinism_per_seed():
    a = run(OpenAIES(x0=np.ones(5), popsize=10, seed=7), sphere, 5)
    b = run(OpenAIES(x0=np.ones(5), popsize=10, seed=7), sphere, 5)
    c = run(OpenAIES(x0=np.ones(5), popsize=10, seed=8), sphere, 5)
    np.testing.assert_array_equal(a.ask(), b.ask())
    assert not np.array_equal(a.ask(), c.ask())


@pytest.mark.parametrize("pending", [False, True])
@pytest.mark.parametrize("optimizer", ["adam", "sgd"])
def test_state_round_trip_is_bit_exact(pending, optimizer):
    kw = {"x0": np.full(5, 1.5), "popsize": 10, "optimizer": optimizer, "seed": 11}
    a = run(OpenAIES(**kw), rosenbrock, 4)
    if pending:
        a.ask()  # the restored pending candidates carry no noise cache: tell must regenerate it
    state = loads(dumps(a.state_dict()))
    b = OpenAIES(**kw)
    b.load_state_dict(state)
    for _ in range(3):
        Xa, Xb = a.ask(), b.ask()
        np.testing.assert_array_equal(Xa, Xb)
        a.tell(rosenbrock(Xa))
        b.tell(rosenbrock(Xb))
    np.testing.assert_array_equal(a.center, b.center)
    assert a.best.value == b.best.value and a.evals == b.evals


def test_maximize():
    opt = OpenAIES(x0=np.full(4, 2.0), popsize=20, lr=0.05, maximize=True, seed=0)
    run(opt, lambda X: -sphere(X), 100)
    assert opt.best.value > -0.1
    assert opt.best.value == pytest.approx(-sphere(opt.best.x))


def test_nan_values_never_crash_nor_win():
    def noisy(X):
        f = sphere(X)
        f[::3] = np.nan
        f[1] = -np.inf  # would win a minimization if taken at face value
        return f

    opt = OpenAIES(x0=np.ones(3), popsize=6, seed=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", evograd.NonFiniteWarning)
        run(opt, noisy, 5)
        opt.ask()
        opt.tell(np.full(6, np.nan))  # a generation with nothing finite still steps
    assert np.isfinite(opt.best.value) and np.all(np.isfinite(opt.center))
    assert opt.nonfinite == 5 * 3 + 6


@pytest.mark.parametrize(
    "kwargs,param",
    [
        ({"sigma0": 0.0}, "sigma0"),
        ({"sigma0": -1.0}, "sigma0"),
        ({"popsize": 7}, "popsize"),
        ({"popsize": 0}, "popsize"),
        ({"popsize": 2.0}, "popsize"),
        ({"lr": 0.0}, "lr"),
        ({"weight_decay": -0.1}, "weight_decay"),
        ({"shaping": "ranks"}, "shaping"),
        ({"optimizer": "rmsprop"}, "optimizer"),
        ({"optimizer_kwargs": [1]}, "optimizer_kwargs"),
        ({"optimizer_kwargs": {"lr": 0.1}}, "optimizer_kwargs"),
        ({"optimizer_kwargs": {"momentum": 0.9}}, "momentum"),  # adam has no momentum
    ],
)
def test_invalid_parameters_name_the_parameter(kwargs, param):
    with pytest.raises(evograd.ParameterError, match=f"'{param}'"):
        OpenAIES(x0=np.zeros(3), **kwargs)


@pytest.mark.parametrize("optimizer", ["adam", "sgd"])
def test_lr_lives_in_the_update_rule_and_reports_the_loaded_value(optimizer):
    a = run(OpenAIES(x0=np.ones(4), popsize=6, lr=0.05, optimizer=optimizer, seed=1), sphere, 3)
    b = OpenAIES(x0=np.ones(4), popsize=6, lr=0.3, optimizer=optimizer, seed=1)
    b.load_state_dict(loads(dumps(a.state_dict())))
    assert b.lr == b.inner.lr == 0.05  # one source of truth: the rule it steps with
    for _ in range(2):  # and it steps with it: the same centers as the run it was saved from
        Xa, Xb = a.ask(), b.ask()
        a.tell(sphere(Xa))
        b.tell(sphere(Xb))
    np.testing.assert_array_equal(a.center, b.center)
    b.lr = 0.2  # setting it sets the rule's, and the next state says so
    assert b.inner.lr == 0.2 and b.state_dict()["algorithm"]["inner"]["lr"] == 0.2
    with pytest.raises(evograd.ParameterError, match="'lr'"):
        b.lr = -1.0
