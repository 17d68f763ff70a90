"""What a config's strings refer to: "module:attribute" objects, env constructors, the RL trainers.

Shared by the config checks and the jobs that run configs, so neither imports the other for them."""
from __future__ import annotations

import difflib
import importlib
import os
import re
import sys
from typing import Any

from .config_errors import ConfigError

RL_METHODS = ("ppo", "reinforce")


def rl_settings(name: str) -> type:
    """PPOConfig / ReinforceConfig: the settings of train_<name> (torch-free: config checks read them)."""
    from ..rl import settings

    return {"ppo": settings.PPOConfig, "reinforce": settings.ReinforceConfig}[name]


def rl_function(name: str):
    """evograd.train_ppo / evograd.train_reinforce, imported lazily (they import torch)."""
    return getattr(importlib.import_module(f"evograd.rl.{name}"), f"train_{name}")


class EnvMaker:
    """gym.make(env_id, **kwargs), or constructor(**kwargs) for a "module:attribute" reference, as a
    picklable zero-argument constructor named after the env (GymProblem reports an env by its
    constructor's __name__)."""

    def __init__(self, env_id, kwargs: dict):
        self.env_id, self.kwargs = env_id, dict(kwargs)
        self.__name__ = env_id if isinstance(env_id, str) else getattr(env_id, "__name__", repr(env_id))

    def __call__(self):
        if not isinstance(self.env_id, str):
            return self.env_id(**self.kwargs)
        import gymnasium as gym

        return gym.make(self.env_id, **self.kwargs)

    def __repr__(self) -> str:
        return f"EnvMaker({self.env_id!r}, {self.kwargs!r})"


def env_constructor(env: dict):
    """What GymProblem and train_ppo take for a resolved task.env: the Gymnasium id, or a picklable
    zero-argument constructor (an EnvMaker for an id with kwargs, or the resolved "module:attribute").
    max_episode_steps is not applied here (GymProblem takes it as an argument)."""
    ref = _env_ref(env["id"])
    return EnvMaker(ref, env["kwargs"]) if env.get("kwargs") else ref


def _env_ref(spec: str):
    """"module:attribute" (identifiers) names a constructor; anything else is a Gymnasium id
    ("evograd/LQR-v0", "CartPole-v1": never identifiers)."""
    mod, sep, attr = spec.partition(":")
    if sep and re.fullmatch(r"[A-Za-z_][\w.]*", mod) and re.fullmatch(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)*", attr):
        obj = resolve_attr(spec, "task.env.id")
        if not callable(obj):
            raise ConfigError(f"{spec!r} is not callable (a zero-argument env constructor)",
                              key="task.env.id")
        return obj
    return spec


def resolve_attr(spec: str, key: str | None = None) -> Any:
    """"package.module:attr.sub" -> the object (errors name `key`). The current directory goes on sys.path
    (as `python -m` does), so "examples.custom_fitness:styblinski_tang" resolves from the repository root;
    joblib's workers inherit the path."""
    def fail(reason):
        return ConfigError(f"cannot resolve {spec!r}: {reason}", key=key)

    module_name, sep, attr = spec.partition(":") if isinstance(spec, str) else ("", "", "")
    if not (sep and module_name and attr):
        raise ConfigError(f"expected 'module:attribute', got {spec!r}", key=key)
    cwd = os.getcwd()
    if cwd not in {os.path.abspath(p or ".") for p in sys.path}:
        sys.path.insert(0, cwd)
    try:
        obj = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name and (module_name == exc.name or module_name.startswith(exc.name + ".")):
            raise fail(f"no module named {exc.name!r} (sys.path includes the current directory "
                       f"{cwd})") from None
        raise fail(f"importing {module_name!r} failed: {exc}") from None
    except Exception as exc:  # noqa: BLE001 (the module's own code failed)
        raise fail(f"importing {module_name!r} raised {type(exc).__name__}: {exc}") from None
    for part in attr.split("."):
        if not hasattr(obj, part):
            close = difflib.get_close_matches(part, [n for n in dir(obj) if not n.startswith("_")], n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise fail(f"{getattr(obj, '__name__', module_name)!r} has no attribute {part!r}{hint}")
        obj = getattr(obj, part)
    return obj
