"""The zeroth-order estimators (spsa, mezo, rge, zo_signsgd, cge) against the true gradient of a quadratic.

f(x) = 0.5 x'Hx + b'x has gradient Hx + b. Random-direction estimates are checked as random variables over many
optimizers seeded apart: their mean lies within a few standard errors (measured, not assumed) of the gradient,
their total variance matches theory ((k + 1) |g|^2 per Gaussian direction, (k - 1) |g|^2 per Rademacher or
sphere one), and it falls like 1/q. cge is checked against the gradient directly (exact on a quadratic, and
its error on a cubic term is the O(mu^2) the Taylor expansion predicts).
"""
from __future__ import annotations

import functools
import math
import warnings

import numpy as np
import pytest

import evograd as eg
from evograd.core.serialization import dumps, loads
from evograd.optim.zo_base import direction

D = 6
_rng = np.random.default_rng(2024)
_A = _rng.normal(size=(D, D))
H = _A @ _A.T / D + np.eye(D)
B = _rng.normal(size=D)
X0 = _rng.normal(size=D)
GRAD = H @ X0 + B
MASK = np.array([True, False, True, True, False, True])
N = 2000  # draws per estimate
Z = 4.5  # standard errors allowed (per coordinate: about 7e-6 two-sided for a Gaussian mean)
RANDOM = ["spsa", "mezo", "rge", "zo_signsgd"]
NUMPY_ZO = RANDOM + ["cge"]


def quad(X):
    X = np.asarray(X, dtype=np.float64)
    return 0.5 * np.einsum("...i,ij,...j->...", X, H, X) + X @ B


def f_min() -> float:
    return float(quad(-np.linalg.solve(H, B)))


@functools.lru_cache(maxsize=None)
def draws(name: str, seed0: int, n: int = N, **kw) -> np.ndarray:
    """The first estimate of n optimizers seeded seed0, seed0 + 1, ...: independent draws at X0."""
    kw = {k: (np.array(v) if isinstance(v, tuple) else v) for k, v in kw.items()}
    out = np.empty((n, D))
    cls = eg.registry.get(name)
    for i in range(n):
        opt = cls(x0=X0, seed=seed0 + i, **kw)
        X = opt.ask()
        opt.tell(quad(X))
        out[i] = opt.grad
    return out


def bias_z(est: np.ndarray, true: np.ndarray) -> np.ndarray:
    """(mean - true) / standard error, per coordinate (coordinates with no spread must be exact)."""
    se = est.std(axis=0, ddof=1) / math.sqrt(len(est))
    diff = est.mean(axis=0) - true
    return np.where(se > 0, diff / np.where(se > 0, se, 1.0), np.where(diff == 0, 0.0, np.inf))


def total_variance(est: np.ndarray) -> tuple[float, float]:
    """tr Cov of the estimate and its standard error (from the spread of |e - mean|^2 over the draws)."""
    sq = ((est - est.mean(axis=0)) ** 2).sum(axis=1)
    return float(sq.mean() * len(est) / (len(est) - 1)), float(sq.std(ddof=1) / math.sqrt(len(est)))


# name, options (tuples stand for arrays so the draws can be cached), trace of Cov per direction / |g_k|^2
CASES = [
    ("spsa", {}, "k+1"),
    ("spsa", {"directions": "rademacher"}, "k-1"),
    ("spsa", {"difference": "forward"}, "k+1"),
    ("mezo", {}, "k+1"),
    ("rge", {}, "k+1"),
    ("rge", {"directions": "sphere"}, "k-1"),
    ("rge", {"directions": "sphere", "mask": tuple(MASK)}, "k-1"),
    ("zo_signsgd", {}, "k-1"),
]
IDS = [f"{n}-{'-'.join(f'{k}={v}' for k, v in o.items() if k != 'mask')}{'-masked' if 'mask' in o else ''}"
       for n, o, _ in CASES]


@pytest.mark.parametrize("name, options, theory", CASES, ids=IDS)
def test_random_direction_estimates_are_unbiased_with_the_variance_theory_gives(name, options, theory):
    est = draws(name, 10_000 * CASES.index((name, options, theory)), q=1, **options)
    mask = np.array(options.get("mask", (True,) * D))
    true = np.where(mask, GRAD, 0.0)
    assert np.all(est[:, ~mask] == 0.0)  # masked coordinates: no estimate at all
    z = bias_z(est, true)
    assert np.all(np.abs(z) <= Z), f"bias in standard errors: {z}"
    k = int(mask.sum())
    expected = (k + 1 if theory == "k+1" else k - 1) * float(true @ true)
    var, se = total_variance(est)
    assert abs(var - expected) <= Z * se, (var, expected, se)


@pytest.mark.parametrize("name, options", [("spsa", {}), ("spsa", {"directions": "rademacher"}),
                                           ("rge", {"directions": "sphere"})])
