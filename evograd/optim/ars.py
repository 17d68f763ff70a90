"""Augmented Random Search (Mania, Guy, Recht 2018, arXiv:1803.07055).

Finite differences along N random directions, each evaluated at theta +/- nu * delta; the step follows
(r+ - r-) delta summed over the directions kept. Versions, as in the paper and its reference code
(modestyachts/ARS, which divides by the reward std in V1 and V2 alike):

- "brs": basic random search (the paper's Algorithm 1): theta += alpha / N * sum_k (r+_k - r-_k) delta_k.
- "v1", "v2": ARS, all N directions, step scaled by the std sigma_R of the 2N rewards:
  theta += alpha / (N sigma_R) * sum_k (r+_k - r-_k) delta_k.
- "v1-t", "v2-t": the same over the b directions with the largest max(r+, r-), sigma_R over those 2b rewards.

V2 differs from V1 only by observation normalization (running mean/std of states), which belongs to the
policy layer, not to the optimizer: here "v2" equals "v1" and "v2-t" equals "v1-t"; both names exist so
configs can say which paper variant they reproduce. Rewards are r = -f (the internal, minimized fitness).
"""
from __future__ import annotations

from typing import Any

import numpy as np

from ..core.candidates import SeededCandidates
from ..core.noise import SOURCES
from ..core.shaping import finite_worst
from ..core.validation import ParameterError, check_bool, check_choice, check_float, check_int, check_memory
from .base import Optimizer, Renamed, named, renamed_arguments
from .openai_es import check_even_popsize, mirrored_candidates, pair_weights

VERSIONS = ("brs", "v1", "v1-t", "v2", "v2-t")


