"""EvoTorch's algorithms behind evograd's protocol (evograd.interop.evotorch, the `evotorch` extra).

The first two tests run everywhere (they are about what happens WITHOUT EvoTorch); the rest skip when
EvoTorch is not installed. The engine-equivalence tests are what a speed comparison rests on: fed the
same populations and values, our adapters end where EvoTorch's own code ends.
"""
import importlib.util
import subprocess
import sys
import warnings

import numpy as np
import pytest
import torch

import evograd as eg
from evograd import functions as F
from evograd.core.candidates import DenseCandidates

NAMES = ["evotorch_pgpe", "evotorch_cem", "evotorch_snes", "evotorch_xnes"]
needs_evotorch = pytest.mark.skipif(importlib.util.find_spec("evotorch") is None, reason="EvoTorch not installed")


@pytest.mark.parametrize("name", NAMES)
def test_without_evotorch_building_one_says_how_to_install_it(name, monkeypatch):
    monkeypatch.setitem(sys.modules, "evotorch", None)  # makes `import evotorch` fail, installed or not
    assert name in eg.available()  # registered all the same: configs and `evograd list` know the name
    with pytest.raises(ImportError, match=rf"^{name} needs EvoTorch: pip install 'evograd\[evotorch\]'$"):
        eg.make(name, x0=np.zeros(3))