def test_variance_falls_like_one_over_q(name, options):
    base = 10_000 * CASES.index(next(c for c in CASES if c[:2] == (name, options)))
    v1, se1 = total_variance(draws(name, base, q=1, **options))
    v8, se8 = total_variance(draws(name, 500_000 + base, q=8, **options))
    ratio = v1 / v8
    se_ratio = ratio * math.hypot(se1 / v1, se8 / v8)  # delta method
    assert abs(ratio - 8.0) <= Z * se_ratio, (ratio, se_ratio)
    assert 6.0 < ratio < 10.5


# ------------------------------------------------------------------ cge
def test_cge_is_exact_on_a_quadratic_and_costs_two_evaluations_per_unmasked_coordinate():
    opt = eg.make("cge", x0=X0)
    X = opt.ask()
    assert X.shape == (2 * D, D)
    opt.tell(quad(X))
    np.testing.assert_allclose(opt.grad, GRAD, rtol=1e-8, atol=1e-9)
    masked = eg.make("cge", x0=X0, mask=MASK)
    assert masked.popsize == 2 * int(MASK.sum())
    res = eg.minimize(quad, masked, max_generations=5)
    assert res.evals == 5 * 2 * int(MASK.sum())
    assert np.array_equal(masked.center[~MASK], X0[~MASK])


@pytest.mark.parametrize("mu", [1e-2, 5e-3, 2.5e-3])
def test_cge_error_is_the_taylor_o_mu_squared_term(mu):
    # f = quad + sum sin(3 x): the central difference errs by mu^2 / 6 * f''' = -mu^2 * 27 cos(3 x) / 6
    fn = lambda X: quad(X) + np.sin(3.0 * np.asarray(X)).sum(axis=-1)
    opt = eg.make("cge", x0=X0, mu=mu)
    X = opt.ask()
    opt.tell(fn(X))
    err = opt.grad - (GRAD + 3.0 * np.cos(3.0 * X0))
    predicted = -(mu**2) * 27.0 * np.cos(3.0 * X0) / 6.0
    np.testing.assert_allclose(err, predicted, rtol=0, atol=0.01 * mu**2 * 27.0 / 6.0 + 1e-9)


def test_cge_random_blocks_are_unbiased():
    est = draws("cge", 0, popsize=4)  # 2 of 6 coordinates per step, scaled by 3
    assert np.all(np.count_nonzero(est, axis=1) <= 2)
    assert np.all(np.abs(bias_z(est, GRAD)) <= Z)


# ------------------------------------------------------------------ masks, seeds, state
@pytest.mark.parametrize("name, options", [(n, {}) for n in NUMPY_ZO] + [("spsa", {"directions": "rademacher"}),
                                                                        ("rge", {"update": "momentum"})])
def test_masked_coordinates_are_never_perturbed_nor_updated(name, options):
    opt = eg.make(name, x0=X0, mask=MASK, seed=1, **options)
    for _ in range(200):
        X = opt.ask()
        assert np.array_equal(X[:, ~MASK], np.broadcast_to(X0[~MASK], X[:, ~MASK].shape))
        opt.tell(quad(X))
    assert np.array_equal(opt.center[~MASK], X0[~MASK])
    assert np.all(opt.center[MASK] != X0[MASK])
    assert quad(opt.center) < quad(X0)


def test_asks_are_seeds_not_dense_matrices():
    opt = eg.make("spsa", x0=np.zeros(1000), q=4, seed=0)
    cand = opt.ask_candidates()
    assert isinstance(cand, eg.SeededCandidates) and cand.seeds.shape == (4,)
    shipped = cand.slice_state(0, len(cand))  # what an evaluator sends a worker
    assert all(np.ndim(v) <= 1 for v in shipped.values())
    state = opt.state_dict()
    assert state["pending"] is None and state["algorithm"]["asked"]["seeds"].shape == (4,)
    # the rows are center + mu u_i / - mu u_i with u_i regenerated from the seeds
    u0 = direction(int(cand.seeds[0]), 1000)
    np.testing.assert_allclose(opt.ask()[:2], np.stack([1e-3 * u0, -1e-3 * u0]), rtol=0, atol=1e-15)


STATE_CASES = [("spsa", {"directions": "rademacher", "update": "momentum"}), ("rge", {"mask": MASK}),
               ("zo_signsgd", {}), ("cge", {"popsize": 4, "update": "sgd"}), ("mezo", {"update": "sign"})]


@pytest.mark.parametrize("name, options", STATE_CASES, ids=[c[0] for c in STATE_CASES])
def test_state_round_trip_reproduces_the_next_asks_bit_for_bit(name, options):
    a = eg.make(name, x0=X0, seed=3, **options)
    for _ in range(4):
        X = a.ask()
        a.tell(quad(X))
    pending = a.ask()  # saved between ask and tell
    b = eg.make(name, x0=X0, seed=11, **options)
    b.load_state_dict(loads(dumps(a.state_dict())))
    assert np.array_equal(b.ask(), pending)
    for _ in range(3):
        Xa, Xb = a.ask(), b.ask()
        assert np.array_equal(Xa, Xb)
        a.tell(quad(Xa))
        b.tell(quad(Xb))
    assert np.array_equal(a.center, b.center) and a.best.value == b.best.value


