"""SGD and Adam: torch.optim on a flat parameter tensor, a "population of one whose tell needs a gradient".

Two ways to use them:
- with `x0`: the optimizer owns a flat float64 tensor; `ask()` returns it as shape (1, dim) and
  `tell(values, grads)` takes grads of shape (1, dim). Evolution strategies use this for their mean update.
- without `x0`, then `bind(params)`: the optimizer steps a torch module's own parameters (PPO's learner).
  After `loss.backward()`, `tell(loss_value)` steps on the gradients already in `.grad`.

A bound optimizer is told every minibatch (PPO on HalfCheetah: 160 steps per 512 env steps), so its
protocol costs nothing it need not: `ask_candidates()` reads the parameters only if a row is looked at
(`_LiveParams`), `tell(loss)` steps on the `.grad` tensors where they are (`_BoundGrads`: no float64 copy,
a one-reduction finiteness check), and torch's fused Adam kernel replaces its per-op loop where the build
has it. On HalfCheetah's zoo setting (two 256-256 MLPs, 142k parameters) they took PPO's first 40,960
env steps from 40 s to 32.5 s on one core.
"""
from __future__ import annotations

from typing import Any, Iterable

import numpy as np
import torch

from ..core.candidates import Candidates, DenseCandidates
from ..core.validation import ParameterError, check_float
from ..optim import updates
from ..optim.base import Optimizer, named


class _LiveParams(Candidates):
    """A bound optimizer's one candidate, its parameters, read when a row is taken rather than at ask time
    (they do not change between ask and tell)."""

    kind = DenseCandidates.kind

    def __init__(self, opt: "_TorchGradient"):
        self._opt = opt

    def __len__(self) -> int:
        return 1

    @property
    def dim(self) -> int:
        return self._opt.dim

    def take(self, idx) -> np.ndarray:
        return self._opt._flat().numpy()[None, :][np.asarray(idx, dtype=np.int64)]

    def to_state(self) -> dict[str, Any]:
        return DenseCandidates(self.materialize()).to_state()


class _BoundGrads:
    """The bound parameters' own `.grad` tensors as tell's gradients, without copying them; negated in
    place when the optimizer maximizes (so a maximizing bound optimizer flips the `.grad` it steps on, which
    it then clears). A parameter whose `.grad` is None is not stepped, as in torch.optim."""

    def __init__(self, params: list[torch.Tensor], negate: bool = False):
        self.params, self.negate = params, negate

    def __neg__(self) -> "_BoundGrads":
        return _BoundGrads(self.params, not self.negate)

    def all_finite(self) -> bool:
        # one reduction per tensor: a NaN or inf anywhere makes the sum non-finite; only then (or on an
        # overflowing sum) the elementwise test decides (torch's isfinite is ~30x slower than a sum on CPU)
        return all(bool(torch.isfinite(g.sum())) or bool(torch.isfinite(g).all())
                   for g in (p.grad for p in self.params) if g is not None)


