"""EvoTorch's own algorithms behind evograd's ask/tell protocol (the optional `evotorch` extra).

Why: a benchmark that compares "EvoTorch" with "evograd" mixes two things, the algorithm (its update
rule and defaults) and the engine (sampling, evaluation, parallelism). These adapters run EvoTorch's
update math unchanged (its functional `pgpe`/`cem`, and the search distributions behind its class-API
`SNES`/`XNES`) inside evograd's engine, so the same EvoTorch algorithm can be timed on both engines and
a difference is engine speed, not algorithm quality.

Conventions: float64 CPU tensors; EvoTorch always sees a minimization (objective_sense "min"): the base
class negates values for `maximize=True` and ranks NaN/inf worst. EvoTorch samples from torch's global
generator, so every ask runs inside `torch.random.fork_rng` with the CPU generator seeded from the
optimizer's own numpy stream: runs repeat from `seed`, the caller's torch RNG is left as it was, and a
state round trip needs no torch generator state. EvoTorch (which imports Ray: seconds) is imported only
when one of these optimizers is built, so `import evograd` neither needs nor loads it.

Parameters every adapter takes: `x0` (initial center, shape (dim,)); `sigma0` (float or (dim,) array,
default 1.0: the initial standard deviation, EvoTorch's `stdev_init`, which EvoTorch requires);
`radius_init` (float or None: EvoTorch's alternative, the norm of the initial stdev vector; when given it
replaces sigma0); `seed` and `maximize` (see `Optimizer`). Other names and defaults are EvoTorch's
unless a class docstring says "ours", except the step sizes, named as in every evograd optimizer: `lr` is
EvoTorch's `center_learning_rate`, `lr_sigma` its `stdev_learning_rate` and `scale_lr_sigma` its
`scale_learning_rate` (the EvoTorch names still work, with a DeprecationWarning).

One module, about 450 lines: four thin adapters whose length is mostly the parameter documentation of
EvoTorch's algorithms; splitting them would scatter one interface over several files.
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from ..core.shaping import finite_worst
from ..core.validation import ParameterError, check_bool, check_choice, check_float, check_int, check_memory, real_array
from ..optim.base import Optimizer, Renamed, named, renamed_arguments

RANKINGS = ("centered", "linear", "nes", "normalized", "raw")  # evotorch.tools.ranking.rankers
# optimizer_config keys of each functional center optimizer (besides its learning rate, our lr)
CENTER_OPTIMIZERS = {"clipup": ("momentum", "max_speed"), "adam": ("beta1", "beta2", "epsilon"), "sgd": ("momentum",)}
# "No limit" on the stdev's relative change for EvoTorch's functional API. It turns None into inf, and its
# limiter computes |stdev| * inf = NaN once a stdev entry reaches exactly 0 (a converged CEM does), which
# then crashes sampling ("normal expects all elements of std >= 0.0"). The largest float limits nothing
# for any stdev > 1e-308 and keeps a collapsed entry at 0.
NO_LIMIT = float(np.finfo(np.float64).max)


def evotorch_available() -> bool:
    """Whether EvoTorch can be imported, found without importing it."""
    import importlib.util

    return importlib.util.find_spec("evotorch") is not None


def _require_evotorch(name: str) -> None:
    try:
        import evotorch  # noqa: F401
    except ImportError as exc:
        raise ImportError(f"{name} needs EvoTorch: pip install 'evograd[evotorch]'") from exc


def _plain(x: Any) -> Any:
    """EvoTorch state (NamedTuples of tensors) as plain data: tensors become numpy arrays."""
    if isinstance(x, torch.Tensor):
        return x.detach().cpu().numpy().copy()
    if isinstance(x, tuple) and hasattr(x, "_fields"):
        return {k: _plain(getattr(x, k)) for k in x._fields}
    return x


def _restore(template: Any, data: Any) -> Any:
    """Inverse of `_plain`, shaped by a freshly built state of the same algorithm."""
    if isinstance(template, torch.Tensor):
        return torch.as_tensor(np.array(data), dtype=template.dtype)
    if isinstance(template, tuple) and hasattr(template, "_fields"):
        return type(template)(**{k: _restore(getattr(template, k), data[k]) for k in template._fields})
    return data


class _EvoTorchOptimizer(Optimizer):
    """Shared plumbing: argument checks, the initial spread, seeded sampling."""

    requires = "evotorch"  # the module these optimizers import when built (callers may skip them without it)

    def __init__(self, x0, sigma0, radius_init, popsize, seed, maximize, *, even_popsize=False, default_popsize=None):
        _require_evotorch(self.name)  # (again, for subclasses that skip it)
        owner = type(self).__name__
        if popsize is not None:
            popsize = check_int(popsize, "popsize", owner, low=2)
            if even_popsize and popsize % 2:
                raise ParameterError(f"The 'popsize' parameter of {owner} must be an even int when symmetric=True "
                                     f"(mirrored pairs). Got {popsize} instead.")
        if radius_init is not None:
            radius_init = check_float(radius_init, "radius_init", owner, low=0.0, low_inclusive=False)
        super().__init__(x0, seed=seed, maximize=maximize)
        d = self.dim
        if np.ndim(sigma0) == 0:
            self._stdev0 = np.full(d, check_float(sigma0, "sigma0", owner, low=0.0, low_inclusive=False))
        else:
            try:  # complex or text entries are refused, not converted
                s = np.asarray(real_array(sigma0), dtype=np.float64) if np.ndim(sigma0) == 1 else None
            except (TypeError, ValueError):
                s = None
            if s is None or s.shape != (d,) or not np.all(np.isfinite(s)) or not np.all(s > 0):
                raise ParameterError(f"The 'sigma0' parameter of {owner} must be a float > 0 or a finite positive "
                                     f"array of shape ({d},). Got {sigma0!r} instead.")
            self._stdev0 = s.copy()
        self.radius_init = radius_init
        if popsize is None:  # EvoTorch's SNES/XNES rule, 4 + floor(3 ln d), made even for mirrored sampling
            popsize = default_popsize or 4 + math.floor(3 * math.log(d))
            popsize += popsize % 2 if even_popsize else 0
        check_memory(popsize, "popsize", owner, popsize * d, f"popsize x dim = {popsize} x {d}")
        self._popsize = popsize

    def _spread(self) -> dict[str, Any]:
        """EvoTorch's two spellings of the initial spread: radius_init when given, else sigma0 as stdev_init."""
        if self.radius_init is not None:
            return {"stdev_init": None, "radius_init": self.radius_init}
        return {"stdev_init": torch.from_numpy(self._stdev0.copy()), "radius_init": None}

    @staticmethod
    def _stdev_bounds(owner: str, stdev_min: Any, stdev_max: Any, max_change: Any, functional: bool) -> dict:
        """EvoTorch's stdev limits, checked; `functional`: None as max change becomes NO_LIMIT (see there)."""
        def check(value, name, positive):
            return None if value is None else check_float(value, name, owner, low=0.0, low_inclusive=not positive)

        out = {"stdev_min": check(stdev_min, "stdev_min", False), "stdev_max": check(stdev_max, "stdev_max", True),
               "stdev_max_change": check(max_change, "stdev_max_change", True)}
        if functional and out["stdev_max_change"] is None:
            out["stdev_max_change"] = NO_LIMIT
        return out

    @property
    def popsize(self) -> int:
        return self._popsize

    def _sample(self, draw) -> np.ndarray:
        seed = int(self.rng.integers(0, 2**63 - 1))
        with torch.random.fork_rng(devices=[]):
            torch.default_generator.manual_seed(seed)  # the CPU generator only: CUDA streams stay untouched
            X = draw()
        return X.detach().cpu().numpy().astype(np.float64, copy=True)

    def _told(self, f: np.ndarray) -> tuple[torch.Tensor, torch.Tensor] | None:
        """The last population and its finite fitness as tensors, or None when nothing can be ranked."""
        if not np.isfinite(f).any():
            return None  # an all-failed generation carries no ranking; updating would only add noise
        X = np.array(self._pending.materialize(), dtype=np.float64)  # a writable copy: torch shares its memory
        return torch.from_numpy(X), torch.from_numpy(finite_worst(f))


