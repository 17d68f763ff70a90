"""CMA-ES: pycma (Hansen's reference implementation) behind the ask/tell protocol, plus IPOP/BIPOP restarts.

pycma offers restarts only inside its `fmin2` loop, which owns the objective function; an ask/tell user
(or our evaluator) cannot use it. So the restart controller is written here: with restarts on, after
every `tell` we ask pycma's own `stop()` and, when it fires, start a fresh `CMAEvolutionStrategy` with
the population size and step size that IPOP (Auger & Hansen 2005) or BIPOP (Hansen 2009) prescribe,
mirroring `fmin2`.

Random numbers: the engine draws its normal vectors through pycma's `randn` option from a
`numpy.random.RandomState(seed)` owned by this object, so a run depends on nothing else (numpy's global
state included) and, for the same x0, sigma0 and seed, asks exactly what
`cma.CMAEvolutionStrategy(x0, sigma0, {"randn": np.random.RandomState(seed).randn, "seed": np.nan})` asks.
"""
from __future__ import annotations

import numbers
from typing import TYPE_CHECKING, Any

import numpy as np

from ..core.shaping import finite_worst
from ..core.validation import ParameterError, check_bool, check_choice, check_float, check_int, check_memory, real_array
from .base import Optimizer, named
from .cmaes_engine import CMA_CLASSES, QUIET_OPTIONS, dump_engine, load_engine  # noqa: F401 (CMA_CLASSES: public here)

if TYPE_CHECKING:  # pycma (and the scipy/matplotlib it pulls in) loads only when a cmaes is built: every
    import cma  # worker process imports evograd, and most never run CMA-ES



