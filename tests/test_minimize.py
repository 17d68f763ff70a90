"""The one-call driver: budgets, parallel evaluation, autograd, error reporting."""
import warnings

import numpy as np
import pytest
import torch

import evograd as eg
from evograd import functions as F


def test_budget_never_exceeded_and_history_rows():
    res = eg.minimize(F.sphere, eg.make("adam", x0=np.ones(3), lr=0.1), max_evals=57)
    assert res.evals == 57 and res.generations == 57 and res.stop_reason == "max_evals"
    assert len(res.history) == 57
    assert {"generation", "evals", "wall_s", "best_value", "gen_min", "gen_mean"} <= set(res.history[0])
    assert res.history[-1]["best_value"] == res.value


def test_target_and_callback_stop_early():
    res = eg.minimize(F.sphere, eg.make("adam", x0=np.ones(3), lr=0.1), max_evals=10_000, target=1e-3)
    assert res.stop_reason == "target" and res.value <= 1e-3 and res.evals < 10_000
    res = eg.minimize(F.sphere, eg.make("sgd", x0=np.ones(3)), max_generations=100,
                      callback=lambda row: row["generation"] >= 5)
    assert res.stop_reason == "callback" and res.generations == 5


def test_needs_a_budget():
    with pytest.raises(eg.ParameterError, match="budget"):
        eg.minimize(F.sphere, eg.make("adam", x0=np.ones(3)))


def test_gradients_come_from_autograd_serial_and_vectorized():
    a = eg.minimize(F.rosenbrock, eg.make("adam", x0=np.zeros(4), lr=0.01), max_evals=300)
    b = eg.minimize(F.rosenbrock, eg.make("adam", x0=np.zeros(4), lr=0.01), max_evals=300, vectorized=True)
    assert np.allclose(a.x, b.x) and a.value < F.rosenbrock(np.zeros(4))


def test_non_differentiable_fn_is_explained():
    def numpy_only(x):
        return float(np.sum(np.asarray(x.detach()) ** 2))

    with pytest.raises(eg.ParameterError, match="not differentiable"):
        eg.minimize(numpy_only, eg.make("sgd", x0=np.ones(3)), max_evals=5)


def _fails_on_large(x):
    if x[0] > 1.5:
        raise ValueError("boom at large x")
    return float(np.sum(x**2))


@pytest.mark.parametrize("n_jobs", [1, 2])
def test_exception_reraised_with_candidate_index_and_traceback(n_jobs):
    X = np.array([[0.0, 0.0], [1.0, 1.0], [2.0, 0.0], [0.5, 0.5]])
    with eg.FunctionEvaluator(_fails_on_large, n_jobs=n_jobs) as ev:
        with pytest.raises(eg.EvaluationError) as info:
            ev(X)
    assert info.value.index == 2
    assert "boom at large x" in str(info.value) and "Traceback" in info.value.original


def test_wrong_return_shape_is_explained():
    with pytest.raises(eg.ParameterError, match="one number per candidate"):
        eg.FunctionEvaluator(lambda x: x)(np.ones((2, 3)))
    with pytest.raises(eg.ParameterError, match="vectorized"):
        eg.FunctionEvaluator(lambda X: X.sum(), vectorized=True)(np.ones((2, 3)))
    with pytest.raises(eg.ParameterError, match="n_jobs"):
        eg.FunctionEvaluator(F.sphere, n_jobs=0)


def test_progress_bar_is_opt_in(capsys):
    eg.minimize(F.sphere, eg.make("adam", x0=np.ones(2)), max_evals=20, progress=True)
    assert "minimize" in capsys.readouterr().err
    eg.minimize(F.sphere, eg.make("adam", x0=np.ones(2)), max_evals=20)
    assert capsys.readouterr().err == ""


def test_maximize_built_optimizer_is_switched_to_minimization_with_warning():
    opt = eg.make("adam", x0=np.ones(2), lr=0.1, maximize=True)
    with pytest.warns(UserWarning, match="switched to minimization"):
        res = eg.minimize(F.sphere, opt, max_evals=200)
    assert res.value < 0.5


def test_gradient_optimizer_bound_to_module_parameters():
    torch.manual_seed(0)
    net = torch.nn.Linear(3, 1)
    opt = eg.make("adam", lr=0.05).bind(net.parameters())
    X, y = torch.randn(64, 3), torch.randn(64, 1)
    losses = []
    for _ in range(100):
        opt.ask()
        net.zero_grad()
        loss = ((net(X) - y) ** 2).mean()
        loss.backward()
        opt.tell(loss.item())
        losses.append(loss.item())
    assert losses[-1] < losses[0] * 0.9
    assert opt.best.value == min(losses) and opt.dim == 4
    # state round trip restores the module's parameters and Adam's moments
    state = opt.state_dict()
    net2 = torch.nn.Linear(3, 1)
    opt2 = eg.make("adam", lr=0.05).bind(net2.parameters())
    opt2.load_state_dict(state)
    assert np.array_equal(opt2.ask(), opt.ask())


