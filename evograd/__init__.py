"""evograd: gradient-free and evolutionary optimization with gradient baselines, behind one protocol.

Every public name is a lazy attribute (PEP 562): `import evograd` loads none of numpy's neighbours, and
torch and gymnasium load only when a name that needs them is first used (`GymProblem`, `train`,
`train_ppo`, ...). Minimizing a numpy function with a population method never imports either.
"""
from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_LAZY = {
    # core (numpy)
    "Candidates": "evograd.core.candidates", "DenseCandidates": "evograd.core.candidates",
    "SeededCandidates": "evograd.core.candidates", "ParameterError": "evograd.core.validation",
    # optimizers
    "Best": "evograd.optim.base", "NonFiniteWarning": "evograd.optim.base", "Optimizer": "evograd.optim.base",
    "available": "evograd.optim.registry", "hyperparameters": "evograd.optim.registry",
    "make": "evograd.optim.registry", "register": "evograd.optim.registry",
    # evaluation and the one-call driver
    "EvaluationError": "evograd.parallel.evaluator", "FunctionEvaluator": "evograd.parallel.evaluator",
    # Gymnasium tasks and gradient RL (torch, gymnasium)
    "GymProblem": "evograd.gym.problem", "TrainResult": "evograd.gym.train", "train": "evograd.gym.train",
    "RLResult": "evograd.rl.loop", "train_ppo": "evograd.rl.ppo", "train_reinforce": "evograd.rl.reinforce",
    "PPOConfig": "evograd.rl.settings", "ReinforceConfig": "evograd.rl.settings",
}
_SUBMODULES = {"functions": "evograd.core.functions", "serialization": "evograd.core.serialization",
               "registry": "evograd.optim.registry", "zo": "evograd.zo"}

__all__ = sorted(_LAZY) + sorted(_SUBMODULES) + ["MinimizeResult", "minimize"]

# Imported now, not lazily: the function `minimize` shares its name with its module, and importing the
# module later (as any experiment does) would otherwise leave the module where the function should be.
from .minimize import MinimizeResult, minimize  # noqa: E402

if "gymnasium" in __import__("sys").modules:  # gymnasium is loaded already: make gym.make("evograd/LQR-v0") work
    from .gym.registration import register_envs  # (cheap: entry points are strings; else `import evograd.gym`)

    register_envs()


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
    elif name in _SUBMODULES:
        value = importlib.import_module(_SUBMODULES[name])
    else:
        raise AttributeError(f"module 'evograd' has no attribute {name!r}")
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
