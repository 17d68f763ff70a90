"""ARS: hand-computed updates for every version (top-b selection, std scaling), convergence, round trips."""
import warnings

import numpy as np
import pytest

import evograd
from evograd.core.candidates import SeededCandidates, noise_from_seed
from evograd.core.functions import rosenbrock, sphere
from evograd.core.serialization import dumps, loads
from evograd.optim.ars import ARS


def run(opt, fn, gens):
    for _ in range(gens):
        opt.tell(fn(opt.ask()))
    return opt


def one_step(version, top_directions=None, f=None, **kw):
    """Tell one hand-picked generation (dim 3, N = 4) and return (optimizer, deltas, rewards per pair)."""
    opt = ARS(x0=np.array([0.5, -1.0, 2.0]), popsize=8, top_directions=top_directions, lr=0.1,
              sigma0=0.05, version=version, seed=2, **kw)
    cand = opt.ask_candidates()
    deltas = np.stack([noise_from_seed(s, 3) for s in cand.seeds])
    # rows are (+delta_0, -delta_0, +delta_1, ...); rewards r = -f
    f = np.array([3.0, 1.0, -4.0, 0.0, 2.5, 2.0, 0.5, 6.0]) if f is None else f
    opt.tell(f)
    r = (-f).reshape(4, 2)
    return opt, deltas, r


def expected(deltas, r, kept, scale):
    diff = r[kept, 0] - r[kept, 1]
    denom = len(kept) * (r[kept].std() if scale else 1.0)
    return np.array([0.5, -1.0, 2.0]) + 0.1 / denom * (diff @ deltas[kept])


def test_v2t_keeps_top_b_directions_and_scales_by_their_std():
    opt, deltas, r = one_step("v2-t", top_directions=2)
    # max(r+, r-) per direction: [-1, 4, -2, -0.5] -> the top two are directions 1 and 3
    np.testing.assert_allclose(opt.center, expected(deltas, r, [1, 3], scale=True), rtol=1e-12)
    every = expected(deltas, r, [0, 1, 2, 3], scale=True)
    assert np.abs(opt.center - every).max() > 1e-3  # ignoring top-b would give a different step


def test_v1_uses_all_directions_scaled_by_std():
    opt, deltas, r = one_step("v1")
    np.testing.assert_allclose(opt.center, expected(deltas, r, [0, 1, 2, 3], scale=True), rtol=1e-12)
    unscaled = expected(deltas, r, [0, 1, 2, 3], scale=False)
    assert np.abs(opt.center - unscaled).max() > 1e-3


def test_brs_does_not_scale():
    opt, deltas, r = one_step("brs")
    np.testing.assert_allclose(opt.center, expected(deltas, r, [0, 1, 2, 3], scale=False), rtol=1e-12)


def test_v2_equals_v1_and_scale_by_std_overrides():
    a, _, _ = one_step("v1")
    b, _, _ = one_step("v2")
    np.testing.assert_array_equal(a.center, b.center)
    c, deltas, r = one_step("v1-t", top_directions=2, scale_by_std=False)
    np.testing.assert_allclose(c.center, expected(deltas, r, [1, 3], scale=False), rtol=1e-12)


def test_default_top_directions():
    assert ARS(x0=np.zeros(2), n_directions=8).top_directions == 4  # default version v2-t
    assert ARS(x0=np.zeros(2), n_directions=8, version="v1").top_directions == 8
    assert ARS(x0=np.zeros(2), n_directions=1).top_directions == 1
    assert ARS(x0=np.zeros(2), n_directions=5).popsize == 10
    assert ARS(x0=np.zeros(2), popsize=16).top_directions == 4 and ARS(x0=np.zeros(2)).popsize == 16


def test_equal_rewards_do_not_move():
    opt, _, _ = one_step("v2-t", f=np.full(8, 3.0))
    np.testing.assert_array_equal(opt.center, [0.5, -1.0, 2.0])


@pytest.mark.parametrize("fn,target", [(sphere, 1e-2), (rosenbrock, 5.0)])
def test_converges_with_defaults(fn, target):
    x0 = np.full(6, 2.0)
    opt = run(ARS(x0=x0, seed=0), fn, 300)
    assert opt.best.value < target < fn(x0)


def test_mirrored_seeded_candidates():
    opt = ARS(x0=np.arange(4.0), n_directions=3, sigma0=0.2, seed=0)
    cand = opt.ask_candidates()
    assert isinstance(cand, SeededCandidates) and len(cand.seeds) == 3
    X = opt.ask()
    np.testing.assert_allclose((X[0::2] + X[1::2]) / 2, np.tile(np.arange(4.0), (3, 1)), atol=1e-12)
    np.testing.assert_allclose(X[2] - np.arange(4.0), 0.2 * noise_from_seed(cand.seeds[1], 4), atol=1e-12)


def test_determinism_per_seed():
    a = run(ARS(x0=np.ones(5), seed=3), sphere, 5)
    b = run(ARS(x0=np.ones(5), seed=3), sphere, 5)
    c = run(ARS(x0=np.ones(5), seed=4), sphere, 5)
    np.testing.assert_array_equal(a.ask(), b.ask())
    assert not np.array_equal(a.ask(), c.ask())


