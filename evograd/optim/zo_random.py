"""Random-direction gradient estimators: SPSA and MeZO (two-point), RGE (multi-point), ZO-signSGD.

One estimator, four sets of defaults. Each step draws q directions u_i (seeds from the optimizer's stream;
Gaussian, Rademacher or uniform on the sphere of radius sqrt(k), all with E[u u^T] = I) and estimates

    central: g = (1/q) sum_i [f(x + mu u_i) - f(x - mu u_i)] / (2 mu) u_i      (2q evaluations)
    forward: g = (1/q) sum_i [f(x + mu u_i) - f(x)] / mu u_i                   (q + 1 evaluations)

which is unbiased for the gradient of the Gaussian (or sphere) smoothing of f, and for grad f itself up to
O(mu^2) (exactly, on a quadratic, for these symmetric distributions). Its total variance is about
(k + 1) |grad f|^2 / q for Gaussian directions and (k - 1) |grad f|^2 / q for Rademacher and sphere ones (k
unmasked coordinates): the step size must shrink like q / k. docs/zeroth_order.md has the references.

The asked candidates are the center plus `SeededCandidates` rows (Gaussian and sphere directions: an evaluator
ships the seeds to workers, not rows) or rows built on demand from the seeds (Rademacher). `tell` regenerates
each direction from its seed into one buffer: the optimizer never holds a (q, dim) matrix.
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np

from ..core.candidates import Candidates, SeededCandidates, draw_seeds
from ..core.noise import noise
from ..core.validation import ParameterError, check_choice, check_float, check_int, check_memory
from .base import named
from .zo_base import DIRECTIONS, RowsOnDemand, ZerothOrder, direction, finite_mean

DIFFERENCES = ("central", "forward")


def resolve_q(q: Any, popsize: Any, difference: str, default: int, owner: str) -> int:
    """Directions per step from `q` (the papers' name) or `popsize` (evaluations per step, the protocol's):
    popsize = 2q for central differences, q + 1 for forward ones. Giving both, they must agree."""
    if q is not None:
        q = check_int(q, "q", owner, low=1)
    if popsize is None:
        return default if q is None else q
    central = difference == "central"
    popsize = check_int(popsize, "popsize", owner, low=2)
    if central and popsize % 2:
        raise ParameterError(f"The 'popsize' parameter of {owner} must be an even int >= 2 with "
                             f"difference='central' (2 evaluations per direction). Got {popsize!r} instead.")
    implied = popsize // 2 if central else popsize - 1
    if q is not None and q != implied:
        raise ParameterError(f"The 'q' and 'popsize' parameters of {owner} disagree: popsize={popsize} means "
                             f"q={implied} with difference={difference!r}. Got q={q} instead; give one of them.")
    return implied


class RademacherRows(RowsOnDemand):
    """Row r is center + sign[r] * mu * u(seeds[direction[r]]) with Rademacher u (zero on masked coordinates)."""

    kind = "rademacher"

    def __init__(self, center, mu, seeds, direction_of_row, sign, mask):
        self.center, self.mu, self.seeds, self.mask = center, mu, seeds, mask
        self.direction_of_row, self.sign = direction_of_row, sign

    def __len__(self) -> int:
        return self.sign.shape[0]

    @property
    def dim(self) -> int:
        return self.center.shape[0]

    def take(self, idx) -> np.ndarray:
        idx = np.asarray(idx, dtype=np.int64)
        out = np.empty((len(idx), self.dim))
        for r, i in enumerate(idx):
            direction(int(self.seeds[self.direction_of_row[i]]), self.dim, "rademacher", self.mask, out=out[r])
            out[r] *= self.sign[i] * self.mu
            out[r] += self.center
        return out


def random_candidates(center: np.ndarray, mu: float, seeds: np.ndarray, difference: str, kind: str,
                      mask: np.ndarray | None) -> Candidates:
    """The rows of one step: x + mu u_i and x - mu u_i (central), or x then x + mu u_i (forward)."""
    q = len(seeds)
    if difference == "central":
        rows, sign = np.repeat(np.arange(q), 2), np.tile([1.0, -1.0], q)
    else:
        rows, sign = np.concatenate([[0], np.arange(q)]), np.concatenate([[0.0], np.ones(q)])
    if kind == "rademacher":
        return RademacherRows(center, mu, seeds, rows, sign, mask)
    if kind == "sphere":  # u = sqrt(k) z / |z| on the unmasked coordinates: the scale rides on each row's sign
        sign = sign * sphere_scales(seeds, center.shape[0], mask)[rows]
    sigma = mu if mask is None else mu * mask  # zero on masked coordinates: they are never perturbed
    return SeededCandidates(center, sigma, seeds, rows, sign)


def sphere_scales(seeds: np.ndarray, dim: int, mask: np.ndarray | None) -> np.ndarray:
    """sqrt(k) / |z_i| for each seed's Gaussian z over the k unmasked coordinates (one buffer of dim)."""
    z, out = np.empty(dim), np.empty(len(seeds))
    k = dim if mask is None else int(mask.sum())
    for i, s in enumerate(seeds):
        noise(int(s), dim, "rng", out=z)
        out[i] = math.sqrt(k) / np.linalg.norm(z if mask is None else z[mask])
    return out


