"""Masks from pruning (numpy): signal-to-noise iterative pruning for ES, random masks, and the shared top-k rule.

Signal-to-noise iterative pruning (Lange & Sprekeler 2023, "Lottery Tickets in Evolutionary Optimization: On
Sparse Backpropagation-Free Trainability", ICML): train the dense network with an ES, score every weight by
|mean| / std of the final search distribution, prune the lowest-scoring ones, rewind the kept weights to their
initial values (the pruned ones to 0), retrain with the mask, and repeat down to the target density.
`snr_pruning` runs that loop around any trainer; `search_distribution` reads the mean and per-coordinate std
from an optimizer:

- snes: its center and per-coordinate sigma, so the score is a true signal-to-noise ratio (a weight the ES
  was still unsure about, large sigma, goes first);
- cmaes: its mean and sigma * sqrt(diag(C)) (pycma's `stds`);
- openai_es, ars (isotropic, one fixed sigma): |mean| / sigma orders the weights as |mean| does, so SNR
  pruning reduces to iterative magnitude pruning (Frankle & Carbin 2019) there.

Conventions, shared with `evograd.zo.pruning`:
- density = kept / prunable, over the coordinates `prunable` marks (by default all; for networks the weight
  matrices, biases always kept). The number kept is exactly round(density * prunable), per group when
  `groups` labels the layers (layer-wise pruning), else over all prunable coordinates at once (global: the
  default here, and what DeepZero's ZO-GraSP does).
- A coordinate pruned in an earlier round stays pruned; ties are broken by position (stable order).
- Masks are the optimizers' masks: True = kept (trained), False = pruned (held at 0 after `rewind`).
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..core.validation import ParameterError, check_float

OWNER = "pruning"


def _bool_array(a: Any, dim: int, name: str) -> np.ndarray:
    arr = np.asarray(a)
    if arr.dtype != np.bool_ or arr.shape != (dim,):
        raise ParameterError(f"The '{name}' parameter of {OWNER} must be a bool array of shape ({dim},). "
                             f"Got an array of dtype {arr.dtype} and shape {arr.shape} instead.")
    return arr


def n_kept(density: float, n: int) -> int:
    """Coordinates kept out of n at `density` in (0, 1]: round(density * n), at least 1 when n > 0."""
    density = check_float(density, "density", OWNER, low=0.0, high=1.0, low_inclusive=False)
    return min(n, max(1 if n else 0, int(round(density * n))))


def keep_top(scores: Any, density: float, prunable: Any = None, mask: Any = None, groups: Any = None) -> np.ndarray:
    """The mask keeping, among the prunable coordinates still kept by `mask`, the round(density * prunable)
    highest scores (per group of `groups` when given); coordinates that are not prunable are always kept.

    scores: (dim,) floats (NaN ranks lowest); prunable, mask: bool (dim,) or None (all); groups: int labels
    (dim,) or None (one global ranking). Raises when `mask` keeps fewer prunable coordinates than asked for."""
    s = np.asarray(scores, dtype=np.float64)
    if s.ndim != 1:
        raise ParameterError(f"The 'scores' parameter of {OWNER} must be 1-d. Got shape {s.shape} instead.")
    dim = s.shape[0]
    prunable = np.ones(dim, bool) if prunable is None else _bool_array(prunable, dim, "prunable")
    alive = prunable if mask is None else prunable & _bool_array(mask, dim, "mask")
    labels = np.zeros(dim, np.int64) if groups is None else np.asarray(groups).reshape(-1)
    if labels.shape != (dim,):
        raise ParameterError(f"The 'groups' parameter of {OWNER} must label each of the {dim} coordinates. "
                             f"Got shape {labels.shape} instead.")
    out = ~prunable
    s = np.where(np.isnan(s), -np.inf, s)
    for g in np.unique(labels[prunable]):
        members = np.flatnonzero(prunable & (labels == g))
        k = n_kept(density, members.size)
        candidates = members[alive[members]]
        if candidates.size < k:
            raise ParameterError(f"{OWNER}: density {density} keeps {k} of the {members.size} prunable coordinates"
                                 f"{'' if groups is None else f' of group {g}'}, but only {candidates.size} are "
                                 "still unpruned: densities must decrease from round to round.")
        order = np.argsort(-s[candidates], kind="stable")
        out[candidates[order[:k]]] = True
    return out


def random_mask(dim: int, density: float, seed: Any = None, prunable: Any = None, groups: Any = None) -> np.ndarray:
    """A uniformly random mask with exactly the kept counts of `keep_top` (the control for any pruning rule)."""
    rng = np.random.default_rng(seed)
    return keep_top(rng.random(int(dim)), density, prunable=prunable, groups=groups)


def density_of(mask: Any, prunable: Any = None) -> float:
    """Kept / prunable coordinates of a mask (1.0 for None)."""
    if mask is None:
        return 1.0
    m = np.asarray(mask, dtype=bool)
    p = np.ones_like(m) if prunable is None else np.asarray(prunable, dtype=bool)
    return float((m & p).sum() / max(int(p.sum()), 1))


def snr_scores(mean: Any, std: Any) -> np.ndarray:
    """|mean| / std per coordinate (Lange & Sprekeler's signal-to-noise ratio); std 0 gives +inf (0 when the mean
    is 0 too), which only masked coordinates have."""
    mean, std = np.asarray(mean, dtype=np.float64), np.asarray(std, dtype=np.float64)
    if mean.shape != std.shape or mean.ndim != 1:
        raise ParameterError(f"The 'mean' and 'std' of {OWNER}.snr_scores must be 1-d of one shape. Got "
                             f"{mean.shape} and {std.shape} instead.")
    if np.any(std < 0):
        raise ParameterError(f"The 'std' of {OWNER}.snr_scores must be >= 0.")
    with np.errstate(divide="ignore", invalid="ignore"):
        out = np.abs(mean) / std
    return np.nan_to_num(out, nan=0.0, posinf=np.inf)


def search_distribution(opt: Any) -> tuple[np.ndarray, np.ndarray]:
    """(mean, std) of an ES's search distribution, full length (std 0 on masked coordinates)."""
    name = getattr(opt, "name", type(opt).__name__)
    if name == "snes":
        return opt.center, opt.embed(opt.sigma, fill=0.0)
    if name == "cmaes":
        return opt.center, opt.embed(np.asarray(opt.engine.stds, dtype=np.float64), fill=0.0)
    if name in ("openai_es", "ars"):
        std = np.full(opt.dim, float(opt.sigma))
        if opt.mask is not None:
            std[~opt.mask] = 0.0
        return opt.center, std
    raise ParameterError(f"{OWNER}.search_distribution knows snes, cmaes, openai_es and ars; {name!r} has no "
                         "Gaussian search distribution (score its center by magnitude instead).")