@pytest.mark.parametrize("pending", [False, True])
def test_state_round_trip_is_bit_exact(pending):
    kw = {"x0": np.full(5, 1.5), "n_directions": 6, "top_directions": 3, "seed": 9}
    a = run(ARS(**kw), rosenbrock, 4)
    if pending:
        a.ask()  # restored pending candidates have no noise cache: tell regenerates the directions
    b = ARS(**kw)
    b.load_state_dict(loads(dumps(a.state_dict())))
    for _ in range(3):
        Xa, Xb = a.ask(), b.ask()
        np.testing.assert_array_equal(Xa, Xb)
        a.tell(rosenbrock(Xa))
        b.tell(rosenbrock(Xb))
    np.testing.assert_array_equal(a.center, b.center)


def test_maximize():
    opt = run(ARS(x0=np.full(4, 2.0), maximize=True, seed=0), lambda X: -sphere(X), 300)
    assert -0.05 < opt.best.value <= 0
    assert opt.best.value == pytest.approx(-sphere(opt.best.x))


def test_nan_values_never_crash_nor_win():
    def broken(X):
        f = sphere(X)
        f[0] = np.nan
        f[3] = -np.inf
        return f

    opt = ARS(x0=np.ones(3), n_directions=3, seed=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", evograd.NonFiniteWarning)
        run(opt, broken, 5)
        opt.ask()
        opt.tell(np.full(6, np.nan))
    assert np.isfinite(opt.best.value) and np.all(np.isfinite(opt.center))
    assert opt.nonfinite == 5 * 2 + 6


@pytest.mark.parametrize(
    "kwargs,param",
    [
        ({"sigma0": 0.0}, "sigma0"),
        ({"lr": -0.1}, "lr"),
        ({"n_directions": 0}, "n_directions"),
        ({"popsize": 7}, "popsize"),
        ({"popsize": 10, "n_directions": 4}, "n_directions"),
        ({"n_directions": 4, "top_directions": 5}, "top_directions"),
        ({"n_directions": 4, "top_directions": 0}, "top_directions"),
        ({"n_directions": 4, "top_directions": 2, "version": "v1"}, "top_directions"),
        ({"version": "v3"}, "version"),
        ({"scale_by_std": 1}, "scale_by_std"),
    ],
)
def test_invalid_parameters_name_the_parameter(kwargs, param):
    with pytest.raises(evograd.ParameterError, match=f"'{param}'"):
        ARS(x0=np.zeros(3), **kwargs)


def test_registered():
    assert isinstance(evograd.make("ars", x0=np.zeros(2), version="brs"), ARS)


# ------------------------------------------------------------------ the vocabulary: popsize, lr, aliases
def _trace(opt, gens=8):
    out = []
    for _ in range(gens):
        X = opt.ask()
        out.append(X.copy())
        opt.tell(rosenbrock_rows(X))
    return out


def rosenbrock_rows(X):
    return np.sum(100.0 * (X[:, 1:] - X[:, :-1] ** 2) ** 2 + (1 - X[:, :-1]) ** 2, axis=1)


@pytest.mark.parametrize("k", [1, 3, 8])
def test_n_directions_alias_equals_twice_the_popsize_bit_for_bit(k):
    kw = {"x0": np.full(4, 1.5), "seed": 11}
    a, b = ARS(n_directions=k, **kw), ARS(popsize=2 * k, **kw)
    assert a.popsize == b.popsize == 2 * k and a.n_directions == b.n_directions == k
    assert a.top_directions == b.top_directions
    for Xa, Xb in zip(_trace(a), _trace(b)):
        np.testing.assert_array_equal(Xa, Xb)
    np.testing.assert_array_equal(a.center, b.center)
    assert evograd.serialization.dumps(a.state_dict()) == evograd.serialization.dumps(b.state_dict())
    # both given in agreement is fine; in disagreement, an error naming the alias
    assert ARS(popsize=2 * k, n_directions=k, x0=np.zeros(2)).popsize == 2 * k
    with pytest.raises(evograd.ParameterError, match="'n_directions'.*popsize = 2 x n_directions"):
        ARS(popsize=2 * k + 2, n_directions=k, x0=np.zeros(2))


def test_step_size_is_deprecated_for_lr_and_means_the_same():
    kw = {"x0": np.full(3, 0.5), "popsize": 8, "seed": 4}
    with pytest.deprecated_call(match="'step_size' parameter of ARS.*now called 'lr'"):
        old = evograd.make("ars", step_size=0.07, **kw)
    new = evograd.make("ars", lr=0.07, **kw)
    assert old.lr == 0.07
    for Xa, Xb in zip(_trace(old), _trace(new)):
        np.testing.assert_array_equal(Xa, Xb)
    with pytest.deprecated_call(match="'step_size' attribute of ARS"):
        assert old.step_size == 0.07
    with pytest.raises(evograd.ParameterError, match="'step_size'.*old name of 'lr'.*not both"):
        ARS(step_size=0.1, lr=0.2, **kw)
