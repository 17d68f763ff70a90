"""The one protocol every optimizer speaks: ask / tell / best / state_dict.

The base class does the shared work (argument checks, the sign convention, NaN handling, best-so-far,
counters, the random stream, state round trips) so an algorithm module writes only `_ask`/`_tell`
and the few lines of state that are its own.

Sign convention, documented once: optimizers minimize unless built with `maximize=True`. Internally
everything is minimized: `tell` receives the user's raw values, negated before the algorithm sees them
when `maximize=True`. `best.value` is always a raw value as the user passed it in.

Names (the vocabulary table in README.md): `popsize` is the number of candidates one `ask` returns,
`sigma0` the initial search scale (the standard deviation of the first population around x0), `lr` a
step size, `noise` the noise source ("rng" or "table"). A name an optimizer no longer uses is listed in
its `renamed_parameters` (see `Renamed`): it keeps working with a DeprecationWarning, or it raises an
error naming its replacement where its meaning changed; never a silent change of meaning.
"""
from __future__ import annotations

import inspect
import math
import warnings
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from ..core.candidates import Candidates, DenseCandidates
from ..core.progress import warn_repeating
from ..core.validation import NotRealError, ParameterError, check_array, check_bool, check_seed, real_array
from .masks import EmbeddedCandidates, check_saved_mask, embed, masked_start

STATE_VERSION = 1


def named(name: str):
    """Class decorator of the built-in optimizers: the name `evograd.make` knows them by (the registry's
    table maps it back to the class), recorded in their states."""

    def deco(cls: type) -> type:
        cls.name = name
        return cls

    return deco


@dataclass(frozen=True)
class Best:
    """Best point seen so far (`x` is None and `value` NaN before the first finite evaluation)."""

    x: np.ndarray | None
    value: float


class NonFiniteWarning(RuntimeWarning):
    """Some evaluations returned NaN or inf; they were ranked worst."""


@dataclass(frozen=True)
class Renamed:
    """A parameter (and attribute) name an optimizer no longer uses, and what replaced it.

    keeps_working=True: the old name still works, with a DeprecationWarning, and means exactly what `new`
    means. False: it raises an error naming `new`, because keeping it would change its meaning (CBO's
    `sigma` is now its `diffusion`, while `sigma0` is the search scale everywhere). `note` says why.
    """

    new: str
    keeps_working: bool = True
    note: str = ""

    def message(self, old: str, owner: str, what: str = "parameter") -> str:
        note = f" ({self.note})" if self.note else ""
        if self.keeps_working:
            return (f"The '{old}' {what} of {owner} is deprecated: it is now called '{self.new}'{note}. "
                    "The old name still works for now.")
        use = f"{self.new}=..." if what == "parameter" else f".{self.new}"
        return f"The '{old}' {what} of {owner} was renamed '{self.new}'{note}. Use {use} instead."


def renamed_arguments(cls: type, old: dict[str, Any], current: dict[str, Any]) -> dict[str, Any]:
    """The new names' values with the old names among a constructor's `**old` keyword arguments folded in.

    `cls` is the class whose `__init__` received them (its `renamed_parameters` and its defaults decide);
    `current` maps each new name to the value received. An old name that keeps working warns and takes its
    new name's place; one that does not raises ParameterError naming the new one; giving an old name and its
    new one (at a value other than its default) is an error; a name that never was a parameter is the
    TypeError Python gives for an unexpected keyword.
    """
    owner = cls.__name__
    out = dict(current)
    defaults = inspect.signature(cls.__init__).parameters
    for key, value in old.items():
        r = cls.renamed_parameters.get(key)
        if r is None:
            raise TypeError(f"{owner}.__init__() got an unexpected keyword argument '{key}'")
        if not r.keeps_working:
            raise ParameterError(r.message(key, owner))
        default = defaults[r.new].default
        if r.new in out and not (out[r.new] is default or _plain_equal(out[r.new], default)):
            raise ParameterError(f"The '{key}' parameter of {owner} is the old name of '{r.new}': give one of "
                                 f"them, not both. Got {key}={value!r} and {r.new}={out[r.new]!r}.")
        warnings.warn(r.message(key, owner), DeprecationWarning, stacklevel=3)
        out[r.new] = value
    return out


