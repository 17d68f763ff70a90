"""A parameter mask every registered optimizer respects: masked coordinates never move, cost nothing, survive
state round trips, and a wrong mask is an error naming 'mask'."""
import warnings

import numpy as np
import pytest

import evograd as eg
from evograd import functions as F
from evograd.optim.pruning import (
    density_of,
    keep_top,
    random_mask,
    rewind,
    search_distribution,
    snr_pruning,
    snr_scores,
)

ALL = [n for n in eg.available() if eg.registry.usable(n)]  # evotorch_* need the extra
DIM = 9


def _setup(seed=0):
    rng = np.random.default_rng(seed)
    x0 = rng.normal(size=DIM)
    mask = rng.random(DIM) < 0.5
    mask[:2] = [True, False]  # at least one of each
    return x0, mask


def _step(opt, f=F.sphere):
    X = opt.ask()
    opt.tell(f(X), **({"grads": 2 * X} if opt.needs_grad else {}))
    return X


@pytest.mark.parametrize("name", ALL)
def test_masked_coordinates_stay_exactly_at_x0(name):
    x0, mask = _setup()
    opt = eg.make(name, x0=x0, mask=mask, seed=1)
    assert opt.dim == DIM and np.array_equal(opt.mask, mask)
    held = x0[~mask]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for _ in range(8):
            X = _step(opt)
            assert X.shape[1] == DIM
            assert np.array_equal(X[:, ~mask], np.broadcast_to(held, X[:, ~mask].shape))
            assert np.array_equal(opt.ask_candidates().materialize()[:, ~mask],
                                  np.broadcast_to(held, (opt.popsize, held.size)))
    assert np.array_equal(opt.center[~mask], held) and np.array_equal(opt.best.x[~mask], held)
    assert not np.array_equal(opt.center[mask], x0[mask])  # the searched coordinates did move
    assert opt.best.value < F.sphere(x0)


@pytest.mark.parametrize("name", ALL)
def test_state_round_trip_keeps_the_mask(name):
    x0, mask = _setup(1)
    a = eg.make(name, x0=x0, mask=mask, seed=3)
    for _ in range(3):
        _step(a)
    state = eg.serialization.loads(eg.serialization.dumps(a.state_dict()))
    assert np.array_equal(state["mask"], mask)
    b = eg.make(name, x0=x0, mask=mask, seed=99)
    b.load_state_dict(state)
    assert np.array_equal(b.mask, mask)
    for _ in range(3):
        assert np.array_equal(a.ask(), b.ask())
        _step(a)
        _step(b)
    assert np.array_equal(a.center, b.center)
    Xa = a.ask()  # saved between ask and tell
    c = eg.make(name, x0=x0, mask=mask, seed=5)
    c.load_state_dict(a.state_dict())
    assert np.array_equal(c.ask(), Xa)
    other = mask.copy()
    other[0], other[1] = other[1], other[0]
    for wrong in (other, None):
        with pytest.raises(eg.ParameterError, match="mask"):
            eg.make(name, x0=x0, mask=wrong, seed=3).load_state_dict(state)


@pytest.mark.parametrize("name", ALL)
def test_a_wrong_mask_is_an_error_naming_mask(name):
    x0, mask = _setup()
    for bad in (np.ones(DIM - 1, bool), np.ones((DIM, 1), bool), mask.astype(int), np.flatnonzero(mask),
                np.zeros(DIM, bool), [1] * DIM):
        with pytest.raises(eg.ParameterError, match="'mask'"):
            eg.make(name, x0=x0, mask=bad)


@pytest.mark.parametrize("name", [n for n in ALL if eg.make(n, x0=np.ones(3), mask=np.array([True, False, True]))
                                  .search_dim == 2])
def test_a_masked_optimizer_is_the_optimizer_of_the_sub_vector(name):
    # the base mechanism: same seed, same asks on the searched coordinates as an unmasked run on the sub-vector
    x0, mask = _setup(2)

    def embedded(Y):
        X = np.tile(x0, (len(Y), 1))
        X[:, mask] = Y
        return X

    a = eg.make(name, x0=x0, mask=mask, seed=4)
    b = eg.make(name, x0=x0[mask], seed=4)
    assert a.search_dim == b.dim == mask.sum() and a.popsize == b.popsize
    for _ in range(5):
        Xa, Xb = a.ask(), b.ask()
        assert np.array_equal(Xa[:, mask], Xb) and np.array_equal(Xa, embedded(Xb))
        a.tell(F.rastrigin(Xa), **({"grads": 2 * Xa} if a.needs_grad else {}))
        b.tell(F.rastrigin(embedded(Xb)), **({"grads": 2 * Xb} if b.needs_grad else {}))
    assert np.array_equal(a.center[mask], b.center)


def test_gradients_on_masked_coordinates_are_ignored():
    x0, mask = _setup()
    for name in ("sgd", "adam", "lbfgs"):
        a, b = (eg.make(name, x0=x0, mask=mask, seed=0) for _ in range(2))
        for _ in range(4):
            X = a.ask()
            G = 2 * X
            noisy = G.copy()
            noisy[:, ~mask] = 1e6
            a.tell(F.sphere(X), grads=G)
            b.tell(F.sphere(b.ask()), grads=noisy)
        assert np.array_equal(a.center, b.center)


