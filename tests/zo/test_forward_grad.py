"""Forward gradients (Baydin et al. 2022) against the true gradient of a quadratic.

The function-level estimate (torch.func.jvp) and the optimizer's (jvp of fn, or the told gradient projected on
the same seeded directions) are unbiased within a few measured standard errors, have the total variance theory
gives for Gaussian directions ((k + 1) |g|^2 / q) and respect masks.
"""
from __future__ import annotations

import functools
import math
import warnings

import numpy as np
import pytest

import evograd as eg
from evograd.zo.forward_grad import ForwardGrad, forward_gradient, value_and_forward_gradient

torch = pytest.importorskip("torch")

D = 6
_rng = np.random.default_rng(7)
_A = _rng.normal(size=(D, D))
H = _A @ _A.T / D + np.eye(D)
B = _rng.normal(size=D)
X0 = _rng.normal(size=D)
GRAD = H @ X0 + B
MASK = np.array([True, True, False, True, False, True])
Z = 4.5  # standard errors allowed per coordinate


def quad(x):
    """0.5 x'Hx + b'x for a numpy (..., D) array or a torch tensor of shape (D,)."""
    if isinstance(x, torch.Tensor):
        Ht, Bt = torch.as_tensor(H, dtype=x.dtype), torch.as_tensor(B, dtype=x.dtype)
        return 0.5 * (x @ Ht @ x) + Bt @ x
    x = np.asarray(x, dtype=np.float64)
    return 0.5 * np.einsum("...i,ij,...j->...", x, H, x) + x @ B


def bias_z(est: np.ndarray, true: np.ndarray) -> np.ndarray:
    se = est.std(axis=0, ddof=1) / math.sqrt(len(est))
    diff = est.mean(axis=0) - true
    return np.where(se > 0, diff / np.where(se > 0, se, 1.0), np.where(diff == 0, 0.0, np.inf))


def total_variance(est: np.ndarray) -> tuple[float, float]:
    sq = ((est - est.mean(axis=0)) ** 2).sum(axis=1)
    return float(sq.mean() * len(est) / (len(est) - 1)), float(sq.std(ddof=1) / math.sqrt(len(est)))


