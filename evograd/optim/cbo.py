"""Consensus-based optimization (CBO; Pinnau, Totzeck, Tse & Martin 2017), CBXpy's semantics.

Particles are pulled toward a consensus point, the softmin-weighted mean of their positions, and
shaken by noise proportional to their distance from it: far particles explore, particles near the
consensus settle. As alpha grows the consensus approaches the best particle (Laplace's principle),
so CBO behaves like a global, gradient-free, stochastic relaxation of gradient descent.

One generation is one Euler-Maruyama step: `ask` returns the particles whose values the consensus
needs (the current random batch, all particles by default), `tell` moves them.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ..core.validation import ParameterError, check_choice, check_float, check_int, check_memory
from .base import Optimizer, Renamed, named, renamed_arguments

# |coordinate| bound applied after every step (CBXpy's post-processing): a diverging particle (isotropic
# noise in high dimension does diverge) stays finite instead of poisoning the consensus with 0 * inf.
_MAX_ABS = 1e8
_ALPHA_MIN = 1e-5  # lower end of the ESS search (CBXpy's): keeps far-off particles out of the consensus
_min, _sum = np.minimum.reduce, np.add.reduce  # the bare ufunc reductions skip ndarray.min/sum's wrappers


@named("cbo")
class CBO(Optimizer):
    """Consensus-based optimization with anisotropic or isotropic diffusion and particle mini-batches.

    Step for every moving particle, with consensus c = sum_i w_i x_i / sum_i w_i, w_i = exp(-alpha f_i)
    (log-sum-exp stabilized; failed evaluations get weight 0):
        x_i <- x_i - drift * dt * (x_i - c) + diffusion * sqrt(dt) * D(x_i - c) xi_i,  xi_i ~ N(0, I).

    Particles, batch and popsize: `n_particles` (N) particles evolve; each generation asks `popsize` (M) of
    them, a random mini-batch, and their values make that step's consensus. M = N by default: every
    particle is asked every generation (plain CBO). So, as in every optimizer, `popsize` is the number of
    candidates one `ask` returns; `n_particles` is the paper's N, and given alone it is the same as
    `popsize` alone (both give M = N); M < N turns on mini-batches (Carrillo et al. 2021's random batches).

    Parameters
    ----------
    x0 : array (dim,) or (N, dim)
        An explicit initial particle set, or a center around which N particles are drawn from
        N(x0, sigma0^2 I).
    popsize : int >= 2 or None, default None
        M, particles asked per generation (the batch). None: all N.
    n_particles : int >= 2 or None, default None
        N, particles in all. None: the rows of an (N, dim) x0, else popsize when given, else 40 (CBXpy's
        d=20 Rastrigin setting).
    sigma0 : float, default 1.0
        The initial search scale: std of the initial particles around a center x0 (unused when x0 is a
        particle set).
    diffusion : float >= 0, default 10.1
        Diffusion strength (the papers' and CBXpy's sigma). The large value of CBXpy's d=20 setting is what
        lets anisotropic particles escape Rastrigin's local minima (its docs report 0/100 successes with 1,
        3 or 5).
    drift : float, default 1.0
        lambda, the pull toward the consensus.
    dt : float, default 0.01
        Euler-Maruyama time step (CBO's own name for its step size; the one exception to `lr`).
    alpha : float, default 30.0
        Initial inverse temperature of the weights (the whole run's value for "constant"). Scale-dependent:
        alpha * (spread of f) decides how greedy the consensus is.
    alpha_schedule : {"exponential", "ess", "constant"}, default "exponential"
        "exponential": alpha *= alpha_factor after each step, capped at alpha_max (CBXpy's default).
        "ess": before each consensus, alpha is set (bisection on log alpha in [1e-5, alpha_max]) so the
        effective sample size (sum w)^2 / sum w^2 of the batch equals eta * popsize (Carrillo et al.
        2022). CBXpy instead reuses the previous step's values, and its 15 linear bisection steps on
        [1e-5, 1e5] never go below alpha ~1.5. "constant": alpha fixed.
    alpha_factor : float, default 1.05
        Growth per step of the exponential schedule.
    alpha_max : float, default 1e5
        Cap of the exponential schedule and upper end of the ESS search.
    eta : float, default 0.5
        Target ESS fraction of the "ess" schedule.
    diffusion_type : {"anisotropic", "isotropic"}, default "anisotropic"
        D(v) = diag(v) (per coordinate, works independently of the dimension) or ||v|| (one scale per
        particle; needs diffusion^2 * dim * dt small, or particles diverge in high dimension).
    batch_mode : {"partial", "full"}, default "partial"
        With mini-batches: "partial", only the batch moves; "full", every particle moves toward the
        batch's consensus. Batches are consecutive slices of a random permutation, redrawn when fewer
        than popsize indices remain (CBXpy's "resample").
    seed, maximize
        See `Optimizer`.
    mask : bool array (dim,) or None, default None
        Coordinates to search; the others stay at x0 (every row of a particle set x0 must agree there).

    Renamed: `sigma` is now `diffusion` and `noise` is now `diffusion_type` (both raise an error naming the
    new name: `sigma0` is the search scale and `noise` the noise source in every optimizer);
    `batch_size` is now `popsize` (the old name works, with a DeprecationWarning).

    Defaults follow CBXpy's documented d=20 Rastrigin/Ackley configuration (anisotropic, diffusion 10.1,
    alpha=30 growing 1.05x per step, dt=0.01, N=40), which also solves sphere and Rosenbrock from a
    center; CBXpy's own library defaults (isotropic, sigma=5.1, alpha=1) fail in d=20.
    """

    allow_population_x0 = True
    renamed_parameters = {
        "sigma": Renamed("diffusion", keeps_working=False,
                         note="CBO's diffusion strength; sigma0 is the initial search scale in every optimizer"),
        "noise": Renamed("diffusion_type", keeps_working=False,
                         note="'anisotropic' or 'isotropic'; 'noise' names the noise source, 'rng' or 'table', "
                              "in the other optimizers"),
        "batch_size": Renamed("popsize", note="the particles asked per generation"),
    }

    def __init__(
        self,
        x0: Any = None,
        popsize: int | None = None,
        n_particles: int | None = None,
        sigma0: float = 1.0,
        diffusion: float = 10.1,
        drift: float = 1.0,
        dt: float = 0.01,
        alpha: float = 30.0,
        alpha_schedule: str = "exponential",
        alpha_factor: float = 1.05,
        alpha_max: float = 1e5,
        eta: float = 0.5,
        diffusion_type: str = "anisotropic",
        batch_mode: str = "partial",
        seed: int | None = None,
        maximize: bool = False,
        mask: Any = None,
        **renamed: Any,
    ):
        owner = type(self).__name__
        popsize = renamed_arguments(CBO, renamed, {"popsize": popsize})["popsize"]
        if popsize is not None:
            popsize = check_int(popsize, "popsize", owner, low=2)
        if n_particles is not None:
            n_particles = check_int(n_particles, "n_particles", owner, low=2)
        self.sigma0 = check_float(sigma0, "sigma0", owner, low=0.0, low_inclusive=False)
        self.diffusion = check_float(diffusion, "diffusion", owner, low=0.0)
        self.drift = check_float(drift, "drift", owner, low=0.0)
        self.dt = check_float(dt, "dt", owner, low=0.0, low_inclusive=False)
        self.alpha_max = check_float(alpha_max, "alpha_max", owner, low=0.0, low_inclusive=False)
        self.alpha0 = check_float(alpha, "alpha", owner, low=0.0, high=self.alpha_max, low_inclusive=False)
        self.alpha_schedule = check_choice(
            alpha_schedule, "alpha_schedule", owner, ("exponential", "ess", "constant")
        )
        self.alpha_factor = check_float(alpha_factor, "alpha_factor", owner, low=1.0)
        self.eta = check_float(eta, "eta", owner, low=0.0, high=1.0, low_inclusive=False)
        self.diffusion_type = check_choice(diffusion_type, "diffusion_type", owner, ("anisotropic", "isotropic"))
        self.batch_mode = check_choice(batch_mode, "batch_mode", owner, ("partial", "full"))
        super().__init__(x0, seed=seed, maximize=maximize, mask=mask)
        self._x = self._initial_particles(n_particles, popsize, owner)
        self.n_particles = n = self._x.shape[0]
        if popsize is not None and popsize > n:
            raise ParameterError(f"The 'popsize' parameter of {owner} must be an int in [2, n_particles = {n}] "
                                 f"(the particles asked per generation). Got {popsize} instead.")
        self._popsize = n if popsize is None else popsize
        self.alpha = self.alpha0
        self._sqrt_dt_diffusion = self.diffusion * math.sqrt(self.dt)
        self._drift_dt = self.drift * self.dt
        self._batched = self._popsize < n
        self._unused = np.empty(0, dtype=np.int64)  # rest of the current permutation
        self._batch: np.ndarray | None = None  # indices of the particles asked (None = all)
        self._consensus: np.ndarray | None = None

    def _initial_particles(self, n_particles: int | None, popsize: int | None, owner: str) -> np.ndarray:
        """The N initial particles: x0 as given, or N draws from N(x0, sigma0^2 I) around a center x0."""
        if self.x0.ndim == 2:
            n = self.x0.shape[0]
            if n_particles is not None and n_particles != n:
                raise ParameterError(f"The 'n_particles' parameter of {owner} must match the {n} rows of x0 "
                                     f"(or be None). Got {n_particles} instead.")
            if n < 2:
                raise ParameterError(f"The 'x0' parameter of {owner} must hold at least 2 particles when it is a "
                                     f"particle set. Got shape {self.x0.shape} instead.")
            return self.x0.copy()
        given = "n_particles" if n_particles is not None else "popsize"
        n = n_particles or popsize or 40
        d = self.search_dim
        check_memory(n, given, owner, n * d, f"{given} x dim = {n} x {d}")
        return self.x0 + self.sigma0 * self.rng.standard_normal((n, d))

    # ------------------------------------------------------------------ views
    @property
    def center(self) -> np.ndarray:
        """The last consensus point (before the first step: the mean of the particles)."""
        return self.embed(self._x.mean(axis=0) if self._consensus is None else self._consensus)

    @property
    def popsize(self) -> int:
        """M, the particles asked per generation (all N unless mini-batched)."""
        return self._popsize

    @property
    def particles(self) -> np.ndarray:
        return self.embed(self._x)

    @property
    def consensus(self) -> np.ndarray | None:
        """The consensus point of the last step (None before the first tell)."""
        return None if self._consensus is None else self.embed(self._consensus)

    # ------------------------------------------------------------------ protocol
    def _ask(self) -> np.ndarray:
        if not self._batched:
            return self._x.copy()
        m = self._popsize
        if self._unused.shape[0] < m:
            self._unused = self.rng.permutation(self.n_particles)
        self._batch = self._unused[:m]
        self._unused = self._unused[m:]
        return self._x[self._batch]

    def _tell(self, f: np.ndarray, grads: np.ndarray | None) -> None:
        X, batch = self._x, self._batch
        Xb = X if batch is None else X[batch]
        fmin = _min(f)
        if fmin == math.inf:  # every value failed: no information, fall back to uniform weights
            f = np.zeros_like(f)
            fmin = 0.0
        if self.alpha_schedule == "ess":
            self.alpha = self._ess_alpha(f, fmin)
        # w_i = exp(-alpha (f_i - min f)) in [0, 1], the best gets 1 (log-sum-exp without the log): exp
        # cannot overflow and the sum is >= 1 whatever alpha and the scale of f; failed values get 0.
        a = self.alpha
        w = fmin - f
        w *= a
        np.exp(w, out=w)
        c = (w @ Xb) / _sum(w)
        self._consensus = c
        moving = X if batch is None or self.batch_mode == "full" else Xb
        D = moving - c
        # x + D * (s sqrt(dt) xi - lambda dt) (isotropic: s sqrt(dt) ||D|| xi - lambda dt D), s the diffusion, into a
        # fresh array so the arrays returned by earlier asks are never written to
        new = self.rng.standard_normal(D.shape)
        if self.diffusion_type == "anisotropic":
            new *= self._sqrt_dt_diffusion
            new -= self._drift_dt
            new *= D
        else:
            new *= np.sqrt(np.einsum("ij,ij->i", D, D))[:, None] * self._sqrt_dt_diffusion
            new -= self._drift_dt * D
        new += moving
        np.clip(new, -_MAX_ABS, _MAX_ABS, out=new)
        if D.shape[0] == X.shape[0]:
            self._x = new
        else:
            X[batch] = new
        self._batch = None
        if self.alpha_schedule == "exponential":
            self.alpha = min(a * self.alpha_factor, self.alpha_max)

    def _ess_alpha(self, f: np.ndarray, fmin: float) -> float:
        """alpha with ESS(alpha) = eta * n, by bisection on log alpha (ESS falls as alpha grows)."""
        g = fmin - f  # <= 0, -inf for failed values
        target = self.eta * f.shape[0]

        def ess(a: float) -> float:
            with np.errstate(over="ignore", invalid="ignore"):
                w = np.exp(a * g)
            return w.sum() ** 2 / (w @ w)

        lo, hi = math.log(_ALPHA_MIN), math.log(self.alpha_max)
        if ess(math.exp(hi)) >= target:
            return self.alpha_max
        if ess(math.exp(lo)) <= target:
            return _ALPHA_MIN
        for _ in range(60):
            mid = 0.5 * (lo + hi)
            e = ess(math.exp(mid))
            if abs(e - target) <= 1e-3 * target:
                break
            if e > target:
                lo = mid
            else:
                hi = mid
        return math.exp(mid)

    # ------------------------------------------------------------------ state
    def _state(self) -> dict[str, Any]:
        return {
            "x": self._x.copy(),
            "alpha": float(self.alpha),
            "unused": self._unused.copy(),
            "batch": None if self._batch is None else self._batch.copy(),
            "consensus": None if self._consensus is None else self._consensus.copy(),
        }

    def _load_state(self, state: dict[str, Any]) -> None:
        x = np.array(state["x"], dtype=np.float64)
        if x.shape != self._x.shape:
            raise ParameterError(
                f"CBO state holds particles of shape {x.shape}, this optimizer has {self._x.shape}."
            )
        self._x = x
        self.alpha = float(state["alpha"])
        self._unused = np.array(state["unused"], dtype=np.int64)
        self._batch = None if state["batch"] is None else np.array(state["batch"], dtype=np.int64)
        self._consensus = (
            None if state["consensus"] is None else np.array(state["consensus"], dtype=np.float64)
        )
