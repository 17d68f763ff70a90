"""Pruning at initialization without backpropagation: DeepZero's ZO-GraSP for torch modules.

GraSP (Wang, Zhang & Grosse 2020) scores a weight by S = -w * (H g), g the gradient of the loss at the
initialization and H its Hessian: how much removing the weight changes the gradient flow. DeepZero (Chen et al.
2024, "DeepZero: Scaling up Zeroth-Order Optimization for Deep Model Training", ICLR; code: OPTML-Group/DeepZero,
algorithm/prune/importance_scores.py) computes it with function values only: g from a randomized estimate (RGE),
H g from the difference of two RGE estimates, and keeps the weights of the largest |S|, ranked globally over the
Linear/Conv weights (torch's global L1 pruning on the scores). `zo_grasp_scores` does the same, with:

    g_hat  = (1/q) sum_i u_i [f(w + mu u_i) - f(w - mu u_i)] / (2 mu)                     (2q forward passes)
    Hg_hat = (1/q) sum_i v_i [D_i(w + delta g_hat) - D_i(w - delta g_hat)] / (2 delta)      (4q forward passes)
    D_i(x) = [f(x + mu v_i) - f(x - mu v_i)] / (2 mu),   u_i, v_i ~ N(0, I),   S = -w * Hg_hat

Where this differs from DeepZero's code, and why: both finite differences are central (DeepZero's are forward:
errors O(mu^2) instead of O(mu)), the same directions v_i are used at both points (DeepZero draws two independent
RGE estimates and divides their difference by delta, so each estimate's noise, of order sqrt(d / q) |g|, is
amplified by 1 / delta; with common directions the difference is itself an RGE estimate of H g_hat), and the
losses are computed in float64. `kind="snip"` scores w * g_hat instead (SNIP, Lee et al. 2019; 2q passes).
DeepZero then keeps only the layer-wise densities of the ZO-GraSP mask and trains with random masks at those
densities (re-drawn every few epochs); `zo_grasp_mask(..., layer_ratios=True)` gives one such draw.

Coordinates are those of `model.parameters()` flattened in order (as `evograd.gym.policies.get_flat_params`);
biases and other 1-d parameters are never pruned (`weight_mask`). Density and the top-k rule are those of
`evograd.optim.pruning`.
"""
from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from ..core.validation import ParameterError, check_choice, check_float, check_int, check_seed
from ..optim.pruning import keep_top, random_mask

OWNER = "zo_grasp"
KINDS = ("grasp", "snip")


def weight_mask(model: torch.nn.Module) -> np.ndarray:
    """Flat bool over the module's parameters: True on entries of weight tensors (2-d and up), the prunable ones."""
    return np.concatenate([np.full(p.numel(), p.dim() >= 2) for p in model.parameters()])


def layer_groups(model: torch.nn.Module) -> np.ndarray:
    """Flat int labels: the index of the parameter each coordinate belongs to (for layer-wise pruning)."""
    return np.concatenate([np.full(p.numel(), i) for i, p in enumerate(model.parameters())])


def flat_params(model: torch.nn.Module) -> np.ndarray:
    """The module's parameters as one float64 vector (in `parameters()` order)."""
    return torch.cat([p.detach().reshape(-1).to(torch.float64) for p in model.parameters()]).numpy().copy()


def mask_dict(model: torch.nn.Module, mask: Any) -> dict[str, torch.Tensor]:
    """A flat mask as {name: bool tensor shaped like the parameter}: the form `evograd.zo.fit` takes."""
    mask = np.asarray(mask, dtype=bool)
    out, i = {}, 0
    for name, p in model.named_parameters():
        out[name] = torch.from_numpy(mask[i:i + p.numel()].copy()).reshape(p.shape)
        i += p.numel()
    if i != mask.size:
        raise ParameterError(f"The 'mask' of mask_dict has {mask.size} entries; the model has {i} parameters.")
    return out


def _double(batch: Any) -> Any:
    if isinstance(batch, torch.Tensor):
        return batch.double() if batch.is_floating_point() else batch
    if isinstance(batch, (tuple, list)):
        return type(batch)(_double(b) for b in batch)
    return batch


def _objective(model: torch.nn.Module, loss_fn: Callable, batch: Any) -> Callable[[torch.Tensor], float]:
    """f(flat float64 vector) -> loss, on a float64 copy of the model (the model itself is not touched)."""
    if not callable(loss_fn):
        raise ParameterError(f"The 'loss_fn' parameter of {OWNER} must be callable (model, batch) -> loss.")
    m = copy.deepcopy(model).double()
    params, batch = list(m.parameters()), _double(batch)

    def f(x: torch.Tensor) -> float:
        with torch.no_grad():
            torch.nn.utils.vector_to_parameters(x, params)
            return float(loss_fn(m, batch))

    return f