# ------------------------------------------------------------------ hostile inputs (issue 12, item 4)
@pytest.mark.parametrize("vectorized", [False, True])
@pytest.mark.parametrize("bad, shown", [(None, "None (NoneType)"), ("1.5", "'1.5' (str)"),
                                        (1 + 2j, "(1+2j) (complex)"), (object, "(type)")])
def test_non_numeric_fitness_is_an_error_naming_the_candidate(vectorized, bad, shown):
    def fn(x):  # candidate 2 returns the bad value (in the batch too)
        if vectorized:
            return [float(v) if i != 2 else bad for i, v in enumerate(F.sphere(x))]
        return bad if np.array_equal(x, fn.rows[2]) else F.sphere(x)

    opt = eg.make("cmaes", x0=np.ones(3), seed=0)
    fn.rows = opt.ask()
    with pytest.raises(eg.ParameterError, match="must return (a )?real number") as info:
        eg.minimize(fn, opt, max_evals=100, vectorized=vectorized)
    assert "candidate 2" in str(info.value) and shown in str(info.value)
    assert opt.generation == 0  # nothing was told


def test_tell_refuses_non_numeric_and_complex_values_and_grads():
    opt = eg.make("snes", x0=np.zeros(3), seed=0)
    n = len(opt.ask())
    for values, shown in (([1.0] * (n - 1) + [None], f"None (NoneType) (candidate {n - 1})"),
                          (["1.5"] * n, "'1.5' (str) (candidate 0)"),
                          (np.ones(n) * (1 + 1j), "(1+1j) (complex) (candidate 0)")):
        with pytest.raises(eg.ParameterError, match=r"'values' passed to SNES.tell\(\) must be real numbers") as info:
            opt.tell(values)
        assert shown in str(info.value)
    opt.tell(np.arange(float(n)))  # still usable: the bad calls changed nothing
    assert opt.generation == 1 and opt.nonfinite == 0
    adam = eg.make("adam", x0=np.zeros(2))
    adam.ask()
    with pytest.raises(eg.ParameterError, match=r"'grads' passed to Adam.tell\(\) must be real numbers\. "
                                                r"Got 1j \(complex\) \(candidate 0\)"):
        adam.tell(1.0, np.array([0.0, 1j]))


def test_budget_smaller_than_one_generation_is_an_error():
    opt = eg.make("snes", x0=np.zeros(3), popsize=8, seed=0)
    with pytest.raises(eg.ParameterError) as info:
        eg.minimize(F.sphere, opt, max_evals=3)
    assert str(info.value) == ("The 'max_evals' parameter of minimize must be an int >= 8 (one generation: SNES "
                               "asks for 8 candidates at a time). Got 3 instead.")
    res = eg.minimize(F.sphere, opt, max_evals=8)  # exactly one generation is a run
    assert res.generations == 1 and res.evals == 8 and res.x is not None


@pytest.mark.parametrize("x0", [np.ones(3) * (1 + 1j), np.ones(3) + 0j, [1.0, 2j, 3.0], ["1", "2"], [1.0, None]])
def test_complex_or_text_x0_is_rejected_not_converted(x0):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # numpy's ComplexWarning would mean the imaginary part was dropped
        with pytest.raises(eg.ParameterError, match="The 'x0' parameter of CMAES must be an array of real "
                                                    "numbers. Got .an array with .* at index [0-9]"):
            eg.make("cmaes", x0=x0)


def test_complex_fitness_under_autograd_is_an_error():
    opt = eg.make("adam", x0=np.ones(2))
    with pytest.raises(eg.ParameterError, match="must return real numbers"):
        eg.minimize(lambda x: (x * (1 + 1j)).sum(), opt, max_evals=5)


@pytest.mark.parametrize("name, param, what", [
    ("cmaes", "popsize", "popsize x dim"), ("snes", "popsize", "popsize x dim"),
    ("openai_es", "popsize", "popsize x dim"), ("ga", "popsize", "popsize x dim"),
    ("cbo", "n_particles", "n_particles x dim"), ("ars", "n_directions", "2 x n_directions x dim"),
])
def test_memory_infeasible_population_is_refused_before_allocating(name, param, what):
    cls = type(eg.make(name, x0=np.zeros(4)))
    with pytest.raises(eg.ParameterError) as info:
        eg.make(name, x0=np.zeros(4), **{param: 10**12})
    msg = str(info.value)
    assert msg.startswith(f"The '{param}' parameter of {cls.__name__} must fit in memory: {what} = ")
    assert "float64 values = " in msg and "TiB, more than half of this machine's" in msg and "\n" not in msg


def test_cmaes_refuses_a_covariance_or_restart_population_that_cannot_fit():
    with pytest.raises(eg.ParameterError, match=r"'x0' parameter of CMAES must fit in memory: dim x dim covariance"):
        eg.make("cmaes", x0=np.zeros(2_000_000))  # 16 MB of x0, 32 TB of covariance
    eg.make("cmaes", x0=np.zeros(2_000_000), separable=True, popsize=2)  # sep-CMA keeps the diagonal only
    with pytest.raises(eg.ParameterError, match=r"'incpopsize' parameter of CMAES must fit in memory: popsize x "
                                                r"incpopsize x dim \(after one restart\)"):
        eg.make("cmaes", x0=np.zeros(4), restarts="ipop", incpopsize=1e12)
