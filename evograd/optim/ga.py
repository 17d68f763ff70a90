"""Deep GA (Such et al. 2017, arXiv:1712.06567): truncation selection plus Gaussian mutation.

No gradient estimate at all: the top T of each evaluated population become parents, children are
uniformly chosen parents plus N(0, sigma^2) noise, and the best `elitism` individuals are carried over
unchanged. Carried elites are evaluated again in the next generation, which is how the Deep GA re-checks
an elite whose score was lucky on a noisy task. Work per generation is one (n, dim) noise draw, written in
place into the population array, so cost and memory stay linear in n x dim.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..candidates import DenseCandidates
from ..registry import register
from ..validation import ParameterError, check_choice, check_float, check_int
from .base import Optimizer


@register("ga")
class GA(Optimizer):
    """Genetic algorithm with truncation selection, elitism and optional uniform crossover.

    Parameters
    ----------
    x0 : array (dim,) or (n, dim)
        An (n, dim) array is the initial population as given. A (dim,) array gives an initial population
        of x0 itself (member 0) plus `popsize - 1` copies of x0 with N(0, sigma0^2) noise.
    popsize : int or None, default None
        Individuals per generation, >= 2. None gives n for an (n, dim) x0, else 64.
    truncation : int or None, default None
        T: the best T individuals of a generation are the parents of the next (each child picks its
        parent uniformly). None gives max(2, popsize // 5); the paper used 20 of 1000 on Atari.
    sigma0 : float, default 0.1
        Mutation standard deviation (fixed: the Deep GA does not adapt it). Neural-network weights
        usually need smaller values (the paper used 0.002 with > 4M weights).
    elitism : int, default 1
        Number of best individuals copied unchanged into the next generation (0 to popsize - 1).
    crossover : None or "uniform", default None
        With "uniform", a child is, with probability `crossover_rate`, built by taking each coordinate
        from one of two distinct parents (chosen with equal chance) before mutation.
    crossover_rate : float, default 0.5
        Probability that a child is a crossover child (only used with `crossover="uniform"`).
    seed, maximize
        See `Optimizer`.
    """

    allow_population_x0 = True

    def __init__(
        self,
        x0: Any = None,
        popsize: int | None = None,
        truncation: int | None = None,
        sigma0: float = 0.1,
        elitism: int = 1,
        crossover: str | None = None,
        crossover_rate: float = 0.5,
        seed: int | None = None,
        maximize: bool = False,
    ):
        owner = type(self).__name__
        self.sigma0 = check_float(sigma0, "sigma0", owner, low=0.0, low_inclusive=False)
        self.crossover = check_choice(crossover, "crossover", owner, [None, "uniform"])
        self.crossover_rate = check_float(crossover_rate, "crossover_rate", owner, low=0.0, high=1.0)
        if popsize is not None:
            popsize = check_int(popsize, "popsize", owner, low=2)
        super().__init__(x0, seed=seed, maximize=maximize)
        if self.x0.ndim == 2:
            n = self.x0.shape[0]
            if popsize is None and n < 2:
                raise ParameterError(
                    f"The 'x0' parameter of {owner} must hold at least 2 individuals when it is a population. "
                    f"Got shape {self.x0.shape} instead."
                )
            if popsize is not None and popsize != n:
                raise ParameterError(
                    f"The 'popsize' parameter of {owner} must equal the number of rows of x0 ({n}) when x0 is a "
                    f"population. Got {popsize} instead."
                )
            popsize = n
        elif popsize is None:
            popsize = 64
        self._popsize = popsize
        if truncation is None:
            truncation = min(popsize, max(2, popsize // 5))
        self.truncation = check_int(truncation, "truncation", owner, low=1, high=popsize)
        self.elitism = check_int(elitism, "elitism", owner, low=0, high=popsize - 1)
        # Best max(T, elitism) rows of the last evaluated population, best first; None before the first tell.
        self._ranked: np.ndarray | None = None

    @property
    def center(self) -> np.ndarray:
        """The elite: the best member of the last evaluated generation (x0 before the first tell)."""
        return super().center if self._ranked is None else self._ranked[0].copy()

    @property
    def popsize(self) -> int:
        return self._popsize

    @property
    def parents(self) -> np.ndarray | None:
        """The current parent pool (top T of the last evaluated generation, best first)."""
        return None if self._ranked is None else self._ranked[: self.truncation].copy()

    def _ask(self) -> DenseCandidates:
        n, d = self._popsize, self.dim
        if self._ranked is None:
            if self.x0.ndim == 2:
                return DenseCandidates(self.x0.copy())
            X = np.empty((n, d))
            self.rng.standard_normal(out=X[1:])
            X[1:] *= self.sigma0
            X[1:] += self.x0
            X[0] = self.x0
            return DenseCandidates(X)
        e, T = self.elitism, self.truncation
        X = np.empty((n, d))
        X[:e] = self._ranked[:e]
        n_child = n - e
        first = self.rng.integers(0, T, size=n_child)
        if self.crossover == "uniform":
            crossed = self.rng.random(n_child) < self.crossover_rate
            # A second parent distinct from the first (when T allows): crossing a parent with itself is a no-op.
            second = (first + self.rng.integers(1, T, size=n_child)) % T if T > 1 else first
        else:
            crossed = np.zeros(n_child, dtype=bool)
        children = X[e:]
        self.rng.standard_normal(out=children)  # mutation noise, written in place
        children *= self.sigma0
        for r in range(n_child):  # per-row adds keep memory at one population, not two
            if crossed[r]:
                take_first = self.rng.random(d) < 0.5
                children[r] += np.where(take_first, self._ranked[first[r]], self._ranked[second[r]])
            else:
                children[r] += self._ranked[first[r]]
        return DenseCandidates(X)

    def _tell(self, f: np.ndarray, grads: np.ndarray | None) -> None:
        X = self._pending.materialize()
        keep = max(self.truncation, self.elitism)
        order = np.argsort(f, kind="stable")[:keep]  # +inf (failed) values sort last
        self._ranked = None  # release the old pool before building the new one (peak memory at 1M dims)
        self._ranked = X[order]  # fancy indexing already copies

    def _state(self) -> dict[str, Any]:
        return {"ranked": None if self._ranked is None else self._ranked.copy()}

    def _load_state(self, state: dict[str, Any]) -> None:
        r = state["ranked"]
        self._ranked = None if r is None else np.array(r, dtype=np.float64)