@functools.lru_cache(maxsize=None)
def jvp_draws(n: int, q: int, seed: int, mask: tuple | None = None) -> np.ndarray:
    """n forward-gradient estimates at X0 from one seeded torch generator."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.tensor(X0)
    m = None if mask is None else torch.tensor(mask)
    return np.stack([forward_gradient(quad, x, q, gen, m).numpy() for _ in range(n)])


def optimizer_draws(n: int, q: int, seed0: int, mask=None) -> np.ndarray:
    """The first estimate of n optimizers told the exact gradient: (g . v) v over their seeded directions."""
    out = np.empty((n, D))
    for i in range(n):
        opt = ForwardGrad(x0=X0, q=q, mask=mask, seed=seed0 + i)
        X = opt.ask()
        opt.tell(quad(X), grads=GRAD[None, :])
        out[i] = opt.grad
    return out


@pytest.mark.parametrize("mask", [None, MASK], ids=["dense", "masked"])
def test_jvp_estimate_is_unbiased_with_gaussian_variance(mask):
    est = jvp_draws(1000 if mask is None else 500, 1, 0 if mask is None else 1, None if mask is None else tuple(mask))
    keep = np.ones(D, dtype=bool) if mask is None else mask
    true = np.where(keep, GRAD, 0.0)
    assert np.all(est[:, ~keep] == 0.0)
    assert np.all(np.abs(bias_z(est, true)) <= Z)
    var, se = total_variance(est)
    expected = (int(keep.sum()) + 1) * float(true @ true)
    assert abs(var - expected) <= Z * se, (var, expected, se)


def test_jvp_estimate_variance_falls_like_one_over_q():
    v1, se1 = total_variance(jvp_draws(1000, 1, 0))
    v8, se8 = total_variance(jvp_draws(200, 8, 3))
    ratio = v1 / v8
    assert abs(ratio - 8.0) <= Z * ratio * math.hypot(se1 / v1, se8 / v8), ratio


def test_optimizer_estimate_is_unbiased_and_variance_falls_like_one_over_q():
    e1, e8 = optimizer_draws(2000, 1, 0), optimizer_draws(2000, 8, 100_000)
    for est in (e1, e8):
        assert np.all(np.abs(bias_z(est, GRAD)) <= Z)
    (v1, se1), (v8, se8) = total_variance(e1), total_variance(e8)
    assert abs(v1 - (D + 1) * GRAD @ GRAD) <= Z * se1
    ratio = v1 / v8
    assert abs(ratio - 8.0) <= Z * ratio * math.hypot(se1 / v1, se8 / v8), ratio
    assert 6.0 < ratio < 10.5


def test_fn_mode_runs_jvps_and_matches_the_told_gradient_on_the_same_directions():
    a = eg.make("forward_grad", x0=X0, q=3, seed=5, fn=quad)
    b = eg.make("forward_grad", x0=X0, q=3, seed=5)
    assert not a.needs_grad and b.needs_grad
    for _ in range(5):
        Xa, Xb = a.ask(), b.ask()
        np.testing.assert_allclose(Xa, Xb, rtol=1e-12, atol=1e-12)  # jvp and numpy round differently
        a.tell(quad(Xa))  # values only: the optimizer differentiates fn forward-mode itself
        b.tell(quad(Xb), grads=(H @ Xb[0] + B)[None, :])
        np.testing.assert_allclose(a.grad, b.grad, rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(a.center, b.center, rtol=1e-12, atol=1e-12)


def test_value_and_forward_gradient_on_a_dict_of_tensors():
    x = {"w": torch.tensor(X0[:4]).reshape(2, 2), "b": torch.tensor(X0[4:])}
    mask = {"w": torch.tensor([[True, False], [True, True]]), "b": torch.tensor([False, True])}
    fn = lambda p: quad(torch.cat([p["w"].reshape(-1), p["b"]]))
    value, g = value_and_forward_gradient(fn, x, q=4, generator=torch.Generator().manual_seed(0), mask=mask)
    assert math.isclose(float(value), float(quad(X0)), rel_tol=1e-12)
    assert set(g) == {"w", "b"} and g["w"].shape == (2, 2)
    assert g["w"][0, 1] == 0 and g["b"][0] == 0 and g["w"][0, 0] != 0


def masked_minimum() -> float:
    """min f over the unmasked coordinates, the masked ones held at X0."""
    free, x = np.flatnonzero(MASK), X0.copy()
    x[free] = np.linalg.solve(H[np.ix_(free, free)], -(B[free] + H[np.ix_(free, ~MASK)] @ X0[~MASK]))
    return float(quad(x))


@pytest.mark.parametrize("with_fn", [True, False], ids=["fn", "grads"])
def test_converges_with_minimize_and_leaves_masked_coordinates_alone(with_fn):
    # defaults reach the target in 540 to 690 evaluations at seeds 0 to 2
    fmin, f0 = masked_minimum(), float(quad(X0))
    for seed in (0, 1):
        opt = eg.make("forward_grad", x0=X0, seed=seed, mask=MASK, **({"fn": quad} if with_fn else {}))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            res = eg.minimize(quad, opt, max_evals=5000, target=fmin + 1e-3 * (f0 - fmin))
        assert res.stop_reason == "target", (seed, res.value, fmin)
        assert np.array_equal(opt.center[~MASK], X0[~MASK])


def test_maximize_in_fn_mode_climbs():
    opt = eg.make("forward_grad", x0=X0, seed=0, fn=lambda x: -quad(x), maximize=True)
    for _ in range(300):
        X = opt.ask()
        opt.tell(-quad(X))
    assert quad(opt.center) < quad(X0) - 1.0


def test_errors_name_the_parameter():
    with pytest.raises(eg.ParameterError, match="'fn' parameter of ForwardGrad must be None or a callable"):
        eg.make("forward_grad", x0=X0, fn="quad")
    with pytest.raises(eg.ParameterError, match="'q' parameter of ForwardGrad must be an int >= 1"):
        eg.make("forward_grad", x0=X0, q=0)
    with pytest.raises(eg.ParameterError, match="'mask' parameter of ForwardGrad"):
        eg.make("forward_grad", x0=X0, mask=np.ones(3, dtype=bool))
    with pytest.raises(eg.ParameterError, match="'q' parameter of forward_gradient"):
        forward_gradient(quad, torch.tensor(X0), q=0)
    with pytest.raises(eg.ParameterError, match="fn must return a scalar tensor"):
        forward_gradient(lambda x: x * 2, torch.tensor(X0))
    opt = eg.make("forward_grad", x0=X0, fn=lambda x: x * 2)
    with pytest.raises(eg.ParameterError, match="fn must return a scalar tensor"):
        opt.tell(opt.ask()[:, 0])