class RandomDirections(ZerothOrder):
    """The random-direction estimator behind spsa, mezo, rge and zo_signsgd (they differ in their defaults).

    Parameters
    ----------
    x0 : array (dim,)
        Initial point.
    lr : float > 0
        Step size of the update rule.
    mu : float > 0
        Smoothing radius: the points are x +/- mu u with E[u u^T] = I, so |mu u| is about mu sqrt(k).
        Too small and rounding (or noise in f) dominates the differences; too large and the estimate is that
        of a smoothed f. 1e-3 suits parameters of order 1 to 0.01 (benchmark functions, networks: MeZO's eps).
    q : int >= 1 or None
        Directions averaged per step (None: the class default); the variance falls like 1/q.
    popsize : int or None
        Evaluations per step instead of q: 2q (central) or q + 1 (forward). Give one of q and popsize.
    difference : {"central", "forward"}
        Two evaluations per direction, or one per direction plus f(x) once.
    directions : {"gaussian", "rademacher", "sphere"}
        N(0, I); +/-1 entries; uniform on the sphere of radius sqrt(k). Rademacher and sphere directions give
        a little less variance ((k - 1) against (k + 1) |grad f|^2 per direction).
    update : {"sgd", "momentum", "adam", "sign"}
        How the estimate moves the center (`evograd.optim.updates`; "sign" steps lr * sign(g)).
    momentum : float in [0, 1), default 0.9
        Heavy-ball coefficient of update="momentum" (unused by the other rules).
    mask : bool array (dim,) or None
        Coordinates that take part (True); the others are never perturbed nor updated.
    seed, maximize
        See `Optimizer`.
    """

    default_q = 1

    def __init__(self, x0: Any, lr: float, mu: float, q: int | None, popsize: int | None, difference: str,
                 directions: str, update: str, momentum: float, mask: Any, seed: int | None, maximize: bool):
        owner = type(self).__name__
        self.mu = check_float(mu, "mu", owner, low=0.0, low_inclusive=False)
        self.difference = check_choice(difference, "difference", owner, DIFFERENCES)
        self.directions = check_choice(directions, "directions", owner, DIRECTIONS)
        self.q = resolve_q(q, popsize, self.difference, self.default_q, owner)
        super().__init__(x0, lr, update, momentum, mask, seed, maximize)
        check_memory(self.popsize, "q" if popsize is None else "popsize", owner, self.popsize * self.dim,
                     f"evaluations per step x dim = {self.popsize} x {self.dim} (the evaluator's rows)")

    @property
    def popsize(self) -> int:
        return 2 * self.q if self.difference == "central" else self.q + 1

    def _asked_now(self) -> dict[str, Any]:
        return {"seeds": draw_seeds(self.rng, self.q)}

    def _candidates(self, asked: dict[str, Any]) -> Candidates:
        seeds = np.asarray(asked["seeds"], dtype=np.int64)
        return random_candidates(self._center, self.mu, seeds, self.difference, self.directions, self.mask)

    def _estimate(self, f: np.ndarray, grads: np.ndarray | None) -> np.ndarray:
        if self.difference == "central":
            with np.errstate(invalid="ignore"):  # inf - inf: a dropped direction
                w = (f[0::2] - f[1::2]) / (2.0 * self.mu)
        else:
            w = (f[1:] - f[0]) / self.mu if math.isfinite(f[0]) else np.full(self.q, np.nan)
        seeds = np.asarray(self._asked["seeds"], dtype=np.int64)
        return finite_mean(w, seeds, self.directions, self.mask, self.dim)


