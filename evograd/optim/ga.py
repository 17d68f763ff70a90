"""Deep GA (Such et al. 2017, arXiv:1712.06567): truncation selection plus Gaussian mutation.

No gradient estimate at all: the top T of each evaluated population become parents, children are
uniformly chosen parents plus N(0, sigma^2) noise, and the best `elitism` individuals are carried over
unchanged. Carried elites are evaluated again in the next generation, which is how the Deep GA re-checks
an elite whose score was lucky on a noisy task.

As in the paper, an individual is by default its seed list (`encoding="seeds"`): a base point plus the
seeds of the mutations along its line of descent (`evograd.core.candidates.LineageCandidates`), so an evaluator
ships integers instead of parameters. This process keeps its parents' dense rows, so a generation here
still costs one noise vector per child, O(n x dim), as with `encoding="dense"`.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..core.candidates import Candidates, DenseCandidates, LineageCandidates, add_mutation, concat_lineages, draw_seeds
from ..core.noise import SOURCES
from ..core.validation import ParameterError, check_choice, check_float, check_int, check_memory
from .base import Optimizer, named


@named("ga")
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
    encoding : {"seeds", "dense"} or None, default None
        How `ask_candidates()` describes the population. "seeds" (Such et al.): every individual is a base
        (x0, or its row of an (n, dim) x0) plus its list of mutation seeds; elites keep their list, a child
        is its parent's list plus one new seed. A worker task then costs O(bases + seeds) bytes instead of
        O(rows x dim), but rebuilds a row in O(lineage length x dim): the lineage grows by one seed per
        generation, so on long runs with large networks `noise="table"` (cheap noise) or "dense" pays off.
        Checkpoints hold the seed lists, not the parents' rows (rebuilt once on load). "dense": explicit
        rows, mutation noise from the optimizer's own stream; required by crossover, whose children mix
        coordinates and have no seed list. None gives "seeds" without crossover and "dense" with it.
    noise : {"rng", "table"}, default "rng"
        Source of the "seeds" encoding's mutation noise (see `evograd.core.noise`): "rng", a generator per
        seed; "table", windows of a shared 128 MB table of normals, much faster to regenerate at large dim.
    seed, maximize
        See `Optimizer`.
    mask : bool array (dim,) or None, default None
        Coordinates to search; the others stay at x0 (every row of a population x0 must agree there).
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
        encoding: str | None = None,
        noise: str = "rng",
        seed: int | None = None,
        maximize: bool = False,
        mask: Any = None,
    ):
        owner = type(self).__name__
        self.sigma0 = check_float(sigma0, "sigma0", owner, low=0.0, low_inclusive=False)
        self.crossover = check_choice(crossover, "crossover", owner, [None, "uniform"])
        self.crossover_rate = check_float(crossover_rate, "crossover_rate", owner, low=0.0, high=1.0)
        encoding = check_choice(encoding, "encoding", owner, [None, "seeds", "dense"])
        if encoding is None:
            encoding = "seeds" if self.crossover is None else "dense"
        if encoding == "seeds" and self.crossover is not None:
            raise ParameterError(
                f"The 'encoding' parameter of {owner} must be 'dense' with crossover={self.crossover!r}: a crossed "
                "child mixes its parents' coordinates and has no seed list. Got 'seeds' instead."
            )
        self.encoding = encoding
        self.noise = check_choice(noise, "noise", owner, SOURCES)
        if popsize is not None:
            popsize = check_int(popsize, "popsize", owner, low=2)
        super().__init__(x0, seed=seed, maximize=maximize, mask=mask)
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
        check_memory(popsize, "popsize", owner, popsize * self.search_dim,
                     f"popsize x dim = {popsize} x {self.search_dim}")
        self._popsize = popsize
        if truncation is None:
            truncation = min(popsize, max(2, popsize // 5))
        self.truncation = check_int(truncation, "truncation", owner, low=1, high=popsize)
        self.elitism = check_int(elitism, "elitism", owner, low=0, high=popsize - 1)
        # Best max(T, elitism) rows of the last evaluated population, best first; None before the first tell.
        self._ranked: np.ndarray | None = None
        # With encoding="seeds": the same rows as lineages, whose dense cache is _ranked.
        self._lineages: LineageCandidates | None = None

    @property
    def center(self) -> np.ndarray:
        """The elite: the best member of the last evaluated generation (x0 before the first tell)."""
        return super().center if self._ranked is None else self.embed(self._ranked[0])

    @property
    def popsize(self) -> int:
        return self._popsize

    @property
    def parents(self) -> np.ndarray | None:
        """The current parent pool (top T of the last evaluated generation, best first)."""
        return None if self._ranked is None else self.embed(self._ranked[: self.truncation])

    def _ask(self) -> Candidates:
        if self.encoding == "seeds":
            return self._ask_seeds()
        n, d = self._popsize, self.search_dim
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

    def _ask_seeds(self) -> LineageCandidates:
        n, d, e = self._popsize, self.search_dim, self.elitism
        if self._lineages is None:  # generation 0: x0 and mutants of it, or the given population as bases
            if self.x0.ndim == 2:
                return LineageCandidates(self.x0, np.arange(n), [], np.zeros(n + 1, np.int64), self.sigma0,
                                         self.noise, row_cache=self.x0.copy())
            seeds = draw_seeds(self.rng, n - 1)
            X = np.empty((n, d))
            X[:] = self.x0
            buf = np.empty(d)
            for r in range(1, n):
                add_mutation(X[r], seeds[r - 1], self.sigma0, self.noise, buf)
            offsets = np.concatenate([[0], np.arange(n)])  # row 0 (x0 itself) has no mutation, row r has seed r-1
            return LineageCandidates(self.x0[None], np.zeros(n, np.int64), seeds, offsets, self.sigma0, self.noise,
                                     row_cache=X)
        P = self._lineages
        first = self.rng.integers(0, self.truncation, size=n - e)
        new = draw_seeds(self.rng, n - e)
        X = np.empty((n, d))
        X[:e] = self._ranked[:e]
        buf = np.empty(d)
        for r in range(n - e):  # the parent's cached row plus one mutation: the lineage sum, O(dim) per child
            X[e + r] = self._ranked[first[r]]
            add_mutation(X[e + r], new[r], self.sigma0, self.noise, buf)
        seeds, offsets = concat_lineages([P.lineage(i) for i in range(e)]
                                         + [np.append(P.lineage(p), s) for p, s in zip(first, new)])
        base_of = np.concatenate([P.base_of[:e], P.base_of[first]])
        return LineageCandidates(P.bases, base_of, seeds, offsets, self.sigma0, self.noise, row_cache=X)

    def _tell(self, f: np.ndarray, grads: np.ndarray | None) -> None:
        keep = max(self.truncation, self.elitism)
        order = np.argsort(f, kind="stable")[:keep]  # +inf (failed) values sort last
        self._ranked = self._lineages = None  # release the old pool first (peak memory at 1M dims)
        if self.encoding == "seeds":
            # rows rebuilt from seeds if this population was loaded from a state mid-generation
            self._lineages = self._pending.subset(order)
            self._ranked = self._lineages.materialize()
        else:
            self._ranked = self._pending.materialize()[order]  # fancy indexing already copies

    def _state(self) -> dict[str, Any]:
        if self.encoding == "seeds":
            return {"lineages": None if self._lineages is None else self._lineages.to_state()}
        return {"ranked": None if self._ranked is None else self._ranked.copy()}

    def _load_state(self, state: dict[str, Any]) -> None:
        if ("lineages" in state) != (self.encoding == "seeds"):
            raise ParameterError(f"GA: this state was saved with the other encoding; build the GA with "
                                 f"encoding={'seeds' if 'lineages' in state else 'dense'!r} to load it.")
        if self.encoding == "seeds":
            lin = state["lineages"]
            self._lineages = None if lin is None else Candidates.from_state(lin)
            # the parents' rows, rebuilt once from their seed lists (same bits as the cached ones were)
            self._ranked = None if lin is None else self._lineages.materialize()
            return
        r = state["ranked"]
        self._ranked = None if r is None else np.array(r, dtype=np.float64)
