"""LowRankES (EGGROLL): the batched forward against members materialized one by one, the full-rank update
against the explicit sum over members, the distribution of the low-rank perturbations, learning, seeds,
state round trips, errors, and CUDA where present."""
import copy
import math

import numpy as np
import pytest
import torch
from torch import nn

import evograd.zo
from evograd.core.serialization import dumps, loads
from evograd.core.shaping import SHAPERS
from evograd.core.validation import ParameterError
from evograd.zo.lowrank import LowRankES


def mlp(dtype=torch.float64, seed=0):
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(5, 8), nn.Tanh(), nn.Sequential(nn.Linear(8, 6, bias=False), nn.ReLU()),
                          nn.Linear(6, 4), nn.GELU(), nn.Linear(4, 3))
    return model.to(dtype)


def member_perturbation(pop, lin_index, member):
    """sigma-free perturbation of member i's weight and bias: s_i A B^T / sqrt(r) and s_i e."""
    d, s = pop.direction[member], float(pop.sign[member])
    E = s * pop.A(lin_index)[d] @ pop.B(lin_index)[d].T / math.sqrt(pop.rank)
    e = pop.bias_noise(lin_index)
    return E, None if e is None else s * e[d]


def member_model(model, pop, member):
    """The member's network with W + sigma s A B^T / sqrt(r) and b + sigma s e written into a copy."""
    m = copy.deepcopy(model)
    linears = [x for x in m.modules() if isinstance(x, nn.Linear)]
    with torch.no_grad():
        for li, lin in enumerate(linears):
            E, e = member_perturbation(pop, li, member)
            lin.weight += pop.sigma * E
            if e is not None:
                lin.bias += pop.sigma * e
    return m


@pytest.mark.parametrize("rank", [1, 4])
@pytest.mark.parametrize("antithetic", [True, False])
@pytest.mark.parametrize("dtype,tol", [(torch.float64, 1e-12), (torch.float32, 2e-6)])
def test_batched_forward_equals_each_member_materialized(rank, antithetic, dtype, tol):
    model = mlp(dtype)
    es = LowRankES(model, popsize=6, sigma0=0.3, rank=rank, antithetic=antithetic, seed=1)
    pop = es.ask()
    x = torch.randn(6, 5, 5, dtype=dtype)
    out = es.evaluate(x)
    assert out.shape == (6, 5, 3)
    for i in range(6):
        ref = member_model(model, pop, i)(x[i])
        torch.testing.assert_close(out[i], ref, rtol=tol, atol=tol)
    shared = es.evaluate(x[2])  # (k, in): the same inputs for every member
    torch.testing.assert_close(shared[4], member_model(model, pop, 4)(x[2]), rtol=tol, atol=tol)
    if antithetic:  # mirrored pairs: one factor set, opposite signs
        assert list(pop.sign[:4]) == [1, -1, 1, -1] and list(pop.direction[:4]) == [0, 0, 1, 1]


