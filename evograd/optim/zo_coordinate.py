"""Coordinate-wise gradient estimator (CGE), the estimator DeepZero (Chen et al. 2024) trains networks with.

    g_j = [f(x + mu e_j) - f(x - mu e_j)] / (2 mu)    for every unmasked coordinate j    (2k evaluations)

Central differences along the coordinate axes: no randomness, so no variance, and exact up to O(mu^2)
(f''' mu^2 / 6 per coordinate; exact on a quadratic). The price is 2k evaluations per step for k unmasked
coordinates, against q + 1 for rge's (k + 1)/q variance factor: cge is the choice while k is small (up to a
few hundred, or a sparse `mask` over a large model, DeepZero's pruning-at-init), rge beyond. Masked
coordinates are skipped: they cost no evaluation.

`popsize` below 2k evaluates a random block of popsize / 2 unmasked coordinates per step and scales their
partials by k / (popsize / 2): an unbiased estimate of the full one (randomized block coordinates), with the
variance of sampling the block. The default evaluates them all.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from ..core.validation import ParameterError, check_float, check_int, check_memory
from .base import named
from .zo_base import RowsOnDemand, ZerothOrder


class CoordinateRows(RowsOnDemand):
    """Rows 2i and 2i + 1 are center + mu e_{coords[i]} and center - mu e_{coords[i]}, built on demand."""

    kind = "coordinate"

    def __init__(self, center: np.ndarray, mu: float, coords: np.ndarray):
        self.center, self.mu, self.coords = center, mu, coords

    def __len__(self) -> int:
        return 2 * self.coords.shape[0]

    @property
    def dim(self) -> int:
        return self.center.shape[0]

    def take(self, idx) -> np.ndarray:
        idx = np.asarray(idx, dtype=np.int64)
        out = np.repeat(self.center[None, :], len(idx), axis=0)
        step = np.where(idx % 2 == 0, self.mu, -self.mu)
        out[np.arange(len(idx)), self.coords[idx // 2]] += step
        return out


@named("cge")
class CGE(ZerothOrder):
    """Coordinate-wise central differences over every unmasked coordinate, Adam on the estimate.

    Parameters
    ----------
    x0 : array (dim,)
        Initial point.
    lr : float > 0, default 0.01
        Step size of the update rule (Adam's 0.01 suits parameters of order 1; networks want 1e-3 or less).
    mu : float > 0, default 1e-3
        Finite-difference step per coordinate. The error is mu^2 f''' / 6 from truncation plus about eps |f| / mu
        from rounding; the best mu is near (eps |f| / |f'''|)^(1/3), about 1e-5 in float64 and 5e-3 in float32 at
        f of order 1: 1e-3 (MeZO's eps) is safe in both for parameters of order 0.01 to 10.
    popsize : int or None, default None
        Evaluations per step: None evaluates all k unmasked coordinates (2k); an even number below 2k a
        random block of popsize / 2 of them, scaled by k / (popsize / 2) (unbiased, no longer variance-free).
    update : {"sgd", "momentum", "adam", "sign"}, default "adam"
    momentum : float in [0, 1), default 0.9
        Heavy-ball coefficient of update="momentum".
    mask : bool array (dim,) or None, default None
        Coordinates that take part (True): the others cost no evaluation and are never updated.
    seed, maximize
        See `Optimizer` (the seed draws the blocks when popsize < 2k; the full estimator is deterministic).
    """

    def __init__(self, x0: Any = None, lr: float = 0.01, mu: float = 1e-3, popsize: int | None = None,
                 update: str = "adam", momentum: float = 0.9, mask: Any = None, seed: int | None = None,
                 maximize: bool = False):
        owner = type(self).__name__
        self.mu = check_float(mu, "mu", owner, low=0.0, low_inclusive=False)
        if popsize is not None:
            popsize = check_int(popsize, "popsize", owner, low=2)
        super().__init__(x0, lr, update, momentum, mask, seed, maximize)
        k = self.unmasked
        rows = 2 * k if popsize is None else popsize
        check_memory(rows, "popsize", owner, rows * self.dim,
                     f"evaluations per step x dim = {rows} x {self.dim} (the evaluator's rows)")
        if popsize is not None and (popsize % 2 or popsize > 2 * k):
            raise ParameterError(f"The 'popsize' parameter of {owner} must be None or an even int between 2 and "
                                 f"{2 * k} (2 evaluations per unmasked coordinate). Got {popsize!r} instead.")
        self.block = k if popsize is None else popsize // 2

    @property
    def popsize(self) -> int:
        return 2 * self.block

    def _coords(self) -> np.ndarray:
        return np.arange(self.dim) if self.mask is None else self.active

    def _asked_now(self) -> dict[str, Any]:
        if self.block == self.unmasked:
            return {"coords": None}  # every unmasked coordinate: nothing random to remember
        return {"coords": np.sort(self.rng.choice(self._coords(), size=self.block, replace=False))}

    def _candidates(self, asked: dict[str, Any]) -> CoordinateRows:
        coords = self._coords() if asked["coords"] is None else np.asarray(asked["coords"], dtype=np.int64)
        return CoordinateRows(self._center, self.mu, coords)

    def _estimate(self, f: np.ndarray, grads: np.ndarray | None) -> np.ndarray:
        coords = self._pending.coords
        x = self._center[coords]
        h = (x + self.mu) - (x - self.mu)  # the step the rows really took, rounding included
        with np.errstate(invalid="ignore"):  # inf - inf: that coordinate's partial is dropped (0)
            partial = (f[0::2] - f[1::2]) / h
        g = np.zeros(self.dim)
        g[coords] = np.where(np.isfinite(partial), partial, 0.0) * (self.unmasked / self.block)
        return g