@named("ars")
class ARS(Optimizer):
    """Augmented Random Search with mirrored directions and (optionally) top-b selection.

    Parameters
    ----------
    x0 : array (dim,)
        Initial parameters theta.
    popsize : even int >= 2 or None, default None
        Candidates per generation, 2N: N random directions, each evaluated at theta + nu delta and
        theta - nu delta. None gives 16 (N = 8); the paper used N from 1 to 230 on MuJoCo.
    n_directions : int >= 1 or None, default None
        The paper's N, a documented alias: `n_directions=k` is exactly `popsize=2k`. Give one of the two
        (both only when they agree).
    top_directions : int in [1, N] or None, default None
        b, directions kept for the update. None means N for "brs"/"v1"/"v2" and max(1, N // 2) for the
        "-t" versions; an explicit b < N needs a "-t" version.
    lr : float > 0, default 0.02
        alpha, the step size. With std scaling the step length hardly depends on the scale of f.
    sigma0 : float > 0, default 0.03
        nu, the exploration noise (paper: 0.0075 to 0.03); fixed, never adapted.
    version : {"brs", "v1", "v1-t", "v2", "v2-t"}, default "v2-t"
        Paper variant (see the module docstring). "v2-t" with b = N // 2 is robust on smooth problems
        and is the paper's best performer; "brs" is not scale-free, so its alpha must match the scale of f.
    scale_by_std : bool or None, default None
        Override the version's choice of dividing by sigma_R (True for every version but "brs").
    noise : {"rng", "table"}, default "rng"
        Where the perturbations come from (see `evograd.core.noise`): "rng", a generator per seed; "table",
        windows of a shared 128 MB table of normals, far cheaper to regenerate at large dim
        (what OpenAI's code did), at the price of directions that are shifted windows of one table.
    seed : int or None, default None
    maximize : bool, default False
    mask : bool array (dim,) or None, default None
        Coordinates to search; the others stay at x0 (see `Optimizer`).

    Renamed: `step_size` is now `lr` (the old name works, with a DeprecationWarning).
    """

    renamed_parameters = {"step_size": Renamed("lr", note="every optimizer's step size is 'lr'")}

    def __init__(
        self,
        x0: Any = None,
        popsize: int | None = None,
        n_directions: int | None = None,
        top_directions: int | None = None,
        lr: float = 0.02,
        sigma0: float = 0.03,
        version: str = "v2-t",
        scale_by_std: bool | None = None,
        noise: str = "rng",
        seed: int | None = None,
        maximize: bool = False,
        mask: Any = None,
        **renamed: Any,
    ):
        owner = type(self).__name__
        lr = renamed_arguments(ARS, renamed, {"lr": lr})["lr"]
        self._popsize, size_name = _resolve_popsize(popsize, n_directions, owner)
        n = self._popsize // 2
        self.version = check_choice(version, "version", owner, VERSIONS)
        topped = self.version.endswith("-t")
        if top_directions is None:
            top_directions = max(1, n // 2) if topped else n
        self.top_directions = check_int(top_directions, "top_directions", owner, low=1, high=n)
        if self.top_directions < n and not topped:
            raise ParameterError(
                f"The 'top_directions' parameter of {owner} must equal the number of directions, popsize / 2 "
                f"({n}), for version {self.version!r}; use a '-t' version to keep fewer. "
                f"Got {self.top_directions!r} instead."
            )
        self.lr = check_float(lr, "lr", owner, low=0.0, low_inclusive=False)
        self.sigma = check_float(sigma0, "sigma0", owner, low=0.0, low_inclusive=False)
        if scale_by_std is None:
            scale_by_std = self.version != "brs"
        self.scale_by_std = check_bool(scale_by_std, "scale_by_std", owner)
        self.noise = check_choice(noise, "noise", owner, SOURCES)
        super().__init__(x0, seed=seed, maximize=maximize, mask=mask)
        if size_name == "n_directions":
            check_memory(n, "n_directions", owner, 2 * n * self.search_dim,
                         f"2 x n_directions x dim = 2 x {n} x {self.search_dim}")
        else:
            check_memory(self._popsize, "popsize", owner, self._popsize * self.search_dim,
                         f"popsize x dim = {self._popsize} x {self.search_dim}")
        self._center = self.x0.copy()

    @property
    def center(self) -> np.ndarray:
        return self.embed(self._center)

    @property
    def popsize(self) -> int:
        return self._popsize

    @property
    def n_directions(self) -> int:
        """N = popsize / 2, the paper's name (an alias, read from popsize)."""
        return self._popsize // 2

    def _ask(self) -> SeededCandidates:
        return mirrored_candidates(self.rng, self._center, self.sigma, self._popsize // 2, self.noise)

    def _tell(self, f: np.ndarray, grads: np.ndarray | None) -> None:
        cand: SeededCandidates = self._pending
        r = -finite_worst(f)
        # r_plus - r_minus per direction, and each direction's best reward for the top-b selection.
        diff = pair_weights(cand, r)
        n = self._popsize // 2
        best = np.full(n, -np.inf)
        np.maximum.at(best, cand.direction, r)
        b = self.top_directions
        keep = np.sort(np.argsort(-best, kind="stable")[:b])  # ties: the earlier direction wins
        weights = np.zeros(n)
        weights[keep] = diff[keep]
        if self.scale_by_std:
            sigma_r = r[np.isin(cand.direction, keep)].std()
            # Equal rewards carry no direction; dividing by ~0 would blow the step up instead.
            weights = weights / (b * sigma_r) if sigma_r > 0 else np.zeros_like(weights)
        else:
            weights /= b
        self._center = self._center + self.lr * (cand.noise().T @ weights)

    def _state(self) -> dict[str, Any]:
        return {"center": self._center.copy()}

    def _load_state(self, state: dict[str, Any]) -> None:
        self._center = np.array(state["center"], dtype=np.float64)


def _resolve_popsize(popsize: Any, n_directions: Any, owner: str) -> tuple[int, str]:
    """popsize from popsize or its alias n_directions (popsize = 2 n_directions), and the name given."""
    if n_directions is None:
        return (16, "popsize") if popsize is None else (check_even_popsize(popsize, owner), "popsize")
    n = check_int(n_directions, "n_directions", owner, low=1)
    if popsize is not None and check_even_popsize(popsize, owner) != 2 * n:
        raise ParameterError(f"The 'n_directions' parameter of {owner} is an alias: popsize = 2 x n_directions. "
                             f"Give one of them, or both in agreement. Got popsize={popsize!r} and "
                             f"n_directions={n_directions!r} instead.")
    return 2 * n, "n_directions"