def _plain_equal(a: Any, b: Any) -> bool:
    try:
        return bool(a == b)
    except (TypeError, ValueError):  # arrays
        return False


class Optimizer:
    """Base class. Subclasses set `name` (via `@register`) and implement `_ask`, `_tell`,
    `_state`/`_load_state`, and may set `needs_grad`.

    Parameters common to every optimizer
    ------------------------------------
    x0 : array (dim,) or, for population methods that allow it, (n, dim)
        Initial center or initial population.
    seed : int or None
        Seeds the optimizer's own `numpy.random.Generator`; numpy's global state is never touched.
    maximize : bool, default False
        Treat larger values as better (optimizers minimize otherwise).
    mask : bool array (dim,) or None, default None
        True marks the coordinates to search; the others stay exactly at their value in x0, are never
        perturbed nor updated and cost nothing (see `evograd.optim.masks`). The algorithm then runs on the
        sub-vector: `self.x0` is x0[..., mask] and `search_dim` its length, while `dim`, asks, `center`, `best.x`
        and told gradients have the full length.
    """

    name = "optimizer"
    needs_grad = False
    allow_population_x0 = False  # GA and CBO accept an (n, dim) initial population
    # old parameter (and attribute) names -> what replaced them; see `Renamed`
    renamed_parameters: ClassVar[dict[str, Renamed]] = {}

    def __init__(self, x0: Any, seed: int | None = None, maximize: bool = False, *, x0_optional: bool = False,
                 mask: Any = None):
        owner = type(self).__name__
        self.seed = check_seed(seed, owner)
        self.maximize = check_bool(maximize, "maximize", owner)
        if x0 is None:
            if not x0_optional:
                raise ParameterError(f"The 'x0' parameter of {owner} is required (an array of shape (dim,)).")
            self.x0 = None
        else:
            ndim = (1, 2) if self.allow_population_x0 else (1,)
            self.x0 = check_array(x0, "x0", owner, ndim=ndim)
        self.rng = np.random.default_rng(self.seed)
        self.generation = 0
        self.evals = 0
        self.nonfinite = 0  # evaluations that came back NaN/inf, ranked worst
        self._best_x: np.ndarray | None = None
        self._best_f = np.inf  # internal (minimized) value of the best point
        self._best_value = float("nan")
        self._pending: Candidates | None = None
        self._view: EmbeddedCandidates | None = None  # the pending ask as full rows, when masked
        self.mask: np.ndarray | None = None
        self._fixed: np.ndarray | None = None  # with a mask: the full point holding the masked coordinates
        self._active: np.ndarray | None = None  # ... and the indices of the searched ones
        if mask is not None:
            self.mask, self._fixed, self._active, self.x0 = masked_start(self.x0, mask, owner)

    # ------------------------------------------------------------------ protocol
    @property
    def dim(self) -> int:
        """Length of the points asked and told (masked coordinates included)."""
        return int(self.x0.shape[-1]) if self._fixed is None else int(self._fixed.shape[0])

    @property
    def search_dim(self) -> int:
        """Length of the vectors the algorithm works on: `dim` less the coordinates masked through this base class
        (the zeroth-order estimators keep their mask in the full space: see their `unmasked`)."""
        return int(self.x0.shape[-1])

    def embed(self, v: Any, fill: float | None = None) -> np.ndarray:
        """(search_dim,) or (n, search_dim) values as full-length copies, masked coordinates from x0 (or `fill`)."""
        if self._fixed is None:
            return np.array(v, dtype=np.float64)
        return embed(v, self._fixed, self._active, fill)

    def restrict(self, v: Any) -> Any:
        """A per-coordinate array of shape (dim,) cut to the searched coordinates (other shapes unchanged)."""
        if self._fixed is None or np.shape(v) != (self.dim,):
            return v
        return np.asarray(v)[self._active]

    @property
    def center(self) -> np.ndarray:
        """The optimizer's current point estimate, the one to deploy and re-evaluate: the distribution
        mean for ES and CMA-ES, the consensus for CBO, the elite for GA, the parameters for SGD/Adam.
        Before any tell it is x0 (the mean of an initial population)."""
        if self._best_x is not None:
            return self.embed(self._best_x)
        return self.embed(self.x0 if self.x0.ndim == 1 else self.x0.mean(axis=0))

    @property
    def converged(self) -> bool:
        """True once the optimizer can make no further progress by its own tests (an exact method at a
        stationary point, e.g. L-BFGS), so a driver may end the run with stop_reason "converged". Population
        methods never say so: their stopping rules (CMA-ES's `stopped`) are left to the caller."""
        return False

    @property
    def best(self) -> Best:
        x = None if self._best_x is None else self.embed(self._best_x)
        return Best(x, self._best_value)

    def ask(self) -> np.ndarray:
        """Candidates to evaluate next, as a dense (popsize, dim) array.

        Asking again before `tell` returns the same candidates (ask is idempotent until told).
        """
        return self.ask_candidates().materialize()

    def ask_candidates(self) -> Candidates:
        """Like `ask`, in the compact form an evaluator may ship to workers (see `evograd.core.candidates`)."""
        if self._pending is None:
            cand = self._ask()
            if not isinstance(cand, Candidates):
                cand = DenseCandidates(cand)
            self._pending = cand
        if self._fixed is None:
            return self._pending
        if self._view is None or self._view.inner is not self._pending:
            self._view = EmbeddedCandidates(self._pending, self._fixed, self._active)
        return self._view

    def tell(self, values: Any, grads: Any = None) -> None:
        """Report the values (and, for gradient optimizers, the gradients) of the last `ask`.

        NaN/inf values are ranked worst, counted in `nonfinite`, warned about, and never become best.
        """
        owner = type(self).__name__
        if self._pending is None:
            raise RuntimeError(f"{owner}.tell() was called before ask(): ask for candidates first.")
        n = len(self._pending)
        try:  # None, "1.5" and complex values are mistakes to report, not numbers to convert
            raw = np.asarray(real_array(values), dtype=np.float64)
        except NotRealError as exc:
            where = "" if exc.index is None else f" (candidate {exc.index})"
            raise ParameterError(f"The 'values' passed to {owner}.tell() must be real numbers, one per candidate. "
                                 f"Got {exc.what}{where} instead.") from None
        if raw.ndim == 0 and n == 1:
            raw = raw.reshape(1)
        if raw.shape != (n,):
            raise ParameterError(
                f"The 'values' passed to {owner}.tell() must have shape ({n},), one per asked candidate. "
                f"Got shape {raw.shape} instead."
            )
        g = self._check_grads(grads, n)
        f = -raw if self.maximize else raw.copy()
        # one reduction decides the common all-finite case; the elementwise mask only when needed
        bad = None if math.isfinite(f.sum()) else ~np.isfinite(f)
        if bad is not None and bad.any():
            self.nonfinite += int(bad.sum())
            warn_repeating(
                f"{owner}: {int(bad.sum())} of {n} values are NaN or inf (generation {self.generation}); "
                "they are ranked worst.",
                NonFiniteWarning,
                stacklevel=2,
            )
            f[bad] = np.inf
        if g is not None and self.maximize:
            g = -g
        self._update_best(f, raw)
        self._tell(f, g)
        self.generation += 1
        self.evals += n
        self._pending = None

    # ------------------------------------------------------------------ sense
    def set_sense(self, maximize: bool) -> None:
        """Used by `minimize`/`train` so users never flip signs by hand; only before the first tell."""
        maximize = bool(maximize)
        if maximize == self.maximize:
            return
        if self.generation > 0:
            raise RuntimeError(
                f"{type(self).__name__} was built with maximize={self.maximize} and has already been told "
                f"values; it cannot switch to maximize={maximize}. Build a fresh optimizer."
            )
        self.maximize = maximize

    # ------------------------------------------------------------------ state
    def state_dict(self) -> dict[str, Any]:
        """Plain data (arrays, numbers, strings, dicts/lists of them) with a version key.

        Loading it into an optimizer built with the same arguments reproduces the next ask bit for bit.
        """
        return {
            "version": STATE_VERSION,
            "optimizer": self.name,
            "dim": None if self.x0 is None else self.dim,
            "seed": self.seed,
            "maximize": self.maximize,
            "generation": self.generation,
            "evals": self.evals,
            "nonfinite": self.nonfinite,
            "mask": None if self.mask is None else self.mask.copy(),
            "rng": self.rng.bit_generator.state,
            "best_x": None if self._best_x is None else self._best_x.copy(),
            "best_f": float(self._best_f),
            "best_value": float(self._best_value),
            "pending": None if self._pending is None else self._pending.to_state(),
            "algorithm": self._state(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        owner = type(self).__name__
        if not isinstance(state, dict) or "version" not in state:
            raise ParameterError(f"{owner}.load_state_dict() needs a dict from state_dict() (with a 'version' key).")
        if state["version"] != STATE_VERSION:
            raise ParameterError(
                f"{owner}: state version {state['version']} is not supported (expected {STATE_VERSION}).")
        if state.get("optimizer") != self.name:
            raise ParameterError(
                f"{owner}: this state belongs to optimizer {state.get('optimizer')!r}, not {self.name!r}.")
        if state.get("dim") is not None and self.x0 is not None and state["dim"] != self.dim:
            raise ParameterError(f"{owner}: state has dim {state['dim']}, this optimizer has dim {self.dim}.")
        if "mask" in state:  # states written before masks existed have none
            check_saved_mask(state["mask"], self.mask, owner)
        self.seed = state.get("seed", self.seed)  # the stream continues the saved run's: report its seed
        self.maximize = bool(state["maximize"])
        self.generation = int(state["generation"])
        self.evals = int(state["evals"])
        self.nonfinite = int(state["nonfinite"])
        self.rng.bit_generator.state = state["rng"]
        self._best_x = None if state["best_x"] is None else np.array(state["best_x"], dtype=np.float64)
        self._best_f = float(state["best_f"])
        self._best_value = float(state["best_value"])
        self._pending = None if state["pending"] is None else Candidates.from_state(state["pending"])
        self._load_state(state["algorithm"])

    # ------------------------------------------------------------------ for subclasses
    @property
    def popsize(self) -> int:
        """Candidates per generation: the number of rows the next `ask` returns, in every optimizer."""
        raise NotImplementedError  # pragma: no cover

    def _ask(self) -> Candidates | np.ndarray:
        raise NotImplementedError  # pragma: no cover

    def _tell(self, f: np.ndarray, grads: np.ndarray | None) -> None:
        raise NotImplementedError  # pragma: no cover

    def _state(self) -> dict[str, Any]:
        return {}

    def _load_state(self, state: dict[str, Any]) -> None:
        pass

    def _check_grads(self, grads: Any, n: int) -> np.ndarray | None:
        owner = type(self).__name__
        if grads is None:
            if self.needs_grad:
                raise ParameterError(
                    f"{owner} needs gradients: call tell(values, grads) with grads of shape ({n}, dim).")
            return None
        dim = self.dim
        try:
            g = np.asarray(real_array(grads), dtype=np.float64)
        except NotRealError as exc:
            where = "" if exc.index is None else f" (candidate {exc.index // dim})"
            raise ParameterError(f"The 'grads' passed to {owner}.tell() must be real numbers. "
                                 f"Got {exc.what}{where} instead.") from None
        if g.shape == (dim,) and n == 1:
            g = g.reshape(1, dim)
        if g.shape != (n, dim):
            raise ParameterError(
                f"The 'grads' passed to {owner}.tell() must have shape ({n}, {dim}). Got shape {g.shape} instead."
            )
        return g if self._active is None else g[:, self._active]  # masked coordinates' gradients are not used

    def _update_best(self, f: np.ndarray, raw: np.ndarray) -> None:
        i = int(np.argmin(f))
        if math.isfinite(f[i]) and f[i] < self._best_f:
            self._best_f = float(f[i])
            self._best_value = float(raw[i])
            self._best_x = self._pending.take([i])[0].copy()

    def __getattr__(self, name: str) -> Any:
        # reached only when the normal look-up fails: an old attribute name warns or names its replacement
        r = None if name.startswith("_") else type(self).renamed_parameters.get(name)
        if r is None:
            raise AttributeError(f"'{type(self).__name__}' object has no attribute '{name}'")
        message = r.message(name, type(self).__name__, "attribute")
        if not r.keeps_working:
            raise AttributeError(message)
        warnings.warn(message, DeprecationWarning, stacklevel=2)
        return getattr(self, r.new)

    def __repr__(self) -> str:
        dim = "?" if self.x0 is None else self.dim
        return (f"{type(self).__name__}(dim={dim}, seed={self.seed}, maximize={self.maximize}, "
                f"generation={self.generation})")