@named("cmaes")
class CMAES(Optimizer):
    """Covariance matrix adaptation evolution strategy (pycma engine), optionally with restarts.

    Parameters
    ----------
    x0 : array (dim,)
        Initial mean; restarts start again from it (as pycma's `fmin2` does) unless `restart_bounds`.
    sigma0 : float, default 0.5
        Initial step size (standard deviation of every coordinate). pycma's advice is about a quarter
        of the width of the region where the optimum is expected; 0.5 suits unit-scale parameters
        (policy weights, the benchmark functions from x0 = 2).
    popsize : int >= 2 or None, default None
        Population size of the first run; None means pycma's default 4 + floor(3 ln dim).
    separable : bool, default False
        sep-CMA-ES: diagonal covariance (pycma option `CMA_diagonal=True`), O(dim) per sample instead
        of O(dim^2), and faster learning rates; for high dimensions or nearly separable problems.
    restarts : None, "ipop" or "bipop", default None
        None: a single run. When pycma's own stop criteria fire (tolfun, tolx, tolstagnation,
        conditioncov, ..., and its default `maxiter`), nothing breaks: `ask` keeps returning samples
        of the stopped run (they may no longer move) and `stopped` says why; ending the loop is the
        caller's decision (pycma's own `ask` behaves the same).
        "ipop": restart from x0 with sigma0 and the population size multiplied by `incpopsize`.
        "bipop": alternate IPOP-style large-population runs with small-population local runs
        (population lam0 * (lam_large / lam0)**(u**2), step sigma0 * 0.01**u with independent uniforms
        u, evaluation budget half the evaluations spent so far in the large regime); the regime with
        fewer evaluations spent so far runs next, and the first run counts as small (as in `fmin2`).
        Small-regime runs end on pycma's stop criteria or on that budget.
    max_restarts : int >= 0, default 9
        Restarts with a larger population allowed (BIPOP's small runs are not counted, as in `fmin2`).
        When they are used up, the last run continues as in `restarts=None`.
    incpopsize : float > 1, default 2
        Population growth factor per large restart.
    restart_bounds : None or (low, high), default None
        None: every restart starts from x0. A pair of scalars or (dim,) arrays: every restart starts
        from a point drawn uniformly in that box (from `rng`), as in Hansen's BBOB experiments; this
        matters most for BIPOP, whose small-step local runs are of little use from one fixed point.
        The search itself is not bounded.
    seed : int or None
        Seeds the engine's `RandomState`; None draws one from the optimizer's generator. BIPOP's
        uniform draws come from the optimizer's generator `rng`, restarted engines continue the same
        `RandomState`.
    maximize : bool, default False
    mask : bool array (dim,) or None, default None
        Coordinates to search; the others stay at x0. CMA-ES runs on the unmasked sub-vector (a k x k
        covariance, pycma's default popsize for dimension k) and its points are embedded into x0, rather than
        pycma's `fixed_variables` option, which would still size the engine by the full dimension.

    Attributes
    ----------
    stopped : dict
        pycma's stop conditions of the current run (empty while it runs), computed on access by
        `es.stop()`, which caches them per iteration. Without restarts the wrapper does not call it
        in `tell` (that saves ~7% per generation at dim 10); poll it once per generation, as pycma's
        `while not es.stop()` loop does, to get pycma's exact semantics (e.g. for `tolflatfitness`).
        With restarts it is checked after every `tell`.
    restarts_done, regime, runs :
        Number of restarts so far, the current run's regime ("default", "large", "small") and one
        record per finished run (regime, popsize, sigma0, evaluations, iterations, best f in the
        internal minimized sign, stop conditions, plus `"bipop_budget"` when a small BIPOP run used up
        its evaluation budget).
    engine : cma.CMAEvolutionStrategy
        The current pycma object (for inspection; do not ask/tell it directly).
    """

    def __init__(
        self,
        x0: Any = None,
        sigma0: float = 0.5,
        popsize: int | None = None,
        separable: bool = False,
        restarts: str | None = None,
        max_restarts: int = 9,
        incpopsize: float = 2.0,
        restart_bounds: Any = None,
        seed: int | None = None,
        maximize: bool = False,
        mask: Any = None,
    ):
        owner = type(self).__name__
        self.sigma0 = check_float(sigma0, "sigma0", owner, low=0.0, low_inclusive=False)
        self._popsize_arg = None if popsize is None else check_int(popsize, "popsize", owner, low=2)
        self.separable = check_bool(separable, "separable", owner)
        self.restarts = check_choice(restarts, "restarts", owner, [None, "ipop", "bipop"])
        self.max_restarts = check_int(max_restarts, "max_restarts", owner, low=0)
        self.incpopsize = check_float(incpopsize, "incpopsize", owner, low=1.0, low_inclusive=False)
        if seed is not None:  # the engine's numpy RandomState takes seeds below 2**32
            check_int(seed, "seed", owner, low=0, high=2**32 - 1)
        super().__init__(x0, seed=seed, maximize=maximize, mask=mask)
        self.restart_bounds = None if restart_bounds is None else _check_box(restart_bounds, self.search_dim, owner,
                                                                             self.restrict)
        self._check_memory(owner)
        if not np.isfinite(np.abs(self.x0).max() + 100 * self.sigma0):  # pycma asserts on non-finite samples
            raise ParameterError(f"The 'sigma0' parameter of {owner} must keep the samples x0 + sigma0 * N(0, I) "
                                 f"finite (max|x0| + 100 sigma0 < 1.8e308). Got {self.sigma0!r} instead.")
        engine_seed = self.seed if self.seed is not None else int(self.rng.integers(2**32))
        self._rs = np.random.RandomState(engine_seed)
        self._es = self._new_engine(self.x0, self._popsize_arg, self.sigma0)
        self._popsize0 = int(self._es.popsize)
        self._X: list | None = None  # pycma's own solution list from the last ask, handed back to tell
        self._ctl: dict[str, Any] = {
            "restarts": 0, "n_large": 0, "n_small": 0, "regime": "default", "sigma": self.sigma0,
            "run_evals": 0, "budget": None, "small_evals": 0, "large_evals": 0, "runs": [],
        }

    # ------------------------------------------------------------------ protocol
    @property
    def center(self) -> np.ndarray:
        """The current run's distribution mean (pycma's xfavorite)."""
        return self.embed(self._es.mean)

    @property
    def popsize(self) -> int:
        return int(self._es.popsize)

    @property
    def engine(self) -> cma.CMAEvolutionStrategy:
        return self._es

    @property
    def stopped(self) -> dict[str, Any]:
        return {str(k): _plain(v) for k, v in self._es.stop().items()}

    @property
    def restarts_done(self) -> int:
        return self._ctl["restarts"]

    @property
    def regime(self) -> str:
        return self._ctl["regime"]

    @property
    def runs(self) -> list[dict[str, Any]]:
        return self._ctl["runs"]

    def _ask(self) -> np.ndarray:
        self._X = self._es.ask()
        return np.array(self._X)

    def _tell(self, f: np.ndarray, grads: np.ndarray | None) -> None:
        if not np.isfinite(f).all():
            f = finite_worst(f)  # pycma needs finite values; NaN/inf rank below every finite one
        X = self._X if self._X is not None else list(self._pending.materialize())
        self._X = None
        es, ctl = self._es, self._ctl
        es.tell(X, f.tolist())
        ctl["run_evals"] += len(f)
        if self.restarts is None or ctl["n_large"] >= self.max_restarts:
            return  # no restart left to trigger: `stopped` is computed only when asked for
        stop = es.stop()
        over_budget = ctl["budget"] is not None and ctl["run_evals"] >= ctl["budget"]
        if stop or over_budget:
            why = {str(k): _plain(v) for k, v in stop.items()}
            if over_budget:
                why["bipop_budget"] = ctl["budget"]
            self._restart(why)

    def _check_memory(self, owner: str) -> None:
        """Refuse sizes pycma cannot hold before it tries (a huge popsize makes it hang, not fail): its
        covariance (dim x dim unless separable), a population, and the population after one IPOP restart."""
        d = self.search_dim
        shape = f"an array of shape ({d},)"
        if not self.separable:
            check_memory(shape, "x0", owner, d * d,
                         f"dim x dim covariance = {d} x {d} (separable=True keeps only its diagonal)")
        pop = self._popsize_arg or 4 + int(3 * np.log(d))  # pycma's default
        given = self._popsize_arg is not None
        check_memory(pop if given else shape, "popsize" if given else "x0", owner, pop * d,
                     f"popsize x dim = {pop} x {d}")
        if self.restarts is not None:
            check_memory(self.incpopsize, "incpopsize", owner, pop * self.incpopsize * d,
                         f"popsize x incpopsize x dim (after one restart) = {pop} x {self.incpopsize:g} x {d}")

    # ------------------------------------------------------------------ restarts
    def _new_engine(self, x0: np.ndarray, popsize: int | None, sigma: float) -> cma.CMAEvolutionStrategy:
        opts = {"randn": self._rs.randn, "seed": np.nan, **QUIET_OPTIONS}
        if popsize is not None:
            opts["popsize"] = int(popsize)
        if self.separable:
            opts["CMA_diagonal"] = True
        import cma

        return cma.CMAEvolutionStrategy(x0, sigma, opts)

    def _restart(self, why: dict[str, Any]) -> None:
        ctl, es = self._ctl, self._es
        ctl["runs"].append({
            "regime": ctl["regime"], "popsize": int(es.popsize), "sigma0": float(ctl["sigma"]),
            "evals": int(ctl["run_evals"]), "iterations": int(es.countiter), "best_f": float(es.best.f),
            "stop": why,
        })
        ctl["large_evals" if ctl["regime"] == "large" else "small_evals"] += ctl["run_evals"]
        large = self.restarts == "ipop" or ctl["small_evals"] >= max(1, ctl["large_evals"])
        if large:
            ctl["n_large"] += 1
            popsize = int(self._popsize0 * self.incpopsize ** ctl["n_large"])
            sigma, budget = self.sigma0, None
        else:
            ctl["n_small"] += 1
            u_sigma, u_pop = self.rng.uniform(size=2)
            sigma = self.sigma0 * 0.01**u_sigma
            popsize = max(2, int(self._popsize0 * (self.incpopsize ** ctl["n_large"]) ** (u_pop**2)))
            budget = 0.5 * ctl["large_evals"]
        ctl.update(restarts=ctl["restarts"] + 1, regime="large" if large else "small", sigma=float(sigma),
                   run_evals=0, budget=budget)
        x0 = self.x0 if self.restart_bounds is None else self.rng.uniform(*self.restart_bounds)
        self._es = self._new_engine(x0, popsize, sigma)

    # ------------------------------------------------------------------ state
    def _state(self) -> dict[str, Any]:
        return {
            "engine": dump_engine(self._es, self._rs),
            "randn_state": self._rs.get_state(legacy=False),
            "popsize0": self._popsize0,
            "control": _copy_plain(self._ctl),
        }

    def _load_state(self, state: dict[str, Any]) -> None:
        rs = np.random.RandomState()
        rs.set_state(state["randn_state"])
        es = load_engine(state["engine"], rs, self.search_dim)
        self._rs, self._es, self._X = rs, es, None
        self._popsize0 = int(state["popsize0"])
        self._ctl = _copy_plain(state["control"])