# ------------------------------------------------------------------ driving them
# mezo's default lr (1e-3, network scale) is slow here: MeZO's own SGD with an lr for this scale instead
CONVERGE = [(n, {}) for n in ("spsa", "rge", "zo_signsgd", "cge")] + [("mezo", {"update": "sgd", "lr": 0.02})]


@pytest.mark.parametrize("name, options", CONVERGE, ids=[c[0] for c in CONVERGE])
def test_they_converge_on_a_quadratic_with_minimize(name, options):
    # evaluations used at seeds 0, 1: spsa ~3,100, rge ~5,900, zo_signsgd ~2,500, cge ~5,500, mezo (sgd) ~500
    f0, fmin = float(quad(X0)), f_min()
    for seed in (0, 1):
        res = eg.minimize(quad, eg.make(name, x0=X0, seed=seed, **options), max_evals=20_000, vectorized=True,
                          target=fmin + 1e-3 * (f0 - fmin))
        assert res.stop_reason == "target", (name, seed, res.value, fmin)


def test_nonfinite_values_drop_their_directions():
    opt = eg.make("spsa", x0=X0, q=3, update="sgd", lr=1e-300, seed=0)  # lr: the center stays at X0
    X = opt.ask()
    values = quad(X)
    values[2] = np.nan  # direction 1's pair
    seeds = opt.state_dict()["algorithm"]["asked"]["seeds"]
    with pytest.warns(eg.NonFiniteWarning):
        opt.tell(values)
    w = (values[0::2] - values[1::2]) / 2e-3
    expected = (w[0] * direction(int(seeds[0]), D) + w[2] * direction(int(seeds[2]), D)) / 2
    np.testing.assert_allclose(opt.grad, expected, rtol=1e-12)
    fwd = eg.make("rge", x0=X0, seed=0)
    X = fwd.ask()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fwd.tell(np.r_[np.nan, quad(X[1:])])  # no f(x): no difference can be formed, no step
    assert np.array_equal(fwd.center, X0) and not fwd.grad.any()


def test_zo_signsgd_steps_lr_along_the_sign_of_its_estimate():
    opt = eg.make("zo_signsgd", x0=X0, lr=0.05, seed=4)
    X = opt.ask()
    opt.tell(quad(X))
    np.testing.assert_allclose(opt.center, X0 - 0.05 * np.sign(opt.grad), rtol=0, atol=1e-15)


def test_q_and_popsize_name_the_same_thing():
    assert eg.make("spsa", x0=X0, popsize=6).q == 3 and eg.make("rge", x0=X0, popsize=6).q == 5
    assert eg.make("spsa", x0=X0, q=3, popsize=6).popsize == 6


BAD = [
    ("spsa", {"mu": 0.0}, "'mu' parameter of SPSA must be a float > 0"),
    ("rge", {"q": 0}, "'q' parameter of RGE must be an int >= 1"),
    ("spsa", {"popsize": 5}, "'popsize' parameter of SPSA must be an even int"),
    ("spsa", {"q": 2, "popsize": 6}, "'q' and 'popsize' parameters of SPSA disagree"),
    ("mezo", {"update": "rmsprop"}, "'update' parameter of MeZO must be one of 'sgd', 'momentum', 'adam', 'sign'"),
    ("rge", {"directions": "uniform"}, "'directions' parameter of RGE must be one of"),
    ("spsa", {"difference": "backward"}, "'difference' parameter of SPSA must be one of 'central', 'forward'"),
    ("zo_signsgd", {"lr": 0.0}, "'lr' parameter of ZOSignSGD must be a float > 0"),
    ("spsa", {"momentum": 1.0}, "'momentum' parameter of SPSA must be a float"),
    ("cge", {"mask": np.array([1, 0, 1, 1, 0, 1])}, "'mask' parameter of CGE must be None or a bool array"),
    ("rge", {"mask": np.ones(5, dtype=bool)}, r"'mask' parameter of RGE must be None or a bool array of shape \(6,\)"),
    ("spsa", {"mask": np.zeros(D, dtype=bool)}, "'mask' parameter of SPSA must leave at least one"),
    ("cge", {"popsize": 14}, "'popsize' parameter of CGE must be None or an even int between 2 and 12"),
    ("cge", {"mu": -1e-3}, "'mu' parameter of CGE must be a float > 0"),
]


@pytest.mark.parametrize("name, kw, message", BAD, ids=[f"{n}-{next(iter(k))}" for n, k, _ in BAD])
def test_bad_hyperparameters_raise_naming_them(name, kw, message):
    with pytest.raises(eg.ParameterError, match=message):
        eg.make(name, x0=X0, **kw)
