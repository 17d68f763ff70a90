"""The one-call driver: budgets, parallel evaluation, autograd, error reporting."""
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
                      callback=lambda opt, row: row["generation"] >= 5)
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