@named("spsa")
class SPSA(RandomDirections):
    """SPSA (Spall 1992), two-point: central differences along q = 2 Gaussian directions, Adam on the estimate.

    Defaults: lr 0.01, mu 1e-3, q 2, central, Gaussian, update "adam" (a per-coordinate step of about lr,
    whatever the estimate's k-fold variance: robust on functions of parameters of order 1). For networks,
    lower lr (1e-4 to 1e-3), or use `mezo`. q = 1 is the classic two-point SPSA (2 evaluations per step);
    the default of 2 keeps a step going when one of its evaluations fails (NaN), at the same variance per
    evaluation. Parameters: see `RandomDirections`.
    """

    default_q = 2

    def __init__(self, x0: Any = None, lr: float = 0.01, mu: float = 1e-3, q: int | None = None,
                 popsize: int | None = None, difference: str = "central", directions: str = "gaussian",
                 update: str = "adam", momentum: float = 0.9, mask: Any = None, seed: int | None = None,
                 maximize: bool = False):
        super().__init__(x0, lr, mu, q, popsize, difference, directions, update, momentum, mask, seed, maximize)


@named("mezo")
class MeZO(RandomDirections):
    """MeZO (Malladi et al. 2023): SPSA with MeZO's settings, mu (its eps) 1e-3, central, Gaussian z.

    MeZO steps with SGD at lr 1e-6 to 1e-7 on language models; an SGD step's size is lr |g| with |g| about
    sqrt(k) |grad f|, so its lr must be tuned per problem. The default here is MeZO-Adam (the paper's
    appendix variant), lr 1e-3, which needs no such tuning; pass update="sgd" (and a small lr) for the
    paper's main method. MeZO draws q = 1 direction per step; the default here is 2, as for spsa (a failed
    evaluation does not cost the whole step): pass q=1 for the paper's. The in-place, copy-free version for
    torch modules is `evograd.zo`'s. Parameters: see `RandomDirections`.
    """

    default_q = 2

    def __init__(self, x0: Any = None, lr: float = 1e-3, mu: float = 1e-3, q: int | None = None,
                 popsize: int | None = None, difference: str = "central", directions: str = "gaussian",
                 update: str = "adam", momentum: float = 0.9, mask: Any = None, seed: int | None = None,
                 maximize: bool = False):
        super().__init__(x0, lr, mu, q, popsize, difference, directions, update, momentum, mask, seed, maximize)


@named("rge")
class RGE(RandomDirections):
    """Randomized gradient estimator (Nesterov and Spokoiny 2017; DeepZero's RGE): forward differences against
    f(x) along q = 10 Gaussian directions per step (11 evaluations), Adam on the estimate.

    Defaults: lr 0.01, mu 1e-3, q 10, forward, Gaussian, update "adam". q + 1 evaluations buy a variance of
    (k + 1)/q |grad f|^2, where cge pays 2k for none; prefer rge once k is more than a few dozen.
    Parameters: see `RandomDirections`.
    """

    default_q = 10

    def __init__(self, x0: Any = None, lr: float = 0.01, mu: float = 1e-3, q: int | None = None,
                 popsize: int | None = None, difference: str = "forward", directions: str = "gaussian",
                 update: str = "adam", momentum: float = 0.9, mask: Any = None, seed: int | None = None,
                 maximize: bool = False):
        super().__init__(x0, lr, mu, q, popsize, difference, directions, update, momentum, mask, seed, maximize)


@named("zo_signsgd")
class ZOSignSGD(RandomDirections):
    """ZO-signSGD (Liu et al. 2019): x <- x - lr sign(g) with g an RGE estimate over q = 10 directions
    uniform on the sphere, forward differences.

    Defaults: lr 0.01, mu 1e-3, q 10, forward, sphere, update "sign". The sign discards the estimate's scale
    (robust to its heavy tails and to badly scaled f) at the price of a bias, and a fixed lr leaves the iterate
    jittering at a distance of about lr per coordinate: decay lr (the `lr` attribute) to converge further.
    Parameters: see `RandomDirections`.
    """

    default_q = 10

    def __init__(self, x0: Any = None, lr: float = 0.01, mu: float = 1e-3, q: int | None = None,
                 popsize: int | None = None, difference: str = "forward", directions: str = "sphere",
                 update: str = "sign", momentum: float = 0.9, mask: Any = None, seed: int | None = None,
                 maximize: bool = False):
        super().__init__(x0, lr, mu, q, popsize, difference, directions, update, momentum, mask, seed, maximize)
