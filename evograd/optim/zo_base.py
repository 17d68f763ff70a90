"""Zeroth-order gradient estimators through the protocol: the part every estimator shares.

An estimator is "points to evaluate, a gradient estimate from their values, a gradient update": `ask` returns
the points (the center plus perturbations named by seeds, or coordinate steps), `tell` turns their values into
an estimate g of the gradient at the center and moves the center with one of the numpy update rules of
`evograd.optim.updates` ("sgd", "momentum", "adam") or a sign step ("sign", ZO-signSGD). The families live in
`zo_random` (spsa, mezo, rge, zo_signsgd) and `zo_coordinate` (cge); the torch forward gradient in
`evograd.zo.forward_grad`. docs/zeroth_order.md has the formulas, costs, variances and references.

Shared conventions:
- `mu` is the smoothing radius (the finite-difference step) of every estimator that has one: a direction u
  with E[u u^T] = I is evaluated at x + mu u, so a perturbation has norm about mu sqrt(k) (k unmasked coordinates).
- `mask` (bool, shape (dim,)) marks the coordinates that take part: the others are never perturbed (random
  directions are zero there, cge skips them, so they cost no evaluation) and never updated (the update rule
  runs on the unmasked sub-vector only, so not even Adam's moments or weight decay touch them).
- Values that come back NaN/inf (ranked worst by the base class) drop the directions they enter: the estimate
  averages the finite differences only, and a step with none left does not move the center.
- The pending ask is saved as its seeds (or coordinates), never as rows: `state_dict` stays O(dim) and a
  restored optimizer rebuilds the same candidates bit for bit.
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np

from ..core.candidates import Candidates, DenseCandidates
from ..core.noise import noise
from ..core.validation import ParameterError, check_choice, check_float
from .base import Optimizer
from .masks import check_mask
from .updates import SGD, Adam

UPDATES = ("sgd", "momentum", "adam", "sign")
DIRECTIONS = ("gaussian", "rademacher", "sphere")


class SignUpdate:
    """x <- x - lr * sign(g): ZO-signSGD's step (Liu et al. 2019), blind to the estimate's scale."""

    name = "sign"

    def __init__(self, lr: float, owner: str = "SignUpdate"):
        self.lr = check_float(lr, "lr", owner, low=0.0, low_inclusive=False)
        self.steps = 0

    def step(self, x: np.ndarray, g: np.ndarray) -> np.ndarray:
        self.steps += 1
        return x + (-self.lr) * np.sign(g)

    def state_dict(self) -> dict[str, Any]:
        return {"rule": self.name, "lr": self.lr, "steps": self.steps}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if not (isinstance(state, dict) and state.get("rule") == self.name):
            raise ParameterError("this state is not a 'sign' update rule state")
        self.lr, self.steps = float(state["lr"]), int(state["steps"])


def make_update(update: str, lr: float, momentum: float, owner: str) -> SGD | Adam | SignUpdate:
    """The update rule an estimator's `update` names ("momentum" is SGD with heavy-ball momentum)."""
    check_choice(update, "update", owner, UPDATES)
    if update == "sign":
        return SignUpdate(lr, owner)
    if update == "adam":
        return Adam(lr, owner=owner)
    return SGD(lr, momentum=momentum if update == "momentum" else 0.0, owner=owner)


def direction(seed: int, dim: int, kind: str = "gaussian", mask: np.ndarray | None = None,
              out: np.ndarray | None = None) -> np.ndarray:
    """The (dim,) direction a seed names, with E[u u^T] = I on the unmasked coordinates and 0 on the others.

    gaussian: z = noise(seed) (core.noise, the "rng" source); rademacher: sign(z); sphere: sqrt(k) z / |z|
    over the k unmasked coordinates (uniform on the sphere of radius sqrt(k)), written into `out` if given.
    """
    out = noise(seed, dim, "rng", out=out)
    if mask is not None:
        out[~mask] = 0.0
    if kind == "rademacher":
        np.sign(out, out=out)
    elif kind == "sphere":
        k = dim if mask is None else int(mask.sum())
        out *= math.sqrt(k) / np.linalg.norm(out)
    return out


def finite_mean(weights: np.ndarray, seeds: np.ndarray, kind: str, mask: np.ndarray | None,
                dim: int) -> np.ndarray:
    """(1/m) sum_i weights_i u_i over the m directions whose weight is finite, regenerating each u_i from its
    seed into one buffer: O(dim) memory whatever the number of directions. Zero when none is finite."""
    g, u = np.zeros(dim), np.empty(dim)
    ok = np.isfinite(weights)
    for w, s in zip(weights[ok], seeds[ok]):
        g += w * direction(int(s), dim, kind, mask, out=u)
    return g / max(int(ok.sum()), 1)