class _Functional(_EvoTorchOptimizer):
    """An algorithm of `evotorch.algorithms.functional`: one immutable state tuple, `ask`, `tell`."""

    _funcs = ("", "")  # names of its ask and tell functions

    def _fn(self, i: int):
        import evotorch.algorithms.functional as FN

        return getattr(FN, self._funcs[i])

    @property
    def stdev(self) -> np.ndarray:
        return self._st.stdev.numpy().copy()

    def _ask(self) -> np.ndarray:
        return self._sample(lambda: self._fn(0)(self._st, popsize=self._popsize))

    def _tell(self, f: np.ndarray, grads: np.ndarray | None) -> None:
        told = self._told(f)
        if told is not None:
            self._st = self._fn(1)(self._st, *told)

    def _state(self) -> dict[str, Any]:
        return _plain(self._st)

    def _load_state(self, state: dict[str, Any]) -> None:
        self._st = _restore(self._st, state)


@named("evotorch_pgpe")
class EvoTorchPGPE(_Functional):
    """EvoTorch's PGPE (`evotorch.algorithms.functional.pgpe`; center optimizer ClipUp by default).

    Parameters
    ----------
    x0, sigma0, radius_init, seed, maximize
        See the module docstring.
    popsize : int or None, default None
        Even when `symmetric`. Required by EvoTorch; None gives 4 + floor(3 ln d) rounded up to even (ours).
    lr : float or None, default None
        EvoTorch's center_learning_rate, which it requires; None gives radius / 36 (ours), radius being the
        norm of the initial stdev. ClipUp caps the step at max_speed = 2 * lr (EvoTorch's default), so this
        makes radius = 18 * max_speed, the ratio of EvoTorch's documented Humanoid setting
        (radius_init=0.27, max_speed=0.015), whatever the scale of the problem.
    lr_sigma : float, default 0.1
        EvoTorch's stdev_learning_rate, which it requires; 0.1 is the value of its documented PGPE settings.
    ranking_method : str, default "centered"
        "centered", "linear", "nes", "normalized" or "raw".
    optimizer : str, default "clipup"
        Center optimizer: "clipup", "adam" or "sgd".
    optimizer_config : dict or None, default None
        That optimizer's other settings (clipup: momentum, max_speed; adam: beta1, beta2, epsilon; sgd: momentum).
    stdev_min, stdev_max : float or None, default None
        Bounds on the standard deviation.
    stdev_max_change : float or None, default 0.2
        Largest relative change of the stdev per generation (None: no limit).
    symmetric : bool, default True
        Mirrored sampling (center +- noise).
    """

    _funcs = ("pgpe_ask", "pgpe_tell")
    renamed_parameters = {"center_learning_rate": Renamed("lr", note="EvoTorch's name"),
                          "stdev_learning_rate": Renamed("lr_sigma", note="EvoTorch's name")}

    def __init__(self, x0: Any = None, sigma0: Any = 1.0, radius_init: float | None = None,
                 popsize: int | None = None, lr: float | None = None,
                 lr_sigma: float = 0.1, ranking_method: str = "centered", optimizer: str = "clipup",
                 optimizer_config: dict | None = None, stdev_min: float | None = None,
                 stdev_max: float | None = None, stdev_max_change: float | None = 0.2, symmetric: bool = True,
                 seed: int | None = None, maximize: bool = False, **renamed: Any):
        _require_evotorch(self.name)  # first: without EvoTorch no other message helps
        owner = type(self).__name__
        new = renamed_arguments(EvoTorchPGPE, renamed, {"lr": lr, "lr_sigma": lr_sigma})
        lr, lr_sigma = new["lr"], new["lr_sigma"]
        symmetric = check_bool(symmetric, "symmetric", owner)
        if lr is not None:
            lr = check_float(lr, "lr", owner, low=0.0, low_inclusive=False)
        lr_sigma = check_float(lr_sigma, "lr_sigma", owner, low=0.0)
        self.ranking_method = check_choice(ranking_method, "ranking_method", owner, RANKINGS)
        self.optimizer = check_choice(optimizer, "optimizer", owner, CENTER_OPTIMIZERS)
        allowed = CENTER_OPTIMIZERS[self.optimizer]
        config = {} if optimizer_config is None else optimizer_config
        if not isinstance(config, dict) or any(k not in allowed for k in config):
            raise ParameterError(f"The 'optimizer_config' parameter of {owner} must be a dict with keys among "
                                 f"{', '.join(allowed)} for optimizer={self.optimizer!r}. Got {optimizer_config!r} "
                                 "instead.")
        config = {k: check_float(v, f"optimizer_config['{k}']", owner, low=0.0) for k, v in config.items()}
        bounds = self._stdev_bounds(owner, stdev_min, stdev_max, stdev_max_change, functional=True)
        super().__init__(x0, sigma0, radius_init, popsize, seed, maximize, even_popsize=symmetric)
        radius = self.radius_init if self.radius_init is not None else float(np.linalg.norm(self._stdev0))
        self.lr = radius / 36 if lr is None else lr
        from evotorch.algorithms.functional import pgpe

        self._st = pgpe(center_init=torch.from_numpy(self.x0.copy()), center_learning_rate=self.lr,
                        stdev_learning_rate=lr_sigma, objective_sense="min",
                        ranking_method=self.ranking_method, optimizer=self.optimizer, optimizer_config=config,
                        symmetric=symmetric, **bounds, **self._spread())

    @property
    def center(self) -> np.ndarray:
        return self._st.optimizer_state.center.numpy().copy()


