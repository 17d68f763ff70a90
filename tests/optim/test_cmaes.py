"""CMA-ES: the asks of raw pycma, IPOP/BIPOP restarts that matter, exact and safe state round trips."""
import os
import pickle
import warnings

import cma
import numpy as np
import pytest

import evograd as eg
from evograd.core.functions import rastrigin, rosenbrock, sphere
from evograd.core.restricted_pickle import UnsafeStateError
from evograd.core.serialization import dumps, loads
from evograd.optim.base import NonFiniteWarning
from evograd.optim.cmaes import CMAES, dump_engine, load_engine


def run(opt, fn, gens):
    for _ in range(gens):
        opt.tell(fn(opt.ask()))
    return opt


def run_until(opt, fn, done, max_evals):
    while opt.evals < max_evals and not done(opt):
        opt.tell(fn(opt.ask()))
    return opt


def solved(opt, tol=1e-8):
    return opt.best.value <= tol  # False while best is NaN


def ellipsoid(X, cond=1e6):
    X = np.atleast_2d(X)
    w = cond ** (np.arange(X.shape[1]) / (X.shape[1] - 1))
    return (w * X * X).sum(-1)


# ---------------------------------------------------------------------------------------- reference
@pytest.mark.parametrize("separable", [False, True])
def test_asks_equal_raw_pycma_whatever_the_global_rng_does(separable):
    x0 = np.linspace(-1.0, 2.0, 7)
    opts = {"randn": np.random.RandomState(11).randn, "seed": np.nan, "verbose": -9}
    if separable:
        opts["CMA_diagonal"] = True
    ref = cma.CMAEvolutionStrategy(x0, 0.7, opts)
    opt = eg.make("cmaes", x0=x0, sigma0=0.7, seed=11, separable=separable)
    for g in range(12):
        np.random.seed(g)  # global state is reseeded and consumed between every call of both
        Xr = np.array(ref.ask())
        np.random.randn(5)
        X = opt.ask()
        np.random.rand(3)
        assert np.array_equal(X, Xr), f"generation {g}"
        ref.tell(list(Xr), rosenbrock(Xr).tolist())
        opt.tell(rosenbrock(X))
    assert opt.popsize == ref.popsize == 4 + int(3 * np.log(7))
    assert bool(opt.engine.opts["CMA_diagonal"]) is separable


def test_same_seed_same_run_other_seed_other_run_none_seed_works():
    a = run(CMAES(x0=np.ones(6), seed=3), sphere, 15)
    b = run(CMAES(x0=np.ones(6), seed=3), sphere, 15)
    c = run(CMAES(x0=np.ones(6), seed=4), sphere, 15)
    assert np.array_equal(a.ask(), b.ask()) and a.best.value == b.best.value
    assert not np.array_equal(a.ask(), c.ask())
    d = run(CMAES(x0=np.ones(6)), sphere, 15)
    assert d.best.value < sphere(np.ones(6))


def test_popsize_and_sigma0_are_passed_to_the_engine():
    opt = CMAES(x0=np.zeros(4), sigma0=0.3, popsize=17, seed=0)
    assert opt.popsize == 17 and opt.ask().shape == (17, 4)
    assert opt.engine.sigma0 == 0.3


@pytest.mark.parametrize("kw, name", [
    ({"sigma0": 0.0}, "sigma0"), ({"sigma0": -1.0}, "sigma0"), ({"popsize": 1}, "popsize"),
    ({"popsize": 3.5}, "popsize"), ({"restarts": "lpop"}, "restarts"), ({"max_restarts": -1}, "max_restarts"),
    ({"incpopsize": 1.0}, "incpopsize"), ({"separable": "yes"}, "separable"), ({"seed": -2}, "seed"),
    ({"restart_bounds": (1.0, -1.0)}, "restart_bounds"), ({"restart_bounds": 5.0}, "restart_bounds"),
    ({"restart_bounds": (np.zeros(2), 1.0)}, "restart_bounds"),
])
def test_invalid_parameters_name_the_parameter(kw, name):
    with pytest.raises(eg.ParameterError, match=f"'{name}' parameter of CMAES"):
        CMAES(x0=np.zeros(3), **kw)


# ---------------------------------------------------------------------------------------- behaviour
def test_maximize_sees_the_same_search_and_reports_raw_values():
    lo = run(CMAES(x0=np.ones(5), seed=2), sphere, 30)
    hi = run(CMAES(x0=np.ones(5), seed=2, maximize=True), lambda X: -sphere(X), 30)
    assert np.array_equal(lo.ask(), hi.ask())
    assert hi.best.value == -lo.best.value and -0.05 < hi.best.value < 0