class ZerothOrder(Optimizer):
    """Base of the estimators: a center moved by an update rule fed with a gradient estimate.

    A subclass implements `_asked_now()` (plain data naming the next ask: seeds, coordinates), `_candidates(asked)`
    (the Candidates they name), `_estimate(f, grads)` (the (dim,) estimate from the told values, zero on masked
    coordinates) and `popsize`.

    Attributes
    ----------
    grad : ndarray (dim,) or None
        The last estimate (of the gradient of the minimized objective: of -f when maximize=True); None
        before the first tell and after `load_state_dict`.
    mask : ndarray of bool (dim,) or None
    """

    def __init__(self, x0: Any, lr: float, update: str, momentum: float, mask: Any, seed: int | None,
                 maximize: bool):
        owner = type(self).__name__
        lr = check_float(lr, "lr", owner, low=0.0, low_inclusive=False)
        self.update = check_choice(update, "update", owner, UPDATES)
        self.momentum = check_float(momentum, "momentum", owner, low=0.0, high=1.0, high_inclusive=False)
        super().__init__(x0, seed=seed, maximize=maximize)
        self.mask = check_mask(mask, self.dim, owner)
        self.active = None if self.mask is None else np.flatnonzero(self.mask)
        self.rule = make_update(self.update, lr, self.momentum, owner)
        self._center = self.x0.copy()
        self._asked: Any = None
        self.grad: np.ndarray | None = None

    @property
    def center(self) -> np.ndarray:
        return self._center.copy()

    @property
    def unmasked(self) -> int:
        """k: the number of coordinates that are perturbed and updated."""
        return self.dim if self.mask is None else int(self.active.shape[0])

    @property
    def lr(self) -> float:
        """The update rule's step size (after `load_state_dict`, the saved one)."""
        return self.rule.lr

    @lr.setter
    def lr(self, value: float) -> None:
        self.rule.lr = check_float(value, "lr", type(self).__name__, low=0.0, low_inclusive=False)

    # ------------------------------------------------------------------ protocol
    def _ask(self) -> Candidates:
        self._asked = self._asked_now()
        return self._candidates(self._asked)

    def _tell(self, f: np.ndarray, grads: np.ndarray | None) -> None:
        g = self._estimate(f, grads)
        self.grad = g
        if self.mask is None:
            self._center = self.rule.step(self._center, g)
        else:  # the rule sees the unmasked sub-vector only: masked coordinates and their moments never move
            center = self._center.copy()  # a new array: candidates asked earlier keep their center
            center[self.active] = self.rule.step(center[self.active], g[self.active])
            self._center = center
        self._asked = None

    # ------------------------------------------------------------------ state
    def state_dict(self) -> dict[str, Any]:
        pending, self._pending = self._pending, None  # saved as `asked` (seeds), not as rows
        try:
            state = super().state_dict()
        finally:
            self._pending = pending
        state["algorithm"]["asked"] = None if pending is None else self._asked
        return state

    def _state(self) -> dict[str, Any]:
        return {"center": self._center.copy(), "update": self.rule.state_dict(),
                "unmasked": self.unmasked}

    def _load_state(self, state: dict[str, Any]) -> None:
        owner = type(self).__name__
        center = np.array(state["center"], dtype=np.float64)
        if center.shape != (self.dim,) or int(state["unmasked"]) != self.unmasked:
            raise ParameterError(f"{owner}: the saved state has a center of shape {center.shape} and "
                                 f"{state['unmasked']} unmasked coordinates; this optimizer has ({self.dim},) and "
                                 f"{self.unmasked} (build it with the same x0 and mask).")
        self.rule.load_state_dict(state["update"])
        self._center = center
        self.grad = None
        self._asked = state.get("asked")
        self._pending = None if self._asked is None else self._candidates(self._asked)

    # ------------------------------------------------------------------ for subclasses
    def _asked_now(self) -> Any:
        raise NotImplementedError  # pragma: no cover

    def _candidates(self, asked: Any) -> Candidates:
        raise NotImplementedError  # pragma: no cover

    def _estimate(self, f: np.ndarray, grads: np.ndarray | None) -> np.ndarray:
        raise NotImplementedError  # pragma: no cover


class RowsOnDemand(Candidates):
    """Base of candidate forms the core cannot rebuild from their own state (Rademacher directions, coordinate
    steps): rows are built on demand by `take`, and `to_state`/`slice_state` give dense rows, so a worker or
    anyone else reading them gets the right points. The optimizer saves its pending ask as seeds instead."""

    def to_state(self) -> dict[str, Any]:
        return DenseCandidates(self.materialize()).to_state()