@named("evotorch_cem")
class EvoTorchCEM(_Functional):
    """EvoTorch's cross-entropy method (`evotorch.algorithms.functional.cem`, Duan et al. 2016's variant):
    the next center and stdev are the mean and stdev of the best `parenthood_ratio` of each population.

    Parameters
    ----------
    x0, sigma0, radius_init, seed, maximize
        See the module docstring.
    popsize : int or None, default None
        Required by EvoTorch; None gives 100 (ours).
    parenthood_ratio : float, default 0.1
        Fraction of each population that become parents, in (0, 1]; floor(popsize * parenthood_ratio) must
        be >= 2. Required by EvoTorch; 0.1 is ours: with EvoTorch's unlimited stdev change, (popsize 100,
        ratio 0.1) went furthest of the pairs we tried (d=10 from 2*ones, 20k evaluations, seeds 0-2:
        sphere 0.017-0.54, rosenbrock 0.2-1.7); (50, 0.5) stalled at sphere 0.28-0.71.
    stdev_min, stdev_max : float or None, default None
        Bounds on the standard deviation.
    stdev_max_change : float or None, default None
        Largest relative change of the stdev per generation; None (EvoTorch's CEM default) is no limit.
        CEM's stdev collapses fast without one: 0.2 (the value EvoTorch cites from Ha 2017) with
        popsize 50, ratio 0.2 reached sphere 1e-66 and rosenbrock 0.004-1.1 in the runs above.
    """

    _funcs = ("cem_ask", "cem_tell")

    def __init__(self, x0: Any = None, sigma0: Any = 1.0, radius_init: float | None = None,
                 popsize: int | None = None, parenthood_ratio: float = 0.1, stdev_min: float | None = None,
                 stdev_max: float | None = None, stdev_max_change: float | None = None,
                 seed: int | None = None, maximize: bool = False):
        _require_evotorch(self.name)
        owner = type(self).__name__
        self.parenthood_ratio = check_float(parenthood_ratio, "parenthood_ratio", owner, low=0.0, high=1.0,
                                            low_inclusive=False)
        bounds = self._stdev_bounds(owner, stdev_min, stdev_max, stdev_max_change, functional=True)
        super().__init__(x0, sigma0, radius_init, popsize, seed, maximize, default_popsize=100)
        if math.floor(self._popsize * self.parenthood_ratio) < 2:
            raise ParameterError(f"The 'parenthood_ratio' parameter of {owner} must leave at least 2 parents: "
                                 f"floor(popsize * parenthood_ratio) = floor({self._popsize} * "
                                 f"{self.parenthood_ratio}) < 2.")
        from evotorch.algorithms.functional import cem

        self._st = cem(center_init=torch.from_numpy(self.x0.copy()), parenthood_ratio=self.parenthood_ratio,
                       objective_sense="min", **bounds, **self._spread())

    @property
    def center(self) -> np.ndarray:
        return self._st.center.numpy().copy()