@pytest.mark.parametrize("shaping", ["identity", "centered_ranks"])
@pytest.mark.parametrize("rank", [1, 3])
def test_update_is_the_full_rank_sum_over_members(shaping, rank):
    model = mlp()
    popsize, sigma, lr = 8, 0.2, 0.5
    es = LowRankES(model, popsize=popsize, sigma0=sigma, rank=rank, lr=lr, optimizer="sgd", shaping=shaping,
                   seed=3)
    pop = es.ask()
    values = np.random.default_rng(0).normal(size=popsize)
    u = SHAPERS[shaping](values)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    es.tell(values)
    linears = [x for x in model.modules() if isinstance(x, nn.Linear)]
    names = dict((id(p), n) for n, p in model.named_parameters())
    ranks = []
    for li, lin in enumerate(linears):
        dW = sum(u[i] * member_perturbation(pop, li, i)[0] for i in range(popsize)) / (popsize * sigma)
        got = lin.weight.detach() - before[names[id(lin.weight)]]
        torch.testing.assert_close(got, lr * dW, rtol=1e-10, atol=1e-12)
        ranks.append(int(torch.linalg.matrix_rank(got)))
        if lin.bias is not None:
            db = sum(u[i] * member_perturbation(pop, li, i)[1] for i in range(popsize)) / (popsize * sigma)
            torch.testing.assert_close(lin.bias.detach() - before[names[id(lin.bias)]], lr * db, rtol=1e-10,
                                       atol=1e-12)
    # each member's perturbation has rank r; their sum does not (here min(m, n, r * popsize / 2))
    assert ranks == [min(lin.out_features, lin.in_features, rank * popsize // 2) for lin in linears]


@pytest.mark.parametrize("rank", [1, 4, 16])
def test_low_rank_entries_are_uncorrelated_unit_variance_and_tend_to_gaussian(rank):
    """Entries of A B^T / sqrt(r): mean 0, variance 1, uncorrelated (so the expected ES update of a linear or
    quadratic objective is the full-rank one), fourth moment 3 + 6 / r -> 3 (Gaussian) as r grows: the O(1/r)
    term is what biases the expected update on other objectives."""
    es = LowRankES(nn.Linear(2, 3, bias=False), popsize=200_000, rank=rank, seed=rank)
    pop = es.ask()
    E = (pop.A(0) @ pop.B(0).transpose(1, 2)).reshape(-1, 6).double() / math.sqrt(rank)  # one row per set
    n = E.shape[0]
    mean, var = E.mean(0), E.var(0)
    kurt = 3 + 6 / rank
    assert mean.abs().max() < 5 / math.sqrt(n)
    assert (var - 1).abs().max() < 5 * math.sqrt((kurt - 1) / n)
    corr = torch.corrcoef(E.T) - torch.eye(6, dtype=torch.float64)
    assert corr.abs().max() < 5 / math.sqrt(n)
    fourth = (E**4).mean(0)  # within 5 standard errors (estimated from the sample: E^4 is heavy-tailed at r = 1)
    assert ((fourth - kurt).abs() < 5 * (E**4).std(0) / math.sqrt(n)).all(), (fourth, kurt)
    assert abs(float(fourth.mean()) - kurt) < 0.25 * (kurt - 3)  # and tells 9, 4.5 and 3.375 apart


@pytest.mark.parametrize("rank", [1, 4])
def test_estimate_on_a_linear_objective_points_along_its_gradient(rank):
    torch.manual_seed(0)
    model = nn.Linear(6, 5).double()
    G = torch.randn(5, 6, dtype=torch.float64)
    es = LowRankES(model, popsize=20_000, sigma0=0.1, rank=rank, shaping="identity", seed=0)
    pop = es.ask()
    E = torch.stack([member_perturbation(pop, 0, i)[0] for i in range(0, 20_000, 2)])  # the + members
    f_plus = ((model.weight + 0.1 * E) * G).sum((1, 2))
    f_minus = ((model.weight - 0.1 * E) * G).sum((1, 2))
    values = torch.stack([f_plus, f_minus], 1).reshape(-1)
    g = es.gradient(values)["weight"]
    cos = float((g * G).sum() / (g.norm() * G.norm()))
    assert cos > 0.98, cos


def test_learns_a_regression_for_most_seeds():
    rng = np.random.default_rng(0)
    x = torch.tensor(rng.normal(size=(64, 4)), dtype=torch.float32)
    y = torch.sin(x @ torch.tensor([[1.0], [-0.5], [0.3], [0.8]]))
    wins, seeds = 0, range(5)
    for seed in seeds:
        torch.manual_seed(seed)
        model = nn.Sequential(nn.Linear(4, 16), nn.Tanh(), nn.Linear(16, 1))
        with torch.no_grad():
            start = float(((model(x) - y) ** 2).mean())
        es = LowRankES(model, popsize=32, sigma0=0.05, rank=2, lr=0.02, seed=seed)
        for _ in range(120):
            es.step(x, lambda out: ((out - y) ** 2).mean(dim=(1, 2)))
        with torch.no_grad():
            end = float(((model(x) - y) ** 2).mean())
        wins += end < 0.1 * start  # about 0.03 for every seed tried (0-11)
    assert wins >= 4, wins
    assert es.generation == 120 and es.evals == 120 * 32


def test_same_seed_same_run_other_seed_other_factors():
    def run(seed):
        model = mlp(torch.float32)
        es = LowRankES(model, popsize=4, rank=2, seed=seed)
        for _ in range(3):
            es.ask()
            es.tell(es.evaluate(torch.ones(2, 5)).sum((1, 2)))
        return es.ask().A(0).clone(), torch.cat([p.detach().ravel() for p in model.parameters()])

    a, b, c = run(7), run(7), run(8)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert not torch.equal(a[0], c[0])


def test_ask_is_idempotent_and_state_round_trip_reproduces_the_run():
    def fitness(es):
        return es.evaluate(torch.linspace(-1, 1, 10).view(2, 5)).pow(2).sum((1, 2))

    es = LowRankES(mlp(torch.float32), popsize=6, rank=2, seed=5, maximize=True)
    for _ in range(2):
        es.ask()
        es.tell(fitness(es))
    first = es.ask()
    assert es.ask() is first
    state = loads(dumps(es.state_dict()))  # with an ask pending: the restored ES asks that population again
    other = LowRankES(mlp(torch.float32, seed=9), popsize=6, rank=2, seed=123)
    other.load_state_dict(state)
    assert other.generation == 2 and other.maximize
    again = other.ask()
    assert all(torch.equal(first.A(i), again.A(i)) and torch.equal(first.B(i), again.B(i)) for i in range(4))
    assert all(first.bias_noise(i) is None or torch.equal(first.bias_noise(i), again.bias_noise(i)) for i in range(4))
    es.tell(fitness(es))
    other.tell(fitness(other))
    for p, q in zip(es.model.parameters(), other.model.parameters()):
        assert torch.equal(p, q)
    with pytest.raises(ParameterError, match="rank"):
        LowRankES(mlp(), popsize=6, rank=3).load_state_dict(state)
    bad = dict(state, center={**state["center"], "0.weight": np.zeros((2, 2))})
    with pytest.raises(ParameterError, match="'0.weight'"):
        LowRankES(mlp(), popsize=6, rank=2).load_state_dict(bad)


@pytest.mark.parametrize("kwargs,name", [
    ({"popsize": 5}, "popsize"), ({"popsize": 1, "antithetic": False}, "popsize"), ({"sigma0": 0.0}, "sigma0"),
    ({"rank": 0}, "rank"), ({"lr": -1.0}, "lr"), ({"optimizer": "rmsprop"}, "optimizer"),
    ({"shaping": "ranks"}, "shaping"), ({"seed": -1}, "seed"), ({"optimizer_kwargs": {"nope": 1}}, "optimizer_kwargs"),
    ({"antithetic": 1}, "antithetic"), ({"rank": 10**12}, "rank"),
])
def test_bad_settings_are_refused_naming_the_parameter(kwargs, name):
    with pytest.raises(ParameterError, match=f"'{name}' parameter of LowRankES"):
        LowRankES(mlp(), **kwargs)


def test_bad_models_inputs_and_values_are_refused_naming_them():
    with pytest.raises(ParameterError, match="'1.weight' belongs to a LayerNorm"):
        LowRankES(nn.Sequential(nn.Linear(3, 4), nn.LayerNorm(4)))
    with pytest.raises(ParameterError, match="'model' parameter"):
        LowRankES(nn.Conv1d(1, 1, 3))
    es = LowRankES(mlp(), popsize=4)
    with pytest.raises(RuntimeError, match="before ask"):
        es.evaluate(torch.zeros(4, 1, 5))
    with pytest.raises(RuntimeError, match="before ask"):
        es.tell(np.zeros(4))
    es.ask()
    with pytest.raises(ParameterError, match=r"'inputs'.*\(4, k, 5\)"):
        es.evaluate(torch.zeros(3, 1, 5))
    with pytest.raises(ParameterError, match="'values'.*4 real numbers"):
        es.tell(np.zeros(3))
    es.tell([0.0, np.nan, 1.0, np.inf])  # non-finite values rank worst, the center stays finite
    assert all(torch.isfinite(p).all() for p in es.model.parameters())


def test_inputs_are_never_modified_and_the_lazy_name_resolves():
    model = nn.Sequential(nn.ReLU(), nn.Linear(3, 2))
    es = evograd.zo.LowRankES(model, popsize=2, seed=0)
    assert evograd.zo.LowRankES is LowRankES
    es.ask()
    x = torch.tensor([[[-1.0, 2.0, -3.0]], [[1.0, -2.0, 3.0]]])
    before = x.clone()
    es.evaluate(x)
    assert torch.equal(x, before)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device on this machine (the CPU tests cover "
                    "the same code; this one runs the population on the GPU when there is one)")
def test_on_cuda_the_batched_forward_and_update_match_the_materialized_members():
    model = mlp(torch.float32)
    es = LowRankES(model, popsize=6, sigma0=0.3, rank=4, seed=1, device="cuda")
    assert all(p.is_cuda for p in model.parameters())
    pop = es.ask()
    assert pop.A(0).is_cuda
    x = torch.randn(6, 5, 5, device="cuda")
    out = es.evaluate(x)
    for i in range(6):
        torch.testing.assert_close(out[i], member_model(model, pop, i)(x[i]), rtol=1e-4, atol=1e-5)
    es.tell(out.sum((1, 2)))
    assert es.generation == 1 and all(p.is_cuda and torch.isfinite(p).all() for p in model.parameters())