def _rge(f: Callable, x: torch.Tensor, q: int, mu: float, gen: torch.Generator) -> torch.Tensor:
    g = torch.zeros_like(x)
    for _ in range(q):
        u = torch.randn(x.shape, generator=gen, dtype=x.dtype)
        g.add_(u, alpha=(f(x + mu * u) - f(x - mu * u)) / (2 * mu * q))
    return g


def _hessian_times(f: Callable, x: torch.Tensor, d: torch.Tensor, q: int, mu: float, delta: float,
                   gen: torch.Generator) -> torch.Tensor:
    """RGE of H d: the same direction v at x + delta d and x - delta d (central differences in both)."""
    out, a, b = torch.zeros_like(x), x + delta * d, x - delta * d
    for _ in range(q):
        v = torch.randn(x.shape, generator=gen, dtype=x.dtype)
        da = f(a + mu * v) - f(a - mu * v)
        db = f(b + mu * v) - f(b - mu * v)
        out.add_(v, alpha=(da - db) / (4 * mu * delta * q))
    return out


def zo_grasp_scores(model: torch.nn.Module, loss_fn: Callable, batch: Any, q: int = 192, mu: float = 5e-3,
                    delta: float = 5e-3, kind: str = "grasp", seed: int | None = None) -> np.ndarray:
    """Signed saliency per flat coordinate from forward passes only: -w * Hg_hat ("grasp") or w * g_hat
    ("snip"); see the module docstring. Ranking uses |score|. Costs 6q forward passes (2q for "snip").

    loss_fn(model, batch) -> scalar; batch: what it takes (floating tensors are cast to float64 on a copy of
    the model). q: directions per estimate (DeepZero used 192 on ResNet-20); mu: the finite-difference radius
    along a direction; delta: the step along g_hat of the Hessian-vector difference (DeepZero: 5e-3 for both).
    """
    q = check_int(q, "q", OWNER, low=1)
    mu = check_float(mu, "mu", OWNER, low=0.0, low_inclusive=False)
    delta = check_float(delta, "delta", OWNER, low=0.0, low_inclusive=False)
    kind = check_choice(kind, "kind", OWNER, KINDS)
    seed = check_seed(seed, OWNER)
    gen = torch.Generator().manual_seed(int(np.random.SeedSequence(seed).generate_state(1)[0]))
    f = _objective(model, loss_fn, batch)
    w = torch.from_numpy(flat_params(model))
    g = _rge(f, w, q, mu, gen)
    if kind == "snip":
        return (w * g).numpy()
    return (-w * _hessian_times(f, w, g, q, mu, delta, gen)).numpy()


def grasp_scores(model: torch.nn.Module, loss_fn: Callable, batch: Any, kind: str = "grasp") -> np.ndarray:
    """The exact scores by autograd (float64): -w * (H g) for "grasp", w * g for "snip" (reference values)."""
    kind = check_choice(kind, "kind", OWNER, KINDS)
    m = copy.deepcopy(model).double()
    params = list(m.parameters())
    loss = loss_fn(m, _double(batch))
    grads = torch.autograd.grad(loss, params, create_graph=kind == "grasp")
    g = torch.cat([t.reshape(-1) for t in grads])
    w = torch.cat([p.detach().reshape(-1) for p in params])
    if kind == "snip":
        return (w * g.detach()).numpy()
    hg = torch.autograd.grad(g @ g.detach(), params)  # d/dw (g . stop(g)) = H g
    return (-w * torch.cat([t.reshape(-1) for t in hg])).numpy()


def zo_grasp_mask(model: torch.nn.Module, loss_fn: Callable, batch: Any, density: float, q: int = 192,
                  mu: float = 5e-3, delta: float = 5e-3, kind: str = "grasp", seed: int | None = None,
                  layer_ratios: bool = False, scores: Any = None) -> np.ndarray:
    """Pruning at initialization: the flat mask keeping round(density x weights) weights of largest |score|,
    ranked over all weight tensors at once (biases always kept). layer_ratios=True: DeepZero's use of it, a
    random mask with, in each weight tensor, the count the ZO-GraSP mask kept there. `scores`: reuse
    precomputed `zo_grasp_scores` (then q, mu, delta, kind are not used)."""
    prunable = weight_mask(model)
    if scores is None:
        scores = zo_grasp_scores(model, loss_fn, batch, q=q, mu=mu, delta=delta, kind=kind, seed=seed)
    mask = keep_top(np.abs(np.asarray(scores, dtype=np.float64)), density, prunable=prunable)
    if not layer_ratios:
        return mask
    groups, rng = layer_groups(model), np.random.default_rng(seed)
    out = mask.copy()
    for g in np.unique(groups[prunable]):
        members = np.flatnonzero(groups == g)
        kept = int(mask[members].sum())
        out[members] = random_mask(members.size, kept / members.size, rng, prunable=None) if kept else False
    return out
