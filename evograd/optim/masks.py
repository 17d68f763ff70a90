"""Parameter masks: the one mechanism by which every optimizer leaves some coordinates alone.

A mask is a bool array of shape (dim,); True marks a coordinate that is searched (trainable), False one that
is held at its value in x0 (a pruned weight, typically 0). Built with `mask=`, an optimizer of the protocol runs
its algorithm on the k unmasked coordinates only: `Optimizer.__init__` hands the subclass the sub-vector
x0[mask] (so `search_dim` is k, CMA-ES's covariance is k x k, SNES has k step sizes, the default population
sizes are those of dimension k) and the base class embeds what leaves it (asks, `center`, `best.x`: full points
whose masked coordinates are exactly x0's) and restricts what comes in (the gradients of `tell`). Masked
coordinates are therefore never perturbed, never updated, and cost the algorithm nothing.

The zeroth-order estimators (`zo_base`) keep the mask in the full space instead (random directions are zero
there, `cge` skips those coordinates, the update rule runs on the unmasked sub-vector), with the same guarantees;
their directions are then the same whether or not a mask is given, and their asks still ship as seeds.

An embedded ask is shipped to workers as dense rows (`EmbeddedCandidates.slice_state`): the compact forms of
`evograd.core.candidates` regenerate noise of the full dimension, which the sub-vector's noise is not.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from ..core.candidates import Candidates, DenseCandidates
from ..core.validation import ParameterError


def check_mask(mask: Any, dim: int, owner: str) -> np.ndarray | None:
    """None (every coordinate) or a bool array of shape (dim,) with at least one True; ints are refused
    (an index list such as [0, 3] would otherwise be read as a mask)."""
    if mask is None:
        return None
    arr = np.asarray(mask)
    if arr.dtype != np.bool_ or arr.shape != (dim,):
        what = f"an array of dtype {arr.dtype} and shape {arr.shape}"
        raise ParameterError(f"The 'mask' parameter of {owner} must be None or a bool array of shape ({dim},). "
                             f"Got {what} instead.")
    if not arr.any():
        raise ParameterError(f"The 'mask' parameter of {owner} must leave at least one coordinate unmasked (True). "
                             "Got an all-False mask instead.")
    return arr.copy()


def held_point(x0: np.ndarray, mask: np.ndarray, owner: str) -> np.ndarray:
    """The full point whose masked coordinates a masked optimizer holds: x0 itself, or for a population x0
    (n, dim) its first row, whose masked coordinates every row must share (they are never searched)."""
    if x0.ndim == 1:
        return x0.copy()
    held = x0[:, ~mask]
    if not np.array_equal(held, np.broadcast_to(held[0], held.shape)):
        raise ParameterError(f"The 'mask' parameter of {owner} holds the masked coordinates at their value in x0, "
                             "so every row of a population x0 must have the same value there. Got rows that "
                             "differ on masked coordinates instead.")
    return x0[0].copy()


def embed(v: np.ndarray, fixed: np.ndarray, active: np.ndarray, fill: float | None = None) -> np.ndarray:
    """Vector(s) over the searched coordinates (shape (k,) or (n, k)) as full points: searched coordinates from
    v, masked ones from `fixed` (or `fill`)."""
    v = np.asarray(v, dtype=np.float64)
    out = np.empty(v.shape[:-1] + fixed.shape, dtype=np.float64)
    out[...] = fixed if fill is None else fill
    out[..., active] = v
    return out


class EmbeddedCandidates(Candidates):
    """A masked optimizer's ask: its own candidates over the searched coordinates (`inner`), as full rows whose
    masked coordinates are those of `fixed`. Shipped (slice_state/to_state) as dense rows."""

    kind = "embedded"

    def __init__(self, inner: Candidates, fixed: np.ndarray, active: np.ndarray):
        self.inner, self.fixed, self.active = inner, fixed, active
        self._rows: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.inner)

    @property
    def dim(self) -> int:
        return int(self.fixed.shape[0])

    def take(self, idx) -> np.ndarray:
        if self._rows is not None:
            return self._rows[np.asarray(idx, dtype=np.int64)]
        return embed(self.inner.take(idx), self.fixed, self.active)

    def materialize(self) -> np.ndarray:
        if self._rows is None:
            self._rows = embed(self.inner.materialize(), self.fixed, self.active)
        return self._rows

    def to_state(self) -> dict[str, Any]:
        return DenseCandidates(self.materialize()).to_state()


def masked_start(x0: np.ndarray | None, mask: Any, owner: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """What `Optimizer.__init__` keeps for a mask: the checked mask, the held full point, the searched indices and
    the sub-vector x0[..., mask] the algorithm starts from."""
    if x0 is None:
        raise ParameterError(f"The 'mask' parameter of {owner} needs x0 (the values the masked coordinates keep). "
                             "Got a mask without x0 instead.")
    mask = check_mask(mask, x0.shape[-1], owner)
    active = np.flatnonzero(mask)
    return mask, held_point(x0, mask, owner), active, np.ascontiguousarray(x0[..., active])


def check_saved_mask(saved: Any, mask: np.ndarray | None, owner: str) -> None:
    """A state saved with one mask loads only into an optimizer built with the same one."""
    if (saved is None) == (mask is None) and (saved is None or np.array_equal(np.asarray(saved), mask)):
        return

    def summary(m: Any) -> str:
        return "None" if m is None else f"<{int(np.sum(m))} of {np.size(m)} unmasked>"

    raise ParameterError(f"{owner}: the state was saved with mask={summary(saved)}, this optimizer has "
                         f"mask={summary(mask)}: build it with the saved state's mask.")