def test_import_evograd_does_not_import_evotorch():
    code = ("import sys, evograd; evograd.available(); "
            "evograd.hyperparameters(evograd.optim.registry.get('evotorch_pgpe'))"
            "; assert 'evotorch' not in sys.modules and 'ray' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def _quiet_minimize(fn, opt, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return eg.minimize(fn, opt, vectorized=True, **kw)


@needs_evotorch
@pytest.mark.parametrize("name", NAMES)
def test_defaults_improve_sphere_and_rosenbrock_10x_within_20k_evals(name):
    x0 = 2.0 * np.ones(10)
    for fn in (F.sphere, F.rosenbrock):
        f0 = float(fn(x0))
        for seed in (0, 1, 2):
            res = _quiet_minimize(fn, eg.make(name, x0=x0, seed=seed), max_evals=20_000, target=f0 / 10)
            assert res.evals <= 20_000 and res.value <= f0 / 10, (name, fn.__name__, seed, res.value)


@needs_evotorch
@pytest.mark.parametrize("name", NAMES)
def test_seeded_runs_repeat_and_leave_global_rngs_alone(name):
    torch.manual_seed(11)
    np.random.seed(11)
    torch_before, np_before = torch.get_rng_state(), np.random.get_state()[1].copy()
    a = _quiet_minimize(F.rastrigin, eg.make(name, x0=np.ones(5), seed=4), max_evals=600)
    b = _quiet_minimize(F.rastrigin, eg.make(name, x0=np.ones(5), seed=4), max_evals=600)
    c = _quiet_minimize(F.rastrigin, eg.make(name, x0=np.ones(5), seed=5), max_evals=600)
    assert a.value == b.value and np.array_equal(a.x, b.x)
    assert not np.array_equal(a.x, c.x)
    assert torch.equal(torch.get_rng_state(), torch_before)
    assert np.array_equal(np.random.get_state()[1], np_before)


def _same(x, y) -> bool:
    if isinstance(x, dict):
        return x.keys() == y.keys() and all(_same(x[k], y[k]) for k in x)
    return np.array_equal(x, y)


@needs_evotorch
@pytest.mark.parametrize("name", NAMES)
def test_state_round_trip_continues_bit_for_bit(name):
    def step(o):
        X = o.ask()
        o.tell(F.rosenbrock(X))

    kw = {"x0": np.full(6, 1.5), "sigma0": 0.7}
    a = eg.make(name, seed=3, **kw)
    for _ in range(4):
        step(a)
    b = eg.make(name, seed=99, **kw)
    b.load_state_dict(eg.serialization.loads(eg.serialization.dumps(a.state_dict())))  # plain data only
    for _ in range(3):
        assert np.array_equal(a.ask(), b.ask())
        step(a)
        step(b)
    assert _same(a.state_dict()["algorithm"], b.state_dict()["algorithm"])
    Xa = a.ask()  # saved between ask and tell: the pending population comes back
    c = eg.make(name, seed=5, **kw)
    c.load_state_dict(a.state_dict())
    assert np.array_equal(c.ask(), Xa)


@needs_evotorch
@pytest.mark.parametrize("name", NAMES)
def test_maximize_goes_through_the_base_class(name):
    opt = eg.make(name, x0=np.full(4, 1.0), seed=0, maximize=True)
    for _ in range(40):
        X = opt.ask()
        opt.tell(-F.sphere(X))
    assert -4.0 < opt.best.value <= 0 and np.isclose(opt.best.value, -F.sphere(opt.best.x))
    assert F.sphere(opt.center) < 4.0  # the distribution moved toward the maximum of -sphere at 0


@needs_evotorch
@pytest.mark.parametrize("name", NAMES)
def test_train_solves_cartpole_with_a_linear_policy(name):
    problem = eg.GymProblem("CartPole-v1", policy="linear", seed=0)
    opt = eg.make(name, x0=problem.initial_params(), seed=0)
    res = eg.train(problem, opt, max_env_steps=60_000, target_return=475, eval_episodes=5)
    assert res.stop_reason == "target_return" and res.best_eval_return >= 475, res


@needs_evotorch
def test_bad_hyperparameters_are_named():
    x0 = np.ones(3)
    with pytest.raises(eg.ParameterError, match="'popsize'.*even"):
        eg.make("evotorch_pgpe", x0=x0, popsize=7)
    eg.make("evotorch_pgpe", x0=x0, popsize=7, symmetric=False)
    with pytest.raises(eg.ParameterError, match="'optimizer_config'"):
        eg.make("evotorch_pgpe", x0=x0, optimizer="adam", optimizer_config={"max_speed": 0.1})
    with pytest.raises(eg.ParameterError, match="'ranking_method'"):
        eg.make("evotorch_snes", x0=x0, ranking_method="fancy")
    with pytest.raises(eg.ParameterError, match="'parenthood_ratio'.*at least 2 parents"):
        eg.make("evotorch_cem", x0=x0, popsize=10, parenthood_ratio=0.1)


# ---------------------------------------------------------------- same algorithm, either engine
@needs_evotorch
def test_pgpe_matches_evotorch_functional_pgpe_on_the_same_values():
    from evotorch.algorithms.functional import pgpe, pgpe_tell

    x0 = np.array([2.0, -1.0, 0.5, 3.0])
    ours = eg.make("evotorch_pgpe", x0=x0, sigma0=0.3, popsize=8, seed=1, maximize=True)
    raw = pgpe(center_init=torch.tensor(x0), center_learning_rate=ours.center_learning_rate,
               stdev_learning_rate=0.1, objective_sense="max", stdev_init=0.3)  # EvoTorch's defaults otherwise
    for _ in range(6):
        X = ours.ask()
        assert np.allclose(X[0::2] + X[1::2], 2 * ours.center)  # EvoTorch's mirrored pairs around the center
        values = -F.rosenbrock(X)  # maximized, raw user values on both sides
        ours.tell(values)
        raw = pgpe_tell(raw, torch.from_numpy(X), torch.from_numpy(values))
    assert np.array_equal(ours.center, raw.optimizer_state.center.numpy())
    assert np.array_equal(ours.stdev, raw.stdev.numpy())
    assert np.array_equal(ours.state_dict()["algorithm"]["optimizer_state"]["velocity"],
                          raw.optimizer_state.velocity.numpy())


@needs_evotorch
def test_cem_matches_evotorch_functional_cem_on_the_same_values():
    from evotorch.algorithms.functional import cem, cem_tell

    x0 = np.array([2.0, -1.0, 0.5])
    ours = eg.make("evotorch_cem", x0=x0, sigma0=0.5, popsize=20, parenthood_ratio=0.25, seed=2,
                   stdev_max_change=0.2)
    raw = cem(center_init=torch.tensor(x0), parenthood_ratio=0.25, objective_sense="min", stdev_init=0.5,
              stdev_max_change=0.2)
    for _ in range(6):
        X = ours.ask()
        ours.tell(F.rastrigin(X))
        raw = cem_tell(raw, torch.from_numpy(X), torch.from_numpy(F.rastrigin(X)))
    assert np.array_equal(ours.center, raw.center.numpy()) and np.array_equal(ours.stdev, raw.stdev.numpy())


@needs_evotorch
@pytest.mark.parametrize("name", ["evotorch_snes", "evotorch_xnes"])
def test_nes_matches_evotorch_class_api_searcher(name):
    """EvoTorch's own SNES/XNES searcher samples and evaluates; its populations are told to our adapter,
    whose center and spread must then equal the searcher's after the same updates."""
    from evotorch import Problem
    from evotorch.algorithms import SNES, XNES

    x0 = np.array([2.0, -1.0, 0.5, 3.0, 1.0])
    problem = Problem("min", lambda X: torch.from_numpy(F.rosenbrock(X.numpy())), solution_length=5,
                      initial_bounds=(-1, 1), dtype=torch.float64, vectorized=True, seed=0)
    searcher = (SNES if name == "evotorch_snes" else XNES)(problem, stdev_init=0.4, center_init=torch.tensor(x0))
    ours = eg.make(name, x0=x0, sigma0=0.4, seed=0)
    for _ in range(5):
        searcher.step()  # updates from the previous population (after the first step), samples, evaluates
        pop = searcher.population
        ours._pending = DenseCandidates(pop.values.numpy())  # EvoTorch's population, through our tell
        ours.tell(pop.evals[:, 0].numpy())
    searcher.step()  # applies the update from the 5th population
    dist = searcher._distribution
    np.testing.assert_allclose(ours.center, dist.mu.numpy(), rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(ours._dist.sigma.numpy(), dist.sigma.numpy(), rtol=1e-12, atol=1e-14)
