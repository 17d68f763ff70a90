"""Gradient update rules in numpy (SGD with momentum, Adam), used by the ES mean updates.

An evolution strategy estimates a gradient of the smoothed objective and hands it to an update rule, as
optax composes a gradient transformation with an estimator. These are numpy so that the population
methods never load torch; each follows torch.optim's formula and operation order (float64), so a run
moves its center as it did when the rule was torch.optim's (the tests compare the two to 1e-12).

An update rule is built from validated settings, `step(x, g) -> new x` moves a point against a descent
gradient, and `state_dict()`/`load_state_dict()` carry its moments and step count as plain data.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from ..core.validation import ParameterError, check_bool, check_float


class SGD:
    """x <- x - lr * d, d = g (+ weight_decay * x) through momentum (buf = momentum * buf + g) and, with
    nesterov, d = g + momentum * buf (torch.optim.SGD, dampening 0)."""

    name = "sgd"

    def __init__(self, lr: float, momentum: float = 0.0, nesterov: bool = False, weight_decay: float = 0.0,
                 owner: str = "SGD"):
        self.lr = check_float(lr, "lr", owner, low=0.0, low_inclusive=False)
        self.momentum = check_float(momentum, "momentum", owner, low=0.0, high=1.0, high_inclusive=False)
        self.nesterov = check_bool(nesterov, "nesterov", owner)
        self.weight_decay = check_float(weight_decay, "weight_decay", owner, low=0.0)
        if self.nesterov and self.momentum == 0:
            raise ParameterError(f"The 'nesterov' parameter of {owner} needs momentum > 0. Got momentum=0 instead.")
        self.buf: np.ndarray | None = None
        self.steps = 0

    def step(self, x: np.ndarray, g: np.ndarray) -> np.ndarray:
        if self.weight_decay:
            g = g + self.weight_decay * x
        if self.momentum:
            self.buf = g.copy() if self.buf is None else self.buf * self.momentum + g
            g = g + self.momentum * self.buf if self.nesterov else self.buf
        self.steps += 1
        return x + (-self.lr) * g

    def state_dict(self) -> dict[str, Any]:
        return {"rule": self.name, "lr": self.lr, "steps": self.steps,
                "buf": None if self.buf is None else self.buf.copy()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        _check_rule(self, state)
        self.lr, self.steps = float(state["lr"]), int(state["steps"])
        self.buf = None if state["buf"] is None else np.array(state["buf"], dtype=np.float64)


class Adam:
    """Adam (Kingma and Ba 2015) with torch.optim.Adam's operation order: m <- m + (1 - b1)(g - m),
    v <- b2 v + (1 - b2) g^2, x <- x - (lr / (1 - b1^t)) m / (sqrt(v) / sqrt(1 - b2^t) + eps)."""

    name = "adam"

    def __init__(self, lr: float, betas: Any = (0.9, 0.999), eps: float = 1e-8, weight_decay: float = 0.0,
                 owner: str = "Adam"):
        self.lr = check_float(lr, "lr", owner, low=0.0, low_inclusive=False)
        if not (isinstance(betas, (tuple, list)) and len(betas) == 2):
            raise ParameterError(
                f"The 'betas' parameter of {owner} must be a pair of floats in [0, 1). Got {betas!r} instead.")
        self.betas = tuple(check_float(b, "betas", owner, low=0.0, high=1.0, high_inclusive=False) for b in betas)
        self.eps = check_float(eps, "eps", owner, low=0.0, low_inclusive=False)
        self.weight_decay = check_float(weight_decay, "weight_decay", owner, low=0.0)
        self.m: np.ndarray | None = None
        self.v: np.ndarray | None = None
        self.steps = 0

    def step(self, x: np.ndarray, g: np.ndarray) -> np.ndarray:
        b1, b2 = self.betas
        if self.weight_decay:
            g = g + self.weight_decay * x
        if self.m is None:
            self.m, self.v = np.zeros_like(x), np.zeros_like(x)
        self.steps += 1
        self.m = self.m + (1.0 - b1) * (g - self.m)
        self.v = self.v * b2 + (1.0 - b2) * (g * g)
        step_size = self.lr / (1.0 - b1**self.steps)
        denom = np.sqrt(self.v) / (1.0 - b2**self.steps) ** 0.5 + self.eps
        return x + (-step_size) * (self.m / denom)

    def state_dict(self) -> dict[str, Any]:
        return {"rule": self.name, "lr": self.lr, "steps": self.steps,
                "m": None if self.m is None else self.m.copy(), "v": None if self.v is None else self.v.copy()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        _check_rule(self, state)
        self.lr, self.steps = float(state["lr"]), int(state["steps"])
        self.m = None if state["m"] is None else np.array(state["m"], dtype=np.float64)
        self.v = None if state["v"] is None else np.array(state["v"], dtype=np.float64)


RULES = {"sgd": SGD, "adam": Adam}


def make_rule(name: str, lr: float, owner: str, **kwargs: Any) -> SGD | Adam:
    """An update rule by name; unknown settings are refused with the accepted ones."""
    cls = RULES[name]
    accepted = [k for k in cls.__init__.__code__.co_varnames[1:cls.__init__.__code__.co_argcount] if k not in
                ("lr", "owner")]
    unknown = sorted(set(kwargs) - set(accepted))
    if unknown:
        raise ParameterError(f"The 'optimizer_kwargs' parameter of {owner} has {unknown} that the {name!r} update "
                             f"does not take. Accepted: {', '.join(accepted)}.")
    return cls(lr, owner=owner, **kwargs)


def _check_rule(rule: Any, state: Any) -> None:
    if not (isinstance(state, dict) and state.get("rule") == rule.name):
        raise ParameterError(f"this state is not a {rule.name!r} update rule state")