def test_a_population_x0_must_agree_on_masked_coordinates():
    x0, mask = _setup()
    P = np.tile(x0, (6, 1)) + np.random.default_rng(0).normal(size=(6, DIM)) * mask
    for name in ("ga", "cbo"):
        opt = eg.make(name, x0=P, mask=mask, seed=0)
        assert np.array_equal(opt.ask()[:, ~mask], P[:, ~mask])
        Q = P.copy()
        Q[0, ~mask] += 1.0
        with pytest.raises(eg.ParameterError, match="'mask'"):
            eg.make(name, x0=Q, mask=mask)


def test_masked_evaluation_in_worker_processes_matches_one_process():
    x0, mask = _setup()
    runs = [eg.minimize(F.rastrigin, eg.make("snes", x0=x0, mask=mask, seed=0), max_evals=200, n_jobs=n)
            for n in (1, 2)]
    assert runs[0].value == runs[1].value and np.array_equal(runs[0].x, runs[1].x)
    assert np.array_equal(runs[0].x[~mask], x0[~mask])


def test_per_coordinate_arguments_take_the_full_length():
    x0, mask = _setup()
    sig = np.linspace(0.1, 0.9, DIM)
    opt = eg.make("snes", x0=x0, mask=mask, sigma0=sig)
    assert np.array_equal(opt.sigma, sig[mask])
    assert np.array_equal(opt.embed(opt.sigma, fill=0.0), np.where(mask, sig, 0.0))
    cma = eg.make("cmaes", x0=x0, mask=mask, restart_bounds=(-np.ones(DIM), np.arange(DIM) + 1.0), restarts="ipop")
    assert np.array_equal(cma.restart_bounds[1], (np.arange(DIM) + 1.0)[mask])


# ------------------------------------------------------------------ pruning rules (numpy)
def test_snr_scores_rank_as_defined_on_a_hand_made_distribution():
    mean = np.array([1.0, -4.0, 0.5, 2.0, -0.1, 3.0])
    std = np.array([1.0, 1.0, 0.1, 4.0, 0.01, 3.0])
    s = snr_scores(mean, std)  # |mean| / std = 1, 4, 5, 0.5, 10, 1
    assert np.allclose(s, [1, 4, 5, 0.5, 10, 1])
    assert list(np.argsort(-s, kind="stable")) == [4, 2, 1, 0, 5, 3]
    assert np.array_equal(keep_top(s, 0.5), [False, True, True, False, True, False])  # ties: the earlier wins
    # magnitude pruning would keep 1, 5, 3 instead: the std changes the decision
    assert np.array_equal(keep_top(np.abs(mean), 0.5), [False, True, False, True, False, True])


def test_densities_are_exact_and_earlier_prunings_stay():
    rng = np.random.default_rng(0)
    dim = 1000
    prunable = rng.random(dim) < 0.9
    groups = np.repeat(np.arange(4), dim // 4)
    for d in (0.5, 0.2, 0.1, 0.05, 0.013):
        m = keep_top(rng.normal(size=dim), d, prunable=prunable)
        assert (m & prunable).sum() == round(d * prunable.sum()) and m[~prunable].all()
        r = random_mask(dim, d, seed=1, prunable=prunable, groups=groups)
        for g in range(4):
            sel = prunable & (groups == g)
            assert (r & sel).sum() == round(d * sel.sum())
    mask, scores = None, rng.normal(size=dim)
    for d in (0.5, 0.2, 0.1):
        new = keep_top(-scores, d, prunable=prunable, mask=mask)  # scores that would revive pruned ones
        assert mask is None or not (new & ~mask).any()
        assert density_of(new, prunable) == pytest.approx(round(d * prunable.sum()) / prunable.sum())
        mask = new
    with pytest.raises(eg.ParameterError, match="densities must decrease"):
        keep_top(scores, 0.5, prunable=prunable, mask=mask)
    with pytest.raises(eg.ParameterError, match="'density'"):
        keep_top(scores, 0.0)


def test_rewinding_restores_the_initialization_on_kept_weights():
    x_init = np.random.default_rng(0).normal(size=50)
    seen = []

    def train(x0, mask):
        seen.append((x0.copy(), None if mask is None else mask.copy()))
        opt = eg.make("snes", x0=x0, mask=mask, seed=0, sigma0=0.3)
        for _ in range(20):
            _step(opt, F.sphere)
        return opt.best.value, *search_distribution(opt)

    rounds = snr_pruning(train, x_init, [0.5, 0.2])
    assert [r.density for r in rounds] == [1.0, 0.5, 0.2] and rounds[0].mask is None
    for (x0, mask), r in zip(seen[1:], rounds[1:]):
        assert np.array_equal(mask, r.mask)
        assert np.array_equal(x0[mask], x_init[mask]) and np.all(x0[~mask] == 0.0)
        assert np.array_equal(rewind(x_init, mask), x0)
    assert not (rounds[2].mask & ~rounds[1].mask).any()  # iterative: 20% is pruned from the 50% mask
    assert rounds[2].mask.sum() == 10


def test_search_distribution_of_each_es():
    x0, mask = _setup()
    snes = eg.make("snes", x0=x0, mask=mask, seed=0, sigma0=0.2)
    es = eg.make("openai_es", x0=x0, mask=mask, seed=0, sigma0=0.2)
    cma = eg.make("cmaes", x0=x0, mask=mask, seed=0, sigma0=0.2)
    for opt in (snes, es, cma):
        _step(opt)
        mean, std = search_distribution(opt)
        assert np.array_equal(mean, opt.center) and np.all(std[~mask] == 0) and np.all(std[mask] > 0)
    assert np.allclose(search_distribution(es)[1][mask], 0.2)  # isotropic: SNR = magnitude / sigma
    with pytest.raises(eg.ParameterError, match="search distribution"):
        search_distribution(eg.make("ga", x0=x0))
