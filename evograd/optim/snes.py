"""Separable Natural Evolution Strategy (SNES; Schaul, Glasmachers & Schmidhuber 2011).

A diagonal Gaussian search distribution N(mu, diag(sigma^2)) whose center and per-coordinate scales
follow the natural gradient of the expected utility. Cost and memory are linear in the dimension,
which is why SNES is a common choice for neuroevolution with many parameters, where CMA-ES's
d x d covariance is out of reach. Candidates are `mu + sigma * z` with z regenerated from integer
seeds, so a distributed evaluator ships seeds rather than (n, dim) matrices.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ..core.candidates import SeededCandidates, draw_seeds
from ..core.noise import SOURCES, noise
from ..core.shaping import SHAPERS
from ..core.validation import ParameterError, check_bool, check_choice, check_float, check_int, check_memory, real_array
from .base import Optimizer, Renamed, named, renamed_arguments

# Rows per block when forming sum_i u_i z_i^2, so the squared noise never exists as a full (n, dim) copy.
_BLOCK_ELEMENTS = 1 << 22


@named("snes")
class SNES(Optimizer):
    """Separable NES: center `mu` and one step size per coordinate.

    Parameters
    ----------
    x0 : array (dim,)
        Initial center mu.
    sigma0 : float or array (dim,), default 1.0
        Initial per-coordinate standard deviation (a scalar is broadcast). SNES adapts it, so it only
        needs the right order of magnitude: roughly the distance to where the optimum may lie.
    popsize : int or None, default None
        Samples per generation, >= 2. None gives the paper's 4 + floor(3 ln d) (rounded up to even when
        `antithetic`).
    lr : float, default 1.0
        Step size of the center update (the paper's eta_mu).
    lr_sigma : float or None, default None
        Step size of the log-sigma update (the paper's eta_sigma); None gives its (3 + ln d) / (5 sqrt d).
    shaping : str, default "nes"
        Fitness shaping from `evograd.core.shaping.SHAPERS`; "nes" are the paper's log-rank utilities.
    antithetic : bool, default False
        Sample mirrored pairs (z, -z), which removes the odd-order noise from the center's gradient
        estimate; `popsize` must then be even.
    noise : {"rng", "table"}, default "rng"
        Where the perturbations come from (see `evograd.core.noise`): "rng", a generator per seed; "table",
        windows of a shared 128 MB table of normals, far cheaper to regenerate at large dim
        (what OpenAI's code did), at the price of directions that are shifted windows of one table.
    seed, maximize
        See `Optimizer`.
    mask : bool array (dim,) or None, default None
        Coordinates to search; the others stay at x0 (see `Optimizer`). `mu` and `sigma` then hold the searched
        coordinates only: `center` and `embed(sigma, fill=0.0)` are their full-length forms.

    Renamed: `lr_center` is now `lr` (the old name works, with a DeprecationWarning).
    """

    renamed_parameters = {"lr_center": Renamed("lr", note="every optimizer's step size is 'lr'")}

    def __init__(
        self,
        x0: Any = None,
        sigma0: Any = 1.0,
        popsize: int | None = None,
        lr: float = 1.0,
        lr_sigma: float | None = None,
        shaping: str = "nes",
        antithetic: bool = False,
        noise: str = "rng",
        seed: int | None = None,
        maximize: bool = False,
        mask: Any = None,
        **renamed: Any,
    ):
        owner = type(self).__name__
        lr = renamed_arguments(SNES, renamed, {"lr": lr})["lr"]
        antithetic = check_bool(antithetic, "antithetic", owner)
        if popsize is not None:
            popsize = check_int(popsize, "popsize", owner, low=2)
            if antithetic and popsize % 2:
                raise ParameterError(
                    f"The 'popsize' parameter of {owner} must be an even int when antithetic=True. "
                    f"Got {popsize} instead."
                )
        self.lr = check_float(lr, "lr", owner, low=0.0, low_inclusive=False)
        if lr_sigma is not None:
            lr_sigma = check_float(lr_sigma, "lr_sigma", owner, low=0.0)
        self.shaping = check_choice(shaping, "shaping", owner, SHAPERS)
        self.noise = check_choice(noise, "noise", owner, SOURCES)
        super().__init__(x0, seed=seed, maximize=maximize, mask=mask)
        d = self.search_dim
        self.antithetic = antithetic
        if popsize is None:
            popsize = 4 + math.floor(3 * math.log(d))
            popsize += popsize % 2 if antithetic else 0
        check_memory(popsize, "popsize", owner, popsize * d, f"popsize x dim = {popsize} x {d}")
        self._popsize = popsize
        self.lr_sigma = (3 + math.log(d)) / (5 * math.sqrt(d)) if lr_sigma is None else lr_sigma
        self.sigma = self._check_sigma0(self.restrict(sigma0), owner, d)
        self.mu = self.x0.copy()

    @staticmethod
    def _check_sigma0(sigma0: Any, owner: str, d: int) -> np.ndarray:
        if np.ndim(sigma0) == 0:
            return np.full(d, check_float(sigma0, "sigma0", owner, low=0.0, low_inclusive=False))
        try:
            s = np.array(real_array(sigma0), dtype=np.float64)
        except (TypeError, ValueError):  # NotRealError is a TypeError
            s = None
        if s is None or s.shape != (d,) or not np.all(np.isfinite(s)) or not np.all(s > 0):
            raise ParameterError(
                f"The 'sigma0' parameter of {owner} must be a float > 0 or a finite positive array of shape ({d},). "
                f"Got {sigma0!r} instead."
            )
        return s

    @property
    def center(self) -> np.ndarray:
        return self.embed(self.mu)

    @property
    def popsize(self) -> int:
        return self._popsize

    def _ask(self) -> SeededCandidates:
        n = self._popsize
        k = n // 2 if self.antithetic else n
        seeds = draw_seeds(self.rng, k)
        z = np.empty((k, self.search_dim))
        for i, s in enumerate(seeds):
            noise(s, self.search_dim, self.noise, out=z[i])
        if self.antithetic:
            direction = np.concatenate([np.arange(k), np.arange(k)])
            sign = np.concatenate([np.ones(k), -np.ones(k)])
        else:
            direction, sign = np.arange(n), np.ones(n)
        return SeededCandidates(self.mu.copy(), self.sigma.copy(), seeds, direction, sign, noise_cache=z,
                                source=self.noise)

    def _tell(self, f: np.ndarray, grads: np.ndarray | None) -> None:
        if not np.isfinite(f).any():
            return  # nothing to rank: a random "gradient" from tie-breaking would only blur the distribution
        cand = self._pending
        u = SHAPERS[self.shaping](f)
        z = cand.noise()  # (k, dim); regenerated from the seeds if this state was loaded mid-generation
        k = z.shape[0]
        # Row r of the population is sign[r] * z[direction[r]]; fold u onto the directions.
        u_mu = np.bincount(cand.direction, weights=u * cand.sign, minlength=k)
        u_sq = np.bincount(cand.direction, weights=u * cand.sign**2, minlength=k)
        grad_mu = u_mu @ z
        grad_sigma = -float(u.sum()) * np.ones(self.search_dim)
        step = max(1, _BLOCK_ELEMENTS // max(1, self.search_dim))
        for a in range(0, k, step):
            zb = z[a : a + step]
            grad_sigma += u_sq[a : a + step] @ (zb * zb)
        self.mu += self.lr * self.sigma * grad_mu
        self.sigma *= np.exp(0.5 * self.lr_sigma * grad_sigma)

    def _state(self) -> dict[str, Any]:
        return {"mu": self.mu.copy(), "sigma": self.sigma.copy()}

    def _load_state(self, state: dict[str, Any]) -> None:
        self.mu = np.array(state["mu"], dtype=np.float64)
        self.sigma = np.array(state["sigma"], dtype=np.float64)