class _EvoTorchNES(_EvoTorchOptimizer):
    """SNES/XNES: EvoTorch's search distribution objects sample, estimate the gradients and update, in the
    steps of its `GaussianSearchAlgorithm._step_non_distributed`/`_update_distribution` (the class API
    itself needs an EvoTorch Problem to evaluate, which an ask/tell engine does not have). EvoTorch's
    optional center `optimizer` for these is not offered."""

    _distribution = ""  # class name in evotorch.distributions
    _stdev_lr = (0.0, 0.5)  # EvoTorch's default stdev learning rate: factor * (3 + ln d) / d**power

    renamed_parameters = {"center_learning_rate": Renamed("lr", note="EvoTorch's name"),
                          "stdev_learning_rate": Renamed("lr_sigma", note="EvoTorch's name"),
                          "scale_learning_rate": Renamed("scale_lr_sigma", note="EvoTorch's name")}

    def __init__(self, x0, sigma0, radius_init, popsize, lr, lr_sigma, scale_lr_sigma, ranking_method, seed,
                 maximize, bounds=None):
        _require_evotorch(self.name)
        owner = type(self).__name__
        self.lr = check_float(lr, "lr", owner, low=0.0, low_inclusive=False)
        if lr_sigma is not None:
            lr_sigma = check_float(lr_sigma, "lr_sigma", owner, low=0.0)
        scale = check_bool(scale_lr_sigma, "scale_lr_sigma", owner)
        self.ranking_method = check_choice(ranking_method, "ranking_method", owner, RANKINGS)
        super().__init__(x0, sigma0, radius_init, popsize, seed, maximize)
        self._bounds = bounds or {}
        d = self.dim
        factor, power = self._stdev_lr
        default = factor * (3 + math.log(d)) / d**power
        if lr_sigma is None:
            self.lr_sigma = default
        else:
            self.lr_sigma = lr_sigma * default if scale else lr_sigma
        from evotorch.tools import to_stdev_init

        stdev = torch.as_tensor(to_stdev_init(solution_length=d, **self._spread()), dtype=torch.float64)
        self._dist = self._make({"mu": torch.from_numpy(self.x0.copy()), "sigma": stdev.expand(d).clone()})

    def _make(self, params: dict):
        import evotorch.distributions as D

        return getattr(D, self._distribution)(params)

    @property
    def center(self) -> np.ndarray:
        return self._dist.mu.numpy().copy()

    def _ask(self) -> np.ndarray:
        return self._sample(lambda: self._dist.sample(self._popsize))

    def _tell(self, f: np.ndarray, grads: np.ndarray | None) -> None:
        told = self._told(f)
        if told is None:
            return
        g = self._dist.compute_gradients(*told, objective_sense="min", ranking_method=self.ranking_method)
        lrs = {"mu": self.lr, "sigma": self.lr_sigma}
        new = self._dist.update_parameters(g, learning_rates=lrs)
        if any(v is not None for v in self._bounds.values()):
            from evotorch.tools import modify_tensor

            b = self._bounds
            new = new.modified_copy(sigma=modify_tensor(self._dist.sigma, new.sigma, lb=b["stdev_min"],
                                                        ub=b["stdev_max"], max_change=b["stdev_max_change"]))
        self._dist = new

    def _state(self) -> dict[str, Any]:
        return {k: _plain(v) for k, v in self._dist.parameters.items() if isinstance(v, torch.Tensor)}

    def _load_state(self, state: dict[str, Any]) -> None:
        self._dist = self._make({k: torch.as_tensor(np.array(v), dtype=torch.float64) for k, v in state.items()})


