"""L-BFGS (evograd.optim.lbfgs) against torch.optim.LBFGS(line_search_fn="strong_wolfe"): the same points in the same
order, the same number of evaluations to converge; a state saved in the middle of a line search; its errors; NaN."""
import math
import warnings

import numpy as np
import pytest
import torch

import evograd as eg
from evograd import functions as F
from evograd.optim.lbfgs import cubic_interpolate

torch.set_num_threads(1)


def quadratic(dim, seed):
    """A random convex quadratic 0.5 x'Hx - b'x (condition number about 1e3) and its minimizer."""
    rng = np.random.default_rng(seed)
    M = rng.standard_normal((dim, dim))
    H, b = M @ M.T + 0.1 * np.eye(dim), rng.standard_normal(dim)
    Ht, bt = torch.tensor(H), torch.tensor(b)
    return (lambda x: 0.5 * x @ Ht @ x - bt @ x), np.linalg.solve(H, b)


def torch_points(fn, x0):
    """Every point torch.optim.LBFGS evaluates, in order, run to its own convergence in one step()."""
    p = torch.tensor(x0, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([p], lr=1, max_iter=10**5, max_eval=10**6, history_size=10,
                            line_search_fn="strong_wolfe")
    points = []

    def closure():
        opt.zero_grad()
        points.append(p.detach().numpy().copy())
        loss = fn(p)
        loss.backward()
        return loss

    opt.step(closure)
    return np.array(points), p.detach().numpy().copy()


def step(opt, fn):
    X = opt.ask()
    x = torch.tensor(X[0], requires_grad=True)
    value = fn(x)
    value.backward()
    opt.tell([value.item()], x.grad.numpy()[None, :])
    return X[0]


def our_points(fn, x0, max_evals=10_000, **kw):
    opt = eg.make("lbfgs", x0=x0, **kw)
    points = []
    while not opt.stopped and opt.evals < max_evals:
        points.append(step(opt, fn))
    return np.array(points), opt


@pytest.mark.parametrize("case", ["rosenbrock-2d", "rosenbrock-10d", "quadratic-20d"])
def test_visits_the_points_torch_lbfgs_visits(case):
    solution = None
    if case == "rosenbrock-2d":
        fn, x0 = F.rosenbrock, np.array([-1.2, 1.0])
    elif case == "rosenbrock-10d":
        fn, x0 = F.rosenbrock, np.zeros(10)
    else:
        fn, solution = quadratic(20, 0)
        x0 = np.zeros(20)
    theirs, x_theirs = torch_points(fn, x0)
    ours, opt = our_points(fn, x0)
    # the same arithmetic in another order of summation: equal to rounding for the first 20 evaluations ...
    assert np.abs(ours[:20] - theirs[:20]).max() < 1e-9
    # ... and the same evaluations to converge, at the same point
    assert abs(len(ours) - len(theirs)) <= 2, (len(ours), len(theirs))
    assert np.abs(opt.center - x_theirs).max() < 1e-6
    assert opt.evals == len(ours) and opt.stopped
    # both stop on a change of value below tolerance_change = 1e-9, a little short of the minimizer
    assert np.abs(opt.center - (1.0 if solution is None else solution)).max() < 1e-3


def test_state_saved_mid_line_search_continues_bit_for_bit():
    a = eg.make("lbfgs", x0=np.array([-1.2, 1.0]), seed=1)
    mid_search = 0
    while mid_search < 3:  # the third time a line search has told points but not ended
        step(a, F.rosenbrock)
        mid_search += bool(a.state_dict()["algorithm"]["trials"])
    state = eg.serialization.loads(eg.serialization.dumps(a.state_dict()))
    b = eg.make("lbfgs", x0=np.array([-1.2, 1.0]), seed=2)
    b.load_state_dict(state)
    while not a.stopped:
        assert np.array_equal(a.ask(), b.ask())
        step(a, F.rosenbrock)
        step(b, F.rosenbrock)
    assert b.stopped == a.stopped and b.iterations == a.iterations and b.evals == a.evals
    assert np.array_equal(b.center, a.center) and b.best.value == a.best.value
    # saved between ask and tell: the same pending point
    c = eg.make("lbfgs", x0=np.zeros(3))
    c.ask()
    d = eg.make("lbfgs", x0=np.zeros(3))
    d.load_state_dict(c.state_dict())
    assert np.array_equal(d.ask(), c.ask())


def test_converged_optimizer_keeps_asking_its_final_point():
    fn, solution = quadratic(5, 3)
    _, opt = our_points(fn, np.zeros(5))
    assert set(opt.stopped) <= {"tolerance_grad", "tolerance_change_slope", "tolerance_change_step",
                                "tolerance_change_value"}
    final = opt.center
    for _ in range(3):
        assert np.array_equal(step(opt, fn), final)
    assert np.array_equal(opt.center, final) and np.abs(final - solution).max() < 1e-3


@pytest.mark.parametrize("kw, message", [
    ({"history": 0}, "The 'history' parameter of LBFGS must be an int >= 1. Got 0 instead."),
    ({"history": 2.5}, "The 'history' parameter of LBFGS must be an int >= 1. Got 2.5 instead."),
    ({"lr": 0.0}, "The 'lr' parameter of LBFGS must be a float > 0"),
    ({"tolerance_grad": -1.0}, "The 'tolerance_grad' parameter of LBFGS must be a float >= 0"),
    ({"tolerance_change": float("nan")}, "The 'tolerance_change' parameter of LBFGS"),
    ({"max_ls": 0}, "The 'max_ls' parameter of LBFGS must be an int >= 1. Got 0 instead."),
])
def test_hyperparameters_are_checked_in_the_constructor(kw, message):
    with pytest.raises(eg.ParameterError) as info:
        eg.make("lbfgs", x0=np.zeros(2), **kw)
    assert str(info.value).startswith(message)


def test_protocol_errors():
    opt = eg.make("lbfgs", x0=np.zeros(2))
    assert opt.needs_grad and opt.popsize == 1 and opt.lr == 1.0 and opt.history == 10
    with pytest.raises(RuntimeError, match="before ask"):
        opt.tell([1.0], np.zeros((1, 2)))
    assert opt.ask().shape == (1, 2)
    with pytest.raises(eg.ParameterError, match="needs gradients"):
        opt.tell([1.0])
    with pytest.raises(eg.ParameterError, match="'grads'"):
        opt.tell([1.0], np.zeros((1, 3)))


def test_minimize_drives_it_and_ends_the_run_at_convergence():
    opt = eg.make("lbfgs", x0=np.zeros(5))
    res = eg.minimize(F.rosenbrock, opt, max_evals=500)
    assert res.stop_reason == "converged" and opt.converged and opt.stopped and res.evals < 200
    assert res.value < 1e-10 and np.abs(res.x - 1.0).max() < 1e-4
    res = eg.minimize(F.sphere, eg.make("lbfgs", x0=np.full(3, 2.0)), max_evals=50)
    assert res.stop_reason == "converged" and res.evals < 50 and res.value < 1e-20
    assert not eg.make("cmaes", x0=np.zeros(3)).converged  # population methods leave stopping to the caller


def test_nonfinite_trials_shorten_the_step_and_a_nonfinite_start_stops():
    def fn(x):  # NaN beyond 1.5 in any coordinate; the minimum at 1 is inside
        value = ((x - 1.0) ** 2).sum()
        return value * torch.nan if bool((x > 1.5).any()) else value

    opt = eg.make("lbfgs", x0=np.full(2, -3.0), lr=10.0)  # the first trial steps to 2.0: NaN
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", eg.NonFiniteWarning)
        first = step(opt, fn), step(opt, fn)
        while not opt.stopped:
            step(opt, fn)
    assert np.array_equal(first[1], np.full(2, 2.0)) and opt.nonfinite >= 1
    assert np.abs(opt.center - 1.0).max() < 1e-6 and math.isfinite(opt.best.value)
    start = eg.make("lbfgs", x0=np.full(2, 2.0))
    with pytest.warns(eg.NonFiniteWarning):
        step(start, fn)
    assert start.stopped == {"nonfinite_start": math.inf}
    assert np.array_equal(start.ask()[0], np.full(2, 2.0))


def test_cubic_interpolation_is_exact_for_a_cubic_and_falls_back_to_the_middle():
    def f(x):
        return x**3 - 3 * x  # minimum at 1

    def g(x):
        return 3 * x**2 - 3

    assert cubic_interpolate(0.0, f(0.0), g(0.0), 2.0, f(2.0), g(2.0)) == pytest.approx(1.0)
    assert cubic_interpolate(0.0, 0.0, -1.0, 1.0, math.inf, math.nan) == 0.5
    assert cubic_interpolate(0.0, 0.0, 1.0, 1.0, 2 / 3, 1.0, bounds=(2.0, 4.0)) == 3.0  # no minimizer
