"""One registry: every optimizer is built by name through `make`, so configs and the CLI need no imports.

The built-in optimizers are a plain table of name -> "module:Class", imported when first asked for: a
run of CMA-ES never imports torch (the gradient optimizers) or EvoTorch's adapters, and nothing here
imports an optimizer module at import time. `register` adds a user's own class under a name."""
from __future__ import annotations

import difflib
import importlib
import inspect
from typing import Callable, TypeVar

from ..core.validation import ParameterError

BUILTIN: dict[str, str] = {
    "ga": "evograd.optim.ga:GA",
    "openai_es": "evograd.optim.openai_es:OpenAIES",
    "ars": "evograd.optim.ars:ARS",
    "snes": "evograd.optim.snes:SNES",
    "cmaes": "evograd.optim.cmaes:CMAES",
    "cbo": "evograd.optim.cbo:CBO",
    "lbfgs": "evograd.optim.lbfgs:LBFGS",
    "spsa": "evograd.optim.zo_random:SPSA",
    "mezo": "evograd.optim.zo_random:MeZO",
    "rge": "evograd.optim.zo_random:RGE",
    "zo_signsgd": "evograd.optim.zo_random:ZOSignSGD",
    "cge": "evograd.optim.zo_coordinate:CGE",
    "forward_grad": "evograd.zo.forward_grad:ForwardGrad",
    "sgd": "evograd.rl.optimizers:SGD",
    "adam": "evograd.rl.optimizers:Adam",
    "evotorch_pgpe": "evograd.interop.evotorch:EvoTorchPGPE",
    "evotorch_cem": "evograd.interop.evotorch:EvoTorchCEM",
    "evotorch_snes": "evograd.interop.evotorch:EvoTorchSNES",
    "evotorch_xnes": "evograd.interop.evotorch:EvoTorchXNES",
}
_REGISTRY: dict[str, type] = {}  # user-registered classes, and built-ins once imported
T = TypeVar("T", bound=type)


def register(name: str) -> Callable[[T], T]:
    """Class decorator: make the optimizer available as `evograd.make(name, ...)`."""

    def deco(cls: T) -> T:
        if name in BUILTIN or (name in _REGISTRY and _REGISTRY[name] is not cls):
            raise ValueError(f"optimizer name {name!r} is already taken (by a built-in or a registered class)")
        _REGISTRY[name] = cls
        cls.name = name
        return cls

    return deco


def available() -> list[str]:
    """Registered optimizer names, sorted."""
    return sorted(set(BUILTIN) | set(_REGISTRY))


def usable(name: str) -> bool:
    """Whether `name` can be built here: adapters to optional packages (`requires = "evotorch"`) need
    that package installed; their names stay registered either way, so configs can name them."""
    import importlib.util

    req = getattr(get(name), "requires", None)
    try:
        return req is None or importlib.util.find_spec(req) is not None
    except ImportError:
        return False


def get(name: str) -> type:
    if isinstance(name, str) and name not in _REGISTRY and name in BUILTIN:
        module, attr = BUILTIN[name].split(":")
        cls = getattr(importlib.import_module(module), attr)
        if getattr(cls, "name", None) != name:
            raise RuntimeError(f"{BUILTIN[name]} is named {getattr(cls, 'name', None)!r}, not {name!r}")
        _REGISTRY[name] = cls
    if not isinstance(name, str) or name not in _REGISTRY:
        names = available()
        hint = difflib.get_close_matches(str(name).lower(), names, n=3, cutoff=0.5)
        msg = f"Unknown optimizer {name!r}."
        if hint:
            msg += " Did you mean " + " or ".join(repr(h) for h in hint) + "?"
        msg += " Available: " + ", ".join(names) + "."
        raise ParameterError(msg)
    return _REGISTRY[name]


def make(name: str, **kwargs):
    """Build a registered optimizer: `make("cmaes", x0=np.zeros(10), sigma0=0.5, seed=0)`.

    Unknown keyword arguments are rejected with the list of accepted ones (and a close match when
    there is one) instead of being silently ignored.
    """
    cls = get(name)
    accepted = hyperparameters(cls)
    old_names = renamed_parameters(cls)  # the constructor warns about these, or refuses them naming the new one
    for key in kwargs:
        if key not in accepted and key not in old_names:
            hint = difflib.get_close_matches(key, list(accepted), n=1, cutoff=0.6)
            msg = f"{cls.__name__} ({name!r}) got an unknown parameter {key!r}."
            if hint:
                msg += f" Did you mean {hint[0]!r}?"
            msg += " Accepted: " + ", ".join(accepted) + "."
            raise ParameterError(msg)
    return cls(**kwargs)


def hyperparameters(cls: type) -> list[str]:
    """Names of the keyword arguments a registered optimizer's constructor takes (current names only; the
    old ones are in `renamed_parameters`)."""
    params = inspect.signature(cls.__init__).parameters
    variadic = (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)
    return [p for p in params if p != "self" and params[p].kind not in variadic]


def renamed_parameters(cls: type) -> dict:
    """Old parameter names of a registered optimizer -> `evograd.optim.base.Renamed` (the new name, whether
    the old one still works with a DeprecationWarning or raises an error naming the new one, and why)."""
    return dict(getattr(cls, "renamed_parameters", {}))