@named("evotorch_snes")
class EvoTorchSNES(_EvoTorchNES):
    """EvoTorch's SNES (`evotorch.algorithms.SNES`): its `ExpSeparableGaussian` distribution and defaults.

    Parameters
    ----------
    x0, sigma0, radius_init, seed, maximize
        See the module docstring.
    popsize : int or None, default None
        None gives 4 + floor(3 ln d).
    lr : float, default 1.0
        EvoTorch's center_learning_rate.
    lr_sigma : float or None, default None
        EvoTorch's stdev_learning_rate; None gives 0.2 (3 + ln d) / sqrt(d).
    scale_lr_sigma : bool, default True
        EvoTorch's scale_learning_rate: a given lr_sigma multiplies that default instead of replacing it.
    ranking_method : str, default "nes"
        "nes", "centered", "linear", "normalized" or "raw".
    stdev_min, stdev_max, stdev_max_change : float or None, default None
        Bounds on the stdev and its largest relative change per generation (None: no limit).
    """

    _distribution = "ExpSeparableGaussian"
    _stdev_lr = (0.2, 0.5)

    def __init__(self, x0: Any = None, sigma0: Any = 1.0, radius_init: float | None = None,
                 popsize: int | None = None, lr: float = 1.0, lr_sigma: float | None = None,
                 scale_lr_sigma: bool = True, ranking_method: str = "nes", stdev_min: float | None = None,
                 stdev_max: float | None = None, stdev_max_change: float | None = None, seed: int | None = None,
                 maximize: bool = False, **renamed: Any):
        _require_evotorch(self.name)
        new = renamed_arguments(EvoTorchSNES, renamed,
                                {"lr": lr, "lr_sigma": lr_sigma, "scale_lr_sigma": scale_lr_sigma})
        bounds = self._stdev_bounds(type(self).__name__, stdev_min, stdev_max, stdev_max_change, functional=False)
        super().__init__(x0, sigma0, radius_init, popsize, new["lr"], new["lr_sigma"], new["scale_lr_sigma"],
                         ranking_method, seed, maximize, bounds)

    @property
    def stdev(self) -> np.ndarray:
        return self._dist.sigma.numpy().copy()


