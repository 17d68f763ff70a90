"""OpenAI-ES (Salimans et al. 2017, arXiv:1703.03864): a sampler, a gradient estimate, a gradient optimizer.

Mirrored Gaussian perturbations around a center with a fixed noise scale, fitness shaping (centered ranks
by default), L2 weight decay, and the center moved by one of our own gradient optimizers (Adam by default)
fed with the ES gradient estimate. Populations are asked as `SeededCandidates`, so an evaluator can ship
one center plus integer seeds per direction instead of an (n, dim) matrix.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from ..core.candidates import SeededCandidates, draw_seeds
from ..core.noise import SOURCES, noise
from ..core.shaping import SHAPERS
from ..core.validation import ParameterError, check_choice, check_float, check_int, check_memory
from .base import Optimizer, named
from .updates import RULES, make_rule

INNER_OPTIMIZERS = tuple(RULES)


def check_even_popsize(popsize: Any, owner: str) -> int:
    """Mirrored sampling needs pairs; shared with ARS so both word the error the same way."""
    popsize = check_int(popsize, "popsize", owner, low=2)
    if popsize % 2:
        raise ParameterError(
            f"The 'popsize' parameter of {owner} must be an even int >= 2 (mirrored pairs). Got {popsize!r} instead."
        )
    return popsize


def mirrored_candidates(rng: np.random.Generator, center: np.ndarray, sigma: float, pairs: int,
                        source: str = "rng") -> SeededCandidates:
    """Rows 2j and 2j+1 are center +/- sigma * eps_j; the directions are kept as a cache for this process."""
    seeds = draw_seeds(rng, pairs)
    eps = np.empty((pairs, center.shape[0]))
    for j, s in enumerate(seeds):
        noise(s, center.shape[0], source, out=eps[j])
    direction = np.repeat(np.arange(pairs), 2)
    sign = np.tile([1.0, -1.0], pairs)
    return SeededCandidates(center, sigma, seeds, direction, sign, noise_cache=eps, source=source)


def pair_weights(cand: SeededCandidates, per_candidate: np.ndarray) -> np.ndarray:
    """sum over rows of per_candidate * sign, grouped by direction: one weight per noise direction."""
    w = np.zeros(len(cand.seeds))
    np.add.at(w, cand.direction, per_candidate * cand.sign)
    return w


@named("openai_es")
class OpenAIES(Optimizer):
    """OpenAI evolution strategy with mirrored sampling and a gradient-optimizer mean update.

    Parameters
    ----------
    x0 : array (dim,)
        Initial center.
    popsize : int, default 50
        Even number of candidates per generation (popsize // 2 mirrored pairs). OpenAI ran thousands of
        workers; 50 is a single-machine default that is still well above the 4 + 3 ln(dim) of CMA-ES.
    sigma0 : float > 0, default 0.1
        Fixed noise scale: the search never adapts it, so pick it to match the scale of useful changes
        (OpenAI used 0.02 on MuJoCo policies).
    lr : float > 0, default 0.01
        Learning rate of the inner optimizer (OpenAI's Adam step size).
    optimizer : {"adam", "sgd"}, default "adam"
        Update rule that moves the center (numpy, `evograd.optim.updates`, with torch.optim's formulas).
    optimizer_kwargs : dict or None, default None
        Extra hyperparameters for it, e.g. {"momentum": 0.9} for sgd or {"betas": (0.9, 0.999)} for adam.
    shaping : str, default "centered_ranks"
        Name in `evograd.core.shaping.SHAPERS`; ranks make the update invariant to monotone changes of f.
    weight_decay : float >= 0, default 0.005
        L2 coefficient added to the gradient estimate (g += weight_decay * center), keeping policy
        weights small as OpenAI did. Our estimate is divided by sigma (a true gradient of the smoothed
        utility), OpenAI's was not, so the same coefficient pulls 1/sigma times less hard here.
    noise : {"rng", "table"}, default "rng"
        Where the perturbations come from (see `evograd.core.noise`): "rng", a generator per seed; "table",
        windows of a shared 128 MB table of normals, far cheaper to regenerate at large dim
        (what OpenAI's code did), at the price of directions that are shifted windows of one table.
    seed : int or None, default None
    maximize : bool, default False
    mask : bool array (dim,) or None, default None
        Coordinates to search; the others stay at x0 (see `Optimizer`).
    """

    def __init__(
        self,
        x0: Any = None,
        popsize: int = 50,
        sigma0: float = 0.1,
        lr: float = 0.01,
        optimizer: str = "adam",
        optimizer_kwargs: dict | None = None,
        shaping: str = "centered_ranks",
        weight_decay: float = 0.005,
        noise: str = "rng",
        seed: int | None = None,
        maximize: bool = False,
        mask: Any = None,
    ):
        owner = type(self).__name__
        self._popsize = check_even_popsize(popsize, owner)
        self.sigma = check_float(sigma0, "sigma0", owner, low=0.0, low_inclusive=False)
        lr = check_float(lr, "lr", owner, low=0.0, low_inclusive=False)
        self.optimizer = check_choice(optimizer, "optimizer", owner, INNER_OPTIMIZERS)
        self.shaping = check_choice(shaping, "shaping", owner, SHAPERS)
        self.weight_decay = check_float(weight_decay, "weight_decay", owner, low=0.0)
        self.noise = check_choice(noise, "noise", owner, SOURCES)
        if optimizer_kwargs is None:
            optimizer_kwargs = {}
        if not isinstance(optimizer_kwargs, dict):
            raise ParameterError(f"The 'optimizer_kwargs' parameter of {owner} must be a dict or None. "
                                 f"Got {optimizer_kwargs!r} instead.")
        reserved = {"x0", "lr", "seed", "maximize"} & set(optimizer_kwargs)
        if reserved:
            raise ParameterError(f"The 'optimizer_kwargs' parameter of {owner} must not set {sorted(reserved)}: "
                                 "the ES owns them (pass lr=... directly).")
        self.optimizer_kwargs = dict(optimizer_kwargs)
        super().__init__(x0, seed=seed, maximize=maximize, mask=mask)
        check_memory(self._popsize, "popsize", owner, self._popsize * self.search_dim,
                     f"popsize x dim = {self._popsize} x {self.search_dim}")
        # The update rule always minimizes: the base class already turned values into a minimized f.
        self.inner = make_rule(self.optimizer, lr, owner, **self.optimizer_kwargs)
        self._center = self.x0.copy()

    @property
    def center(self) -> np.ndarray:
        return self.embed(self._center)

    @property
    def popsize(self) -> int:
        return self._popsize

    @property
    def lr(self) -> float:
        """The update rule's step size: after `load_state_dict`, the saved one (the rule holds the only copy)."""
        return self.inner.lr

    @lr.setter
    def lr(self, value: float) -> None:
        self.inner.lr = check_float(value, "lr", type(self).__name__, low=0.0, low_inclusive=False)

    def _ask(self) -> SeededCandidates:
        return mirrored_candidates(self.rng, self._center, self.sigma, self._popsize // 2, self.noise)

    def _tell(self, f: np.ndarray, grads: np.ndarray | None) -> None:
        cand: SeededCandidates = self._pending
        u = SHAPERS[self.shaping](f)
        # Descent direction on f: minus the ascent estimate on utility, (1/(n sigma)) sum_i u_i s_i eps_i.
        w = pair_weights(cand, u) * (-1.0 / (len(f) * self.sigma))
        g = cand.noise().T @ w  # a matrix-vector product: no (n, dim) temporary
        if self.weight_decay:
            g += self.weight_decay * self._center
        self._center = self.inner.step(self._center, g)

    def _state(self) -> dict[str, Any]:
        return {"inner": self.inner.state_dict(), "center": self._center.copy()}

    def _load_state(self, state: dict[str, Any]) -> None:
        self.inner.load_state_dict(state["inner"])
        center = np.array(state["center"], dtype=np.float64)
        if center.shape != (self.search_dim,):
            raise ParameterError(f"{type(self).__name__}: the saved center has shape {center.shape}, "
                                 f"not ({self.search_dim},).")
        self._center = center