def _check_box(box: Any, dim: int, owner: str, restrict: Any = None) -> tuple[np.ndarray, np.ndarray]:
    """(low, high) of shape (dim,); `restrict` cuts full-length (masked-optimizer) bounds to the searched ones."""
    msg = (f"The 'restart_bounds' parameter of {owner} must be a (low, high) pair of scalars or (dim,) "
           f"arrays with low < high. Got {box!r} instead.")
    try:
        low, high = (np.broadcast_to(np.asarray((restrict or np.asarray)(real_array(b)), dtype=np.float64),
                                     (dim,)).copy() for b in box)
    except (TypeError, ValueError):
        raise ParameterError(msg) from None
    if not (np.all(np.isfinite(low)) and np.all(np.isfinite(high)) and np.all(low < high)):
        raise ParameterError(msg)
    return low, high


def _plain(v: Any) -> Any:
    """pycma stop values (thresholds, index lists, None) as plain data."""
    if v is None or isinstance(v, (bool, str)):
        return v
    if isinstance(v, numbers.Integral):
        return int(v)
    if isinstance(v, numbers.Real):
        return float(v)
    if isinstance(v, (list, tuple, np.ndarray)):
        return [_plain(x) for x in v]
    return repr(v)


def _copy_plain(d: Any) -> Any:
    if isinstance(d, dict):
        return {k: _copy_plain(v) for k, v in d.items()}
    if isinstance(d, list):
        return [_copy_plain(v) for v in d]
    return d
