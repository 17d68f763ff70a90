"""Update rules that step a flat parameter view one chunk of a gradient estimate at a time.

torch.optim needs a `.grad` as large as each parameter; a zeroth-order estimate sum_i g_i z_i is regenerated
chunk by chunk instead, so the rules here take (slot, start, stop, chunk of the estimate) and follow
torch.optim's formulas and operation order on that chunk:
- "sgd": p -= lr * g. No state.
- "momentum": buf = momentum * buf + g (buf = g at the first step), p -= lr * buf (torch.optim.SGD, dampening
  0). State: one buffer per parameter, 1x the parameters' memory.
- "adam": torch.optim.Adam (betas 0.9, 0.999, eps 1e-8). State: two moments per parameter, 2x the parameters' memory.
- "sign": p -= lr * sign(g) (ZO-signSGD). No state.
The state of momentum and Adam costs the memory that MeZO's in-place SGD exists to avoid; their
hyperparameters are checked by the numpy rules of `evograd.optim.updates` (one set of checks and messages).
"""
from __future__ import annotations

import math
from typing import Any

import torch

from ..core.validation import check_choice
from ..optim import updates
from .noise import Slot

STATE_MULTIPLE = {"sgd": 0, "momentum": 1, "adam": 2, "sign": 0}  # state memory, in units of the trained parameters'


class SGD:
    name = "sgd"

    def __init__(self, lr: float):
        self.lr = lr
        self.steps = 0

    def begin_step(self) -> None:
        self.steps += 1

    def apply(self, slot: Slot, start: int, stop: int, g: torch.Tensor) -> None:
        slot.flat[start:stop].add_(g, alpha=-self.lr)

    def state_dict(self) -> dict[str, Any]:
        return {"rule": self.name, "steps": self.steps}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.steps = int(state["steps"])


class Sign(SGD):
    """ZO-signSGD (Liu et al. 2019): p -= lr * sign(g), blind to the estimate's scale."""

    name = "sign"

    def apply(self, slot: Slot, start: int, stop: int, g: torch.Tensor) -> None:
        slot.flat[start:stop].add_(g.sign_(), alpha=-self.lr)


class Momentum(SGD):
    name = "momentum"

    def __init__(self, lr: float, momentum: float = 0.9):
        super().__init__(lr)
        self.momentum = momentum
        self.buffers: dict[str, torch.Tensor] = {}

    def apply(self, slot: Slot, start: int, stop: int, g: torch.Tensor) -> None:
        if slot.name not in self.buffers:
            self.buffers[slot.name] = torch.zeros_like(slot.flat)
        buf = self.buffers[slot.name][start:stop]
        buf.mul_(self.momentum).add_(g)
        slot.flat[start:stop].add_(buf, alpha=-self.lr)

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "buffers": dict(self.buffers)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.buffers = dict(state["buffers"])


class Adam(SGD):
    name = "adam"

    def __init__(self, lr: float, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8):
        super().__init__(lr)
        self.betas, self.eps = betas, eps
        self.moments: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}

    def apply(self, slot: Slot, start: int, stop: int, g: torch.Tensor) -> None:
        if slot.name not in self.moments:
            self.moments[slot.name] = (torch.zeros_like(slot.flat), torch.zeros_like(slot.flat))
        m, v = (t[start:stop] for t in self.moments[slot.name])
        b1, b2 = self.betas
        m.lerp_(g, 1 - b1)
        v.mul_(b2).addcmul_(g, g, value=1 - b2)
        step_size = self.lr / (1 - b1**self.steps)
        denom = (v.sqrt() / math.sqrt(1 - b2**self.steps)).add_(self.eps)
        slot.flat[start:stop].addcdiv_(m, denom, value=-step_size)

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "moments": dict(self.moments)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.moments = dict(state["moments"])


UPDATES = ("sgd", "momentum", "adam", "sign")


def make_update(update: str, lr: float, momentum: float, owner: str) -> SGD:
    """A chunked rule by name (the names of `evograd.optim.zo_base`), its settings checked as
    `evograd.optim.updates` checks them; Adam with torch's betas (0.9, 0.999) and eps 1e-8."""
    check_choice(update, "update", owner, UPDATES)
    if update == "adam":
        return Adam(updates.Adam(lr, owner=owner).lr)
    rule = updates.SGD(lr, momentum=momentum if update == "momentum" else 0.0, owner=owner)
    return {"sgd": SGD, "sign": Sign}[update](rule.lr) if update != "momentum" else Momentum(rule.lr, rule.momentum)
