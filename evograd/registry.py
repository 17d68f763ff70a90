"""One registry: every optimizer is built by name through `make`, so configs and the CLI need no imports."""
from __future__ import annotations

import difflib
import inspect
from typing import Callable, TypeVar

from .validation import ParameterError

_REGISTRY: dict[str, type] = {}
T = TypeVar("T", bound=type)


def register(name: str) -> Callable[[T], T]:
    """Class decorator: make the optimizer available as `evograd.make(name, ...)`."""

    def deco(cls: T) -> T:
        if name in _REGISTRY and _REGISTRY[name] is not cls:
            raise ValueError(f"optimizer name {name!r} is already registered to {_REGISTRY[name].__name__}")
        _REGISTRY[name] = cls
        cls.name = name
        return cls

    return deco


def available() -> list[str]:
    """Registered optimizer names, sorted."""
    _load_builtin()
    return sorted(_REGISTRY)


def usable(name: str) -> bool:
    """Whether `name` can be built here: adapters to optional packages (`requires = "evotorch"`) need
    that package installed; their names stay registered either way, so configs can name them."""
    import importlib.util

    req = getattr(get(name), "requires", None)
    return req is None or importlib.util.find_spec(req) is not None


def get(name: str) -> type:
    _load_builtin()
    if not isinstance(name, str) or name not in _REGISTRY:
        hint = difflib.get_close_matches(str(name).lower(), list(_REGISTRY), n=3, cutoff=0.5)
        msg = f"Unknown optimizer {name!r}."
        if hint:
            msg += " Did you mean " + " or ".join(repr(h) for h in hint) + "?"
        msg += " Available: " + ", ".join(sorted(_REGISTRY)) + "."
        raise ParameterError(msg)
    return _REGISTRY[name]


def make(name: str, **kwargs):
    """Build a registered optimizer: `make("cmaes", x0=np.zeros(10), sigma0=0.5, seed=0)`.

    Unknown keyword arguments are rejected with the list of accepted ones (and a close match when
    there is one) instead of being silently ignored.
    """
    cls = get(name)
    accepted = hyperparameters(cls)
    for key in kwargs:
        if key not in accepted:
            hint = difflib.get_close_matches(key, list(accepted), n=1, cutoff=0.6)
            msg = f"{cls.__name__} ({name!r}) got an unknown parameter {key!r}."
            if hint:
                msg += f" Did you mean {hint[0]!r}?"
            msg += " Accepted: " + ", ".join(accepted) + "."
            raise ParameterError(msg)
    return cls(**kwargs)


def hyperparameters(cls: type) -> list[str]:
    """Names of the keyword arguments a registered optimizer's constructor takes."""
    params = inspect.signature(cls.__init__).parameters
    variadic = (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)
    return [p for p in params if p != "self" and params[p].kind not in variadic]


def _load_builtin() -> None:
    # Importing the package registers every built-in optimizer; done lazily so `registry` has no cycle.
    from . import optim  # noqa: F401