@named("evotorch_xnes")
class EvoTorchXNES(_EvoTorchNES):
    """EvoTorch's xNES (`evotorch.algorithms.XNES`): its `ExpGaussian` distribution (a full d x d transform A,
    so O(d^3) per generation) and defaults.

    Parameters
    ----------
    x0, sigma0, radius_init, seed, maximize
        See the module docstring (sigma0 is the diagonal of the initial A).
    popsize : int or None, default None
        None gives 4 + floor(3 ln d).
    lr : float, default 1.0
        EvoTorch's center_learning_rate.
    lr_sigma : float or None, default None
        EvoTorch's stdev_learning_rate; None gives 0.6 (3 + ln d) / (d sqrt(d)).
    scale_lr_sigma : bool, default True
        EvoTorch's scale_learning_rate: a given lr_sigma multiplies that default instead of replacing it.
    ranking_method : str, default "nes"
        "nes", "centered", "linear", "normalized" or "raw".
    """

    _distribution = "ExpGaussian"
    _stdev_lr = (0.6, 1.5)

    def __init__(self, x0: Any = None, sigma0: Any = 1.0, radius_init: float | None = None,
                 popsize: int | None = None, lr: float = 1.0, lr_sigma: float | None = None,
                 scale_lr_sigma: bool = True, ranking_method: str = "nes", seed: int | None = None,
                 maximize: bool = False, **renamed: Any):
        _require_evotorch(self.name)
        new = renamed_arguments(EvoTorchXNES, renamed,
                                {"lr": lr, "lr_sigma": lr_sigma, "scale_lr_sigma": scale_lr_sigma})
        super().__init__(x0, sigma0, radius_init, popsize, new["lr"], new["lr_sigma"], new["scale_lr_sigma"],
                         ranking_method, seed, maximize)
