"""MeZO (Malladi et al. 2023): SPSA on a torch module's own parameters, in place, with the memory of inference.

One step, for each of q directions z_i (regenerated from (seed, step, i), see `evograd.zo.noise`):
    p += mu z_i;  l+ = loss(p)       (pass 1: perturb, forward)
    p -= 2 mu z_i;  l- = loss(p)     (pass 2)
    p += mu z_i                      (pass 3: restore)
    g_i = (l+ - l-) / (2 mu)         (the projected gradient: an estimate of the directional derivative z_i . grad)
then one update along sum_i (g_i / q) z_i, regenerated chunk by chunk (pass 4). No copy of the parameters and no
gradient buffer is made: besides the rule's state (none for sgd) the step holds a few chunk-sized buffers.
E[g z] = grad f for a smooth f as mu -> 0 (exactly, for a quadratic, at any mu: E[z z^T] = I).

The two forward passes of a direction see the same torch random state (it is put back before the second), so
dropout draws the same mask in both; afterwards the state has advanced as after one forward pass.
"""
from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from ..core.progress import warn_repeating
from ..core.validation import ParameterError, check_float, check_int, check_seed
from .noise import CHUNK, Noise, direction_seed, perturb, slots
from .rules import STATE_MULTIPLE, make_update


class InPlaceMeZO:
    """MeZO steps on `model`'s parameters: `step(closure)` with closure() -> the loss at the current parameters.

    Parameters
    ----------
    model : torch.nn.Module
        Its parameters with requires_grad are trained (in named_parameters order); others are left alone.
    lr : float > 0, default 1e-6
        Step size of the update rule. 1e-6 is MeZO's setting (with sgd) for language models of 1e8 to 1e10
        parameters; the estimate's variance grows with the number of parameters, so small networks take far
        larger steps (the 106-parameter regression in the tests: 1e-2).
    mu : float > 0, default 1e-3
        Smoothing radius (MeZO's eps): the perturbation is mu z with z ~ N(0, I).
    q : int >= 1, default 1
        Directions per step, averaged (2 q forward passes per step).
    seed : int >= 0 or None
        Run seed; with the step count it fixes every direction. None draws one (kept in `self.seed`).
    update : {"sgd", "momentum", "adam", "sign"}, default "sgd"
        How the estimate moves the parameters (`evograd.zo.rules`, torch.optim's formulas; "sign": ZO-signSGD).
        "momentum" keeps 1x and "adam" 2x the trained parameters' memory in state: the memory MeZO exists to
        avoid. Adam takes torch's betas (0.9, 0.999) and eps 1e-8.
    momentum : float in [0, 1), default 0.9
        Heavy-ball coefficient of update="momentum" (unused by the other rules).
    mask : dict name -> bool tensor, callable (name, parameter) -> bool tensor or None, or None
        True where an entry is trained; False entries are never perturbed nor updated (left bit for bit).
    chunk : int >= 1, default 65536
        Noise values drawn per call (the size of the reusable buffers).
    """

    owner = "InPlaceMeZO"

    def __init__(self, model: torch.nn.Module, lr: float = 1e-6, mu: float = 1e-3, q: int = 1,
                 seed: int | None = None, update: str = "sgd", momentum: float = 0.9,
                 mask: Any = None, chunk: int = CHUNK, owner: str | None = None):
        owner = owner or self.owner
        self.lr = check_float(lr, "lr", owner, low=0.0, low_inclusive=False)
        self.mu = check_float(mu, "mu", owner, low=0.0, low_inclusive=False)
        self.q = check_int(q, "q", owner, low=1)
        self.chunk = check_int(chunk, "chunk", owner, low=1)
        seed = check_seed(seed, owner)
        self.seed = int(np.random.SeedSequence().entropy % 2**63) if seed is None else seed
        self.rule = make_update(update, self.lr, momentum, owner)
        self.params = slots(model, mask, owner)
        self.noise = Noise(self.chunk)
        self.steps = 0
        self.forward_passes = 0
        self.skipped = 0

    @property
    def state_multiple(self) -> int:
        """The update rule's state, in units of the trained parameters' memory (0, 1 or 2)."""
        return STATE_MULTIPLE[self.rule.name]

    def seeds(self, direction: int) -> Callable:
        """slot -> its generator seed for `direction` of the coming step."""
        table = {s.index: direction_seed(self.seed, self.steps, direction, s.index) for s in self.params}
        return lambda slot: table[slot.index]

    @torch.no_grad()
    def step(self, closure: Callable[[], Any]) -> dict[str, Any]:
        """One MeZO step; returns {"loss": mean of (l+ + l-) / 2, "projected_grads": [g_i], "skipped": bool}.

        A non-finite l+ or l- skips the update (the parameters are restored) with a RuntimeWarning."""
        losses, grads = [], []
        for i in range(self.q):
            plus, minus = self._two_sided(closure, self.seeds(i))
            losses.append(0.5 * (plus + minus))
            grads.append((plus - minus) / (2 * self.mu))
        skipped = not all(math.isfinite(x) for x in losses + grads)
        if skipped:
            self.skipped += 1
            warn_repeating(f"{self.owner}: a non-finite loss at step {self.steps}; the step was skipped",
                           RuntimeWarning)
        else:
            self._update(grads)
        self.steps += 1
        return {"loss": float(np.mean(losses)), "projected_grads": grads, "skipped": skipped}

    def _two_sided(self, closure: Callable[[], Any], seeds: Callable) -> tuple[float, float]:
        """(l+, l-) along one direction; the parameters are restored even when the closure raises."""
        offset = 0.0
        try:
            perturb(self.params, self.noise, seeds, self.mu)
            offset = self.mu
            state = _rng_state()
            plus = self._loss(closure)
            _set_rng_state(state)
            perturb(self.params, self.noise, seeds, -2 * self.mu)
            offset = -self.mu
            minus = self._loss(closure)
        finally:
            if offset:  # the restore pass, or the way back when the closure raised
                perturb(self.params, self.noise, seeds, -offset)
        return plus, minus

    def _update(self, grads: list[float]) -> None:
        self.rule.begin_step()
        seeds = [self.seeds(i) for i in range(self.q)]
        coefs = [g / self.q for g in grads]
        for slot in self.params:
            for start, stop, g in self.noise.combined_chunks(slot, [s(slot) for s in seeds], coefs):
                self.rule.apply(slot, start, stop, g)

    def _loss(self, closure: Callable[[], Any]) -> float:
        value = closure()
        self.forward_passes += 1
        if isinstance(value, torch.Tensor):
            if value.numel() != 1:
                raise ParameterError(f"{self.owner}: the loss must be a scalar; got a tensor of shape "
                                     f"{tuple(value.shape)}")
            return float(value.detach().reshape(()).item())
        try:
            return float(value)
        except (TypeError, ValueError):
            raise ParameterError(f"{self.owner}: the loss must be a number or a one-element tensor; got "
                                 f"{value!r}") from None

    def state_dict(self) -> dict[str, Any]:
        """Seed, counters and the rule's state (tensors, not copied): with the parameters, enough to go on."""
        return {"version": 1, "seed": self.seed, "steps": self.steps, "forward_passes": self.forward_passes,
                "skipped": self.skipped, "rule": self.rule.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if not (isinstance(state, dict) and state.get("version") == 1 and
                state.get("rule", {}).get("rule") == self.rule.name):
            raise ParameterError(f"{self.owner}: this state is not a version-1 state of a {self.rule.name!r} MeZO")
        self.seed, self.steps = int(state["seed"]), int(state["steps"])
        self.forward_passes, self.skipped = int(state["forward_passes"]), int(state["skipped"])
        self.rule.load_state_dict(state["rule"])


def _rng_state() -> tuple:
    cuda = torch.cuda.get_rng_state_all() if torch.cuda.is_available() and torch.cuda.is_initialized() else None
    return torch.get_rng_state(), cuda


def _set_rng_state(state: tuple) -> None:
    torch.set_rng_state(state[0])
    if state[1] is not None:
        torch.cuda.set_rng_state_all(state[1])
