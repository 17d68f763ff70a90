"""Behaviour every registered optimizer shares: the protocol contract users rely on."""
import warnings

import numpy as np
import pytest

import evograd as eg
from evograd import functions as F
from evograd.optim.registry import hyperparameters

ALL = [n for n in eg.available() if eg.registry.usable(n)]  # evotorch_* need the extra
POPULATION = [n for n in ALL if not eg.registry.get(n).needs_grad]
GRADIENT = [n for n in ALL if eg.registry.get(n).needs_grad]


def test_registry_lists_every_required_optimizer():
    for name in ["ga", "openai_es", "ars", "snes", "cmaes", "cbo", "sgd", "adam"]:
        assert name in ALL


def test_unknown_name_suggests_close_match():
    with pytest.raises(eg.ParameterError, match="Did you mean 'cmaes'"):
        eg.make("cmaess", x0=np.zeros(3))


def test_unknown_hyperparameter_is_named():
    with pytest.raises(eg.ParameterError, match="'sigma00'.*Did you mean 'sigma0'"):
        eg.make("cmaes", x0=np.zeros(3), sigma00=1.0)


def _run(name, fn, seed, evals=20_000, dim=10, target=None):
    opt = eg.make(name, x0=2.0 * np.ones(dim), seed=seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return eg.minimize(fn, opt, max_evals=evals, vectorized=True, target=target)


@pytest.mark.parametrize("name", ALL)
@pytest.mark.parametrize("fname", ["sphere", "rosenbrock"])
def test_defaults_improve_10x_in_20k_evals(name, fname):
    fn = F.get(fname)
    f0 = fn(2.0 * np.ones(10))
    for seed in (0, 1, 2):
        res = _run(name, fn, seed, target=f0 / 10)  # stops as soon as the 10x improvement is reached
        assert res.evals <= 20_000
        assert res.value <= f0 / 10, f"{name} seed {seed}: {res.value} vs start {f0}"


@pytest.mark.parametrize("name", ALL)
def test_same_seed_same_result_and_streams_are_independent(name):
    a = _run(name, F.rosenbrock, 7, evals=2_000)
    b = _run(name, F.rosenbrock, 7, evals=2_000)
    assert a.value == b.value and np.array_equal(a.x, b.x)
    # two optimizers interleaved in one process give what each gives alone; numpy's global state is untouched
    np.random.seed(123)
    before = np.random.get_state()[1].copy()
    o1 = eg.make(name, x0=np.ones(5), seed=1)
    o2 = eg.make(name, x0=np.ones(5), seed=1)
    solo = eg.make(name, x0=np.ones(5), seed=1)
    for _ in range(5):
        X1, X2, Xs = o1.ask(), o2.ask(), solo.ask()
        assert np.array_equal(X1, Xs) and np.array_equal(X2, Xs)
        kw = {"grads": 2 * X1} if o1.needs_grad else {}
        o1.tell(F.sphere(X1), **kw)
        np.random.rand(3)  # someone else using the global stream
        o2.tell(F.sphere(X2), **kw)
        solo.tell(F.sphere(Xs), **kw)
    np.random.seed(123)
    assert np.array_equal(np.random.get_state()[1], before)


@pytest.mark.parametrize("name", ALL)
def test_state_dict_round_trip_reproduces_next_ask(name):
    def step(o):
        X = o.ask()
        o.tell(F.rastrigin(X), **({"grads": 2 * X} if o.needs_grad else {}))

    a = eg.make(name, x0=np.full(6, 1.5), seed=3)
    for _ in range(4):
        step(a)
    state = eg.serialization.loads(eg.serialization.dumps(a.state_dict()))
    assert state["version"] == 1
    b = eg.make(name, x0=np.full(6, 1.5), seed=99)
    b.load_state_dict(state)
    for _ in range(3):
        assert np.array_equal(a.ask(), b.ask())
        step(a)
        step(b)
    assert a.best.value == b.best.value
    # saved between ask and tell: the restored optimizer asks the same pending candidates
    Xa = a.ask()
    c = eg.make(name, x0=np.full(6, 1.5), seed=5)
    c.load_state_dict(a.state_dict())
    assert np.array_equal(c.ask(), Xa)


@pytest.mark.parametrize("name", POPULATION)
def test_n_jobs_1_and_2_identical(name):
    a = eg.minimize(F.rastrigin, eg.make(name, x0=np.ones(4), seed=0), max_evals=600, n_jobs=1)
    b = eg.minimize(F.rastrigin, eg.make(name, x0=np.ones(4), seed=0), max_evals=600, n_jobs=2)
    assert a.value == b.value and np.array_equal(a.x, b.x)
    assert [r["best_value"] for r in a.history] == [r["best_value"] for r in b.history]


@pytest.mark.parametrize("name", ALL)
def test_maximize_flips_sense_and_best_value_is_raw(name):
    opt = eg.make(name, x0=np.full(4, 0.5), seed=0, maximize=True)
    for _ in range(30):
        X = opt.ask()
        vals = -F.sphere(X)
        opt.tell(vals, **({"grads": -2 * X} if opt.needs_grad else {}))
    assert opt.best.value <= 0
    assert opt.best.value > -F.sphere(np.full(4, 0.5))  # moved toward the maximum at 0
    assert np.isclose(opt.best.value, -F.sphere(opt.best.x))


@pytest.mark.parametrize("name", POPULATION)
def test_nonfinite_values_ranked_worst_counted_and_never_best(name):
    opt = eg.make(name, x0=np.ones(4), seed=0)
    bad_total = 0
    for _ in range(20):
        X = opt.ask()
        v = F.sphere(X)
        v[::3] = np.nan
        v[1] = -np.inf  # an inf that would "win" if not ranked worst
        bad_total += int(np.sum(~np.isfinite(v)))
        with pytest.warns(eg.NonFiniteWarning):
            opt.tell(v)
    assert opt.nonfinite == bad_total
    assert np.isfinite(opt.best.value) and opt.best.value >= 0


@pytest.mark.parametrize("name", ALL)
def test_bad_input_raises_naming_the_parameter(name):
    with pytest.raises(eg.ParameterError, match="'x0'"):
        eg.make(name, x0=np.array([1.0, np.nan, 0.0]))
    with pytest.raises(eg.ParameterError, match="'seed'"):
        eg.make(name, x0=np.ones(3), seed=-1)
    accepted = hyperparameters(eg.registry.get(name))
    if "sigma0" in accepted:
        for bad in (0.0, -1.0):
            with pytest.raises(eg.ParameterError, match="'sigma0'"):
                eg.make(name, x0=np.ones(3), sigma0=bad)
    if "popsize" in accepted:
        with pytest.raises(eg.ParameterError, match="'popsize'"):
            eg.make(name, x0=np.ones(3), popsize=1)
    opt = eg.make(name, x0=np.ones(3), seed=0)
    with pytest.raises(RuntimeError, match="before ask"):
        opt.tell([1.0])
    X = opt.ask()
    with pytest.raises(eg.ParameterError, match="'values'"):
        opt.tell(np.zeros(len(X) + 1), **({"grads": np.zeros_like(X)} if opt.needs_grad else {}))
    if opt.needs_grad:
        with pytest.raises(eg.ParameterError, match="'grads'"):
            opt.tell([1.0], grads=np.zeros(4))
        with pytest.raises(eg.ParameterError, match="needs gradients"):
            opt.tell([1.0])


def test_population_x0_only_for_ga_and_cbo():
    P0 = np.random.default_rng(0).uniform(-1, 1, size=(8, 3))
    for name in ("ga", "cbo"):
        opt = eg.make(name, x0=P0, seed=0)
        assert opt.dim == 3
    for name in ("cmaes", "snes", "openai_es", "ars"):
        with pytest.raises(eg.ParameterError, match="'x0'.*\\(dim,\\)"):
            eg.make(name, x0=P0)


# ------------------------------------------------------------------ one vocabulary
OLD_NAMES = [(name, old) for name in eg.available() for old in eg.registry.renamed_parameters(eg.registry.get(name))]


def test_the_renamed_names_are_the_documented_ones():
    assert sorted(OLD_NAMES) == sorted([
        ("ars", "step_size"), ("snes", "lr_center"), ("cbo", "sigma"), ("cbo", "noise"), ("cbo", "batch_size"),
        *[(f"evotorch_{a}", old) for a in ("pgpe", "snes", "xnes") for old in ("center_learning_rate",
                                                                               "stdev_learning_rate")],
        ("evotorch_snes", "scale_learning_rate"), ("evotorch_xnes", "scale_learning_rate")])


@pytest.mark.parametrize("name", eg.available())
def test_no_constructor_uses_a_retired_name(name):
    # sigma0 is the search scale, lr the step size, popsize the candidates per ask, noise the noise source
    accepted = hyperparameters(eg.registry.get(name))
    assert not {"sigma", "step_size", "lr_center", "batch_size", "center_learning_rate",
                "stdev_learning_rate", "learning_rate"} & set(accepted)
    if "noise" in accepted and eg.registry.usable(name):
        eg.make(name, x0=np.ones(3), noise="table")


@pytest.mark.parametrize("name,old", OLD_NAMES)
def test_each_old_name_warns_or_names_the_new_one(name, old):
    from evograd.optim.base import renamed_arguments

    cls = eg.registry.get(name)
    r = eg.registry.renamed_parameters(cls)[old]
    value = 0.25 if r.new not in ("popsize", "scale_lr_sigma") else (6 if r.new == "popsize" else False)
    if not r.keeps_working:
        with pytest.raises(eg.ParameterError, match=rf"'{old}' parameter of {cls.__name__} was renamed '{r.new}'"):
            renamed_arguments(cls, {old: value}, {})
    else:
        with pytest.deprecated_call(match=rf"'{old}' parameter of {cls.__name__} .*now called '{r.new}'"):
            assert renamed_arguments(cls, {old: value}, {})[r.new] == value
    if not eg.registry.usable(name):
        return  # the EvoTorch adapters build only with the extra installed
    x0 = np.ones(8)
    if r.keeps_working:  # through make, the same optimizer as with the new name, bit for bit
        with pytest.deprecated_call():
            a = eg.make(name, x0=x0, seed=2, **{old: value})
        b = eg.make(name, x0=x0, seed=2, **{r.new: value})
        for _ in range(3):
            Xa, Xb = a.ask(), b.ask()
            assert np.array_equal(Xa, Xb)
            a.tell(F.rastrigin(Xa))
            b.tell(F.rastrigin(Xb))
    else:
        with pytest.raises(eg.ParameterError, match=f"renamed '{r.new}'"):
            eg.make(name, x0=x0, **{old: value})


@pytest.mark.parametrize("name,old", [(n, o) for n, o in OLD_NAMES if eg.registry.usable(n)])
def test_each_old_name_in_a_config_is_an_error_naming_the_new_one(name, old):
    from pathlib import Path

    from evograd.experiments.config import load_config
    from evograd.experiments.config_errors import ConfigError

    new = eg.registry.renamed_parameters(eg.registry.get(name))[old].new
    path = Path(__file__).resolve().parents[2] / "configs" / "custom_fitness.yaml"
    with pytest.raises(ConfigError, match=rf"optimizer\.{old}: renamed '{new}'"):
        load_config(path, [f"optimizer={name}", f"optimizer.{old}=1"])


@pytest.mark.parametrize("name", POPULATION)
def test_popsize_is_the_number_of_candidates_asked(name):
    for kw in ({}, {"popsize": 6}):
        opt = eg.make(name, x0=np.ones(5), seed=0, **kw)
        for _ in range(3):
            X = opt.ask()
            assert X.shape == (opt.popsize, 5) and len(opt.ask_candidates()) == opt.popsize
            opt.tell(F.sphere(X))
        if kw:
            assert opt.popsize == 6


@pytest.mark.parametrize("name", ALL)
def test_attributes_agree_with_the_loaded_state(name):
    a = eg.make(name, x0=np.ones(4), seed=3)
    X = a.ask()
    a.tell(F.sphere(X), **({"grads": 2 * X} if a.needs_grad else {}))
    b = eg.make(name, x0=np.ones(4), seed=8)
    b.load_state_dict(a.state_dict())
    assert b.seed == 3 and b.state_dict()["seed"] == 3  # the stream continues seed 3's run: say so
    for attr in ("lr", "popsize", "generation", "evals", "maximize"):
        if hasattr(a, attr):
            assert getattr(b, attr) == getattr(a, attr), attr