def rewind(x_init: Any, mask: Any) -> np.ndarray:
    """The start of a retraining round: the kept coordinates at their initial values, the pruned ones at 0."""
    x = np.array(x_init, dtype=np.float64)
    if mask is not None:
        x[~_bool_array(mask, x.shape[0], "mask")] = 0.0
    return x


@dataclass
class PruningRound:
    """One round of `snr_pruning`: the density trained at, its mask (None for the dense round) and what the
    trainer returned besides the search distribution."""

    density: float
    mask: np.ndarray | None
    result: Any


def snr_pruning(train: Callable[[np.ndarray, np.ndarray | None], tuple[Any, Any, Any]], x_init: Any,
                densities: Sequence[float], prunable: Any = None, groups: Any = None) -> list[PruningRound]:
    """Lange & Sprekeler's loop: a dense run, then for each density (decreasing) prune to it by the last run's
    SNR, rewind to x_init and retrain with the mask.

    train(x0, mask) -> (result, mean, std): one ES run from x0 (built with `mask`, None the first time),
    returning anything to keep and the final search distribution (`search_distribution(opt)`).
    Returns one `PruningRound` per run, dense first."""
    x_init = np.asarray(x_init, dtype=np.float64)
    previous = 1.0
    for d in densities:
        d = check_float(d, "densities", OWNER, low=0.0, high=previous, low_inclusive=False)
        previous = d
    result, mean, std = train(x_init.copy(), None)
    rounds, mask = [PruningRound(1.0, None, result)], None
    for d in densities:
        mask = keep_top(snr_scores(mean, std), d, prunable=prunable, mask=mask, groups=groups)
        result, mean, std = train(rewind(x_init, mask), mask)
        rounds.append(PruningRound(float(d), mask, result))
    return rounds