class _TorchGradient(Optimizer):
    needs_grad = True
    torch_class: type = torch.optim.Optimizer
    fused_ok = False  # the torch class has a fused kernel to try for bound parameters

    def __init__(self, x0: Any = None, seed: int | None = None, maximize: bool = False, mask: Any = None,
                 **torch_kwargs):
        # with a mask the flat tensor holds the searched coordinates only (see `Optimizer`); a bound module has none
        super().__init__(x0, seed=seed, maximize=maximize, x0_optional=True, mask=mask)
        self._torch_kwargs = torch_kwargs
        self._params: list[torch.Tensor] | None = None
        self._opt: torch.optim.Optimizer | None = None
        self._bound = False
        if self.x0 is not None:
            self._attach([torch.tensor(self.x0, dtype=torch.float64)])

    # ---------------------------------------------------------------- binding
    def bind(self, params: Iterable[torch.Tensor]) -> "_TorchGradient":
        """Step these tensors (e.g. `module.parameters()`) instead of a flat vector of our own."""
        if self._params is not None:
            raise RuntimeError(f"{type(self).__name__} is already bound to parameters.")
        params = [p for p in params]
        if not params:
            raise ParameterError(f"{type(self).__name__}.bind() got no parameters.")
        self._bound = True
        self._attach(params)
        self.x0 = self._flat().numpy().astype(np.float64)
        return self

    def _attach(self, params: list[torch.Tensor]) -> None:
        self._params = params
        if self._bound and self.fused_ok:
            try:  # the same update in one kernel per step; builds or dtypes without it take the loop
                self._opt = self.torch_class(params, **self._torch_kwargs, fused=True)
                return
            except (RuntimeError, TypeError, ValueError):
                pass
        self._opt = self.torch_class(params, **self._torch_kwargs)

    def _require_params(self) -> None:
        if self._params is None:
            raise RuntimeError(
                f"{type(self).__name__} has no parameters: pass x0=... or call bind(module.parameters()).")

    def _flat(self) -> torch.Tensor:
        return torch.cat([p.detach().reshape(-1) for p in self._params]).to(torch.float64)

    @property
    def center(self) -> np.ndarray:
        """The current parameters."""
        self._require_params()
        return self.embed(self._flat().numpy())

    @property
    def popsize(self) -> int:
        return 1

    @property
    def lr(self) -> float:
        return float(self._opt.param_groups[0]["lr"])

    def set_lr(self, lr: float) -> None:
        """Change the learning rate (schedules, e.g. PPO's linear decay)."""
        lr = check_float(lr, "lr", type(self).__name__, low=0.0)
        for group in self._opt.param_groups:
            group["lr"] = lr

    @property
    def params(self) -> list[torch.Tensor]:
        self._require_params()
        return self._params

    # ---------------------------------------------------------------- protocol
    def _ask(self) -> np.ndarray | Candidates:
        self._require_params()
        if self._bound:
            return _LiveParams(self)
        return self._flat().numpy()[None, :].copy()

    def tell(self, values: Any, grads: Any = None) -> None:
        """Values (one per asked row: here one) and gradients of shape (1, dim); a bound optimizer told no
        grads steps on its parameters' `.grad` (negated in place first when maximizing), and clears them."""
        if grads is None and self._bound:
            if any(p.grad is None for p in self._params if p.requires_grad):
                raise ParameterError(
                    f"{type(self).__name__}.tell() got no grads and some bound parameters have no .grad: "
                    "call loss.backward() first or pass grads."
                )
            grads = _BoundGrads(self._params)
        super().tell(values, grads)

    def _check_grads(self, grads: Any, n: int) -> Any:
        if isinstance(grads, _BoundGrads):
            return grads
        return super()._check_grads(grads, n)

    def _tell(self, f: np.ndarray, grads: np.ndarray | _BoundGrads) -> None:
        bad = f"The 'grads' passed to {type(self).__name__}.tell() contain NaN or inf."
        if isinstance(grads, _BoundGrads):
            if not grads.all_finite():
                raise ParameterError(bad.replace("passed to", "in the bound parameters' .grad at"))
            if grads.negate:
                for p in self._params:
                    if p.grad is not None:
                        p.grad.neg_()
            self._opt.step()
            self._opt.zero_grad(set_to_none=True)
            return
        if not np.all(np.isfinite(grads)):
            raise ParameterError(bad)
        flat = torch.from_numpy(np.ascontiguousarray(grads[0]))
        offset = 0
        for p in self._params:
            k = p.numel()
            p.grad = flat[offset : offset + k].reshape(p.shape).to(p.dtype).clone()
            offset += k
        self._opt.step()
        self._opt.zero_grad(set_to_none=True)

    # ---------------------------------------------------------------- state
    def _state(self) -> dict[str, Any]:
        self._require_params()
        sd = self._opt.state_dict()
        return {
            "x": self._flat().numpy().copy(),
            "param_groups": [{k: v for k, v in g.items() if k != "params"} for g in sd["param_groups"]],
            "state": {int(k): {n: _to_plain(v) for n, v in s.items()} for k, s in sd["state"].items()},
        }

    def _load_state(self, state: dict[str, Any]) -> None:
        self._require_params()
        x = torch.as_tensor(np.asarray(state["x"]))
        offset = 0
        with torch.no_grad():
            for p in self._params:
                k = p.numel()
                p.copy_(x[offset : offset + k].reshape(p.shape).to(p.dtype))
                offset += k
        current = self._opt.state_dict()
        groups = []
        for saved, cur in zip(state["param_groups"], current["param_groups"]):
            # the hyperparameters are the state's; which kernel runs them is this optimizer's (a state saved
            # by the loop kernel resumes fused where the build has it, and the other way round)
            kernel = {k: cur[k] for k in _KERNEL_KEYS if k in cur}
            groups.append({**saved, **kernel, "params": cur["params"]})
        inner = {int(k): {n: _from_plain(v) for n, v in s.items()} for k, s in state["state"].items()}
        self._opt.load_state_dict({"state": inner, "param_groups": groups})


_KERNEL_KEYS = ("fused", "foreach", "capturable", "differentiable")


def _to_plain(v: Any) -> Any:
    return v.detach().cpu().numpy().copy() if isinstance(v, torch.Tensor) else v


def _from_plain(v: Any) -> Any:
    return torch.from_numpy(np.array(v)) if isinstance(v, np.ndarray) else v


@named("sgd")
class SGD(_TorchGradient):
    """Stochastic gradient descent (torch.optim.SGD) through the protocol.

    lr : float, default 0.001 (torch's default). momentum : float in [0, 1), default 0. nesterov : bool, default False.
    weight_decay : float >= 0, default 0 (L2 penalty added to the gradient). mask : bool array (dim,) or None: the
    coordinates to train, the others stay at x0 (needs x0; see `Optimizer`). Checked as `evograd.optim.updates`
    checks the numpy rule of the same name (the ES mean updates use that one).
    """

    torch_class = torch.optim.SGD

    def __init__(
        self,
        x0: Any = None,
        lr: float = 0.001,
        momentum: float = 0.0,
        nesterov: bool = False,
        weight_decay: float = 0.0,
        seed: int | None = None,
        maximize: bool = False,
        mask: Any = None,
    ):
        rule = updates.SGD(lr, momentum, nesterov, weight_decay, owner=type(self).__name__)  # the one set of checks
        super().__init__(x0, seed=seed, maximize=maximize, mask=mask, lr=rule.lr, momentum=rule.momentum,
                         nesterov=rule.nesterov, weight_decay=rule.weight_decay)


@named("adam")
class Adam(_TorchGradient):
    """Adam (torch.optim.Adam) through the protocol.

    lr : float, default 0.001. betas : (float, float), default (0.9, 0.999). eps : float, default 1e-8.
    weight_decay : float >= 0, default 0 (L2 penalty added to the gradient).
    mask : bool array (dim,) or None: the coordinates to train, the others stay at x0 (needs x0; see `Optimizer`).
    """

    torch_class = torch.optim.Adam
    fused_ok = True

    def __init__(
        self,
        x0: Any = None,
        lr: float = 0.001,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        seed: int | None = None,
        maximize: bool = False,
        mask: Any = None,
    ):
        rule = updates.Adam(lr, betas, eps, weight_decay, owner=type(self).__name__)  # the one set of checks
        super().__init__(x0, seed=seed, maximize=maximize, mask=mask, lr=rule.lr, betas=rule.betas, eps=rule.eps,
                         weight_decay=rule.weight_decay)