def test_nan_values_do_not_crash_and_never_become_best():
    opt = CMAES(x0=np.full(5, 2.0), seed=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NonFiniteWarning)
        X = opt.ask()
        opt.tell(np.full(len(X), np.nan))  # a generation of failures only
        for _ in range(60):
            X = opt.ask()
            f = sphere(X)
            f[::3] = np.nan
            f[1] = np.inf
            opt.tell(f)
            assert np.isfinite(opt.best.value)
    assert opt.nonfinite > 60 * len(X) // 3
    assert opt.best.value < 1e-2 and sphere(opt.best.x) == opt.best.value


def test_stop_is_reported_and_asking_goes_on_without_restarts(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    opt = CMAES(x0=np.ones(5), seed=0)
    while not opt.stopped:  # pycma's own loop shape: poll the stop conditions once per generation
        assert opt.generation < 1000
        opt.tell(sphere(opt.ask()))
    assert "tolfun" in opt.stopped or "tolx" in opt.stopped
    run(opt, sphere, 20)  # no crash, no restart, still the same run
    assert opt.restarts_done == 0 and opt.runs == [] and opt.stopped
    assert os.listdir(tmp_path) == [] and capsys.readouterr().out == ""  # no log files, no printing


def test_separable_uses_cma_diagonal_and_solves_an_ill_conditioned_ellipsoid():
    opt = CMAES(x0=np.full(20, 3.0), separable=True, seed=1)
    assert opt.engine.opts["CMA_diagonal"] is True
    assert not isinstance(opt.engine.sm, cma.sampler.GaussFullSampler)  # no dim x dim matrix behind it
    run_until(opt, ellipsoid, lambda o: solved(o, 1e-8), 40_000)
    assert solved(opt, 1e-8), opt.best.value


def test_defaults_pass_the_acceptance_bar_quickly():
    for fn in (sphere, rosenbrock):
        f0 = fn(2.0 * np.ones(10))
        for seed in (0, 1, 2):
            done = lambda o, bar=f0 / 10: o.best.value < bar
            opt = run_until(CMAES(x0=2.0 * np.ones(10), seed=seed), fn, done, 20_000)
            assert opt.best.value < f0 / 10


# ---------------------------------------------------------------------------------------- restarts
RASTRIGIN = {"x0": np.full(5, 3.0), "sigma0": 2.0, "seed": 4}


def test_ipop_solves_rastrigin_where_the_single_run_gets_stuck():
    single = CMAES(**RASTRIGIN)
    run_until(single, rastrigin, lambda o: bool(o.stopped), 30_000)
    assert single.stopped and single.best.value > 0.9  # a local minimum (rastrigin's are >= ~1)

    ipop = run_until(CMAES(**RASTRIGIN, restarts="ipop"), rastrigin, solved, 30_000)
    assert solved(ipop), ipop.best.value
    pops = [r["popsize"] for r in ipop.runs] + [ipop.popsize]
    assert ipop.restarts_done >= 2 and pops == [8 * 2**i for i in range(len(pops))]
    first = ipop.runs[0]  # the first run is the single run, stopped by pycma's criteria
    assert first["best_f"] == single.best.value and first["stop"] and first["regime"] == "default"
    assert np.array_equal(ipop.x0, RASTRIGIN["x0"])


def test_restart_starts_again_from_x0_with_sigma0_and_a_larger_population():
    opt = CMAES(x0=np.full(4, 1.5), sigma0=0.4, seed=0, restarts="ipop", max_restarts=2, incpopsize=3)
    run_until(opt, sphere, lambda o: o.restarts_done == 1, 20_000)
    assert opt.regime == "large" and opt.popsize == 3 * (4 + int(3 * np.log(4)))
    assert np.array_equal(opt.engine.mean, np.full(4, 1.5)) and opt.engine.sigma == 0.4
    run_until(opt, sphere, lambda o: bool(o.stopped), 60_000)  # the third run has no restart left
    assert opt.restarts_done == 2 and opt.stopped
    run(opt, sphere, 5)
    assert opt.restarts_done == 2


def test_bipop_alternates_large_and_small_regimes_with_the_budget_rule():
    opt = CMAES(**RASTRIGIN, restarts="bipop", restart_bounds=(-5.0, np.full(5, 5.0)))
    starts = []
    while len(opt.runs) < 5:
        assert opt.evals < 30_000
        if opt.engine.countiter == 0:
            starts.append(opt.engine.mean.copy())
        opt.tell(rastrigin(opt.ask()))
    starts.append(opt.engine.mean.copy())  # the sixth run, just started
    assert np.array_equal(starts[0], RASTRIGIN["x0"]) and len(starts) == 6
    assert np.all(np.abs(starts[1:]) <= 5.0) and len({s.tobytes() for s in starts}) == 6  # fresh starts
    regimes = [r["regime"] for r in opt.runs]
    assert regimes[:3] == ["default", "large", "small"] and "large" in regimes[3:]
    lam0 = opt.runs[0]["popsize"]
    large_evals = 0
    for r in opt.runs:
        if r["regime"] == "large":
            large_evals += r["evals"]
            assert r["sigma0"] == 2.0 and r["popsize"] > lam0
        if r["regime"] == "small":
            assert 1e-2 * 2.0 <= r["sigma0"] <= 2.0
            assert lam0 <= r["popsize"] < 2 * lam0 * 2 ** opt._ctl["n_large"]
            assert r["evals"] < 0.5 * large_evals + r["popsize"]  # small runs get half the large budget
    assert all(r["stop"] for r in opt.runs)  # every run ended on pycma's criteria or the small-run budget
    assert opt._ctl["n_small"] >= 2 and opt._ctl["n_large"] >= 2


# ---------------------------------------------------------------------------------------- state
def assert_same_future(a, b, fn, gens):
    for g in range(gens):
        Xa, Xb = a.ask(), b.ask()
        assert np.array_equal(Xa, Xb), f"generation {g} after loading"
        a.tell(fn(Xa))
        b.tell(fn(Xb))


@pytest.mark.parametrize("pending", [False, True])
@pytest.mark.parametrize("kw", [{}, {"separable": True}, {"restarts": "bipop"}])
def test_state_round_trip_reproduces_the_next_asks(kw, pending):
    a = run(CMAES(x0=np.full(6, 2.0), seed=5, **kw), rastrigin, 7)
    if pending:
        a.ask()
    state = loads(dumps(a.state_dict()))  # as save_state/load_state would
    b = CMAES(x0=np.full(6, 2.0), seed=5, **kw)
    b.load_state_dict(state)
    assert_same_future(a, b, rastrigin, 12)


def test_state_round_trip_across_ipop_restarts():
    kw = {"x0": np.ones(4), "seed": 2, "restarts": "ipop"}
    a = run_until(CMAES(**kw), sphere, lambda o: o.restarts_done == 1, 20_000)  # right after a restart
    a.ask()
    b = CMAES(**kw)
    b.load_state_dict(a.state_dict())
    assert b.popsize == a.popsize == 2 * 8 and b.runs == a.runs and b.regime == "large"
    while a.restarts_done < 2:  # through the next restart boundary, and a few generations beyond
        assert a.generation < 1000
        assert_same_future(a, b, sphere, 1)
    assert_same_future(a, b, sphere, 3)
    assert b.restarts_done == 2 and b.popsize == 4 * 8 and a.best.value == b.best.value


def test_round_trip_survives_another_process_hash_salt():
    # pycma files asked solutions under hash(x.tobytes()), salted per process: emulate a load in a process
    # whose salt differs by scrambling those keys; seed 1 draws a sample that pycma would otherwise re-clip
    a = run(CMAES(x0=np.full(6, 2.0), seed=1), rastrigin, 3)
    a.ask()
    state = a.state_dict()
    rs = np.random.RandomState()
    rs.set_state(state["algorithm"]["randn_state"])
    es = load_engine(state["algorithm"]["engine"], rs)
    sd = es.sent_solutions
    sd.data = {k ^ 0x5BD1E995: v for k, v in sd.data.items()}
    sd._unhashed_keys = {k ^ 0x5BD1E995: v for k, v in sd._unhashed_keys.items()}
    state["algorithm"]["engine"] = dump_engine(es, rs)
    b = CMAES(x0=np.full(6, 2.0), seed=1)
    b.load_state_dict(state)
    assert_same_future(a, b, rastrigin, 3)


class _Evil:
    def __reduce__(self):
        return (os.system, ("echo pwned > /dev/null",))


def test_malicious_or_unstripped_engine_pickles_are_refused():
    a = run(CMAES(x0=np.ones(3), seed=0), sphere, 2)
    state = a.state_dict()
    assert isinstance(state["algorithm"]["engine"], bytes)
    for payload in (pickle.dumps(_Evil()), pickle.dumps(a.engine)):  # the raw engine holds a bound randn
        bad = dict(state, algorithm=dict(state["algorithm"], engine=payload))
        with pytest.raises(UnsafeStateError):
            CMAES(x0=np.ones(3), seed=0).load_state_dict(bad)
    assert callable(a.engine.opts["randn"]) and callable(a.engine.sm.randn)  # the live engine is intact
