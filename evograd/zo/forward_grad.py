"""Forward gradients (Baydin et al. 2022, "Gradients without Backpropagation"): g = (grad f . v) v, v ~ N(0, I).

The directional derivative grad f . v comes exactly from one forward-mode pass (`torch.func.jvp`): no stored
activations, no backward pass, about 3x a forward pass where backprop costs about 4x. The estimate is
unbiased (E[v v^T] = I) with the variance of a Gaussian random-direction estimate, (k + 1) |grad f|^2 / q
for q directions over k coordinates, but no smoothing radius and no finite-difference error.

Two ways in:
- `forward_gradient(fn, x, q, generator)` / `value_and_forward_gradient(...)`: the estimate for a torch function
  of a tensor (or of a dict of tensors, e.g. a module's parameters for `torch.func.functional_call`).
- `ForwardGrad` ("forward_grad" in the registry), the protocol's optimizer. A forward gradient needs the
  function itself, not values, so it fits the protocol in one of two ways, chosen by `fn`:
  * built with `fn=` (a torch function of a (dim,) float64 tensor): `ask` returns the center as one row,
    `tell(values)` takes its value (best-so-far, history) and the optimizer runs the q jvps of fn at the
    center itself. Driven by `minimize`, fn is evaluated once more for the reported value: call
    `value_and_forward_gradient` directly where that extra forward pass matters.
  * built without fn: a gradient optimizer like sgd/adam (`needs_grad`): `tell(values, grads)` and the
    estimate is (grads . v) v, the same random variable a jvp gives. That costs a full gradient, so it is for
    comparing estimators on equal terms (and for the protocol's generic tests), not for saving work.
torch is imported inside the functions that need it: the class loads none, and without fn needs none.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from ..core.candidates import DenseCandidates, draw_seeds
from ..core.validation import ParameterError, check_int, check_memory
from ..optim.base import named
from ..optim.zo_base import ZerothOrder, direction


def _tangents(x: Any, generator: Any, mask: Any) -> Any:
    """A standard-normal tangent shaped like x (a tensor or a dict of tensors), zero where mask is False."""
    import torch

    if isinstance(x, dict):
        return {name: _tangents(t, generator, None if mask is None else mask[name]) for name, t in x.items()}
    v = torch.randn(x.shape, generator=generator, dtype=x.dtype, device=x.device)
    return v if mask is None else v * mask


def directional_derivative(fn: Callable, x: Any, v: Any) -> tuple[Any, Any]:
    """(fn(x), grad fn(x) . v) from one forward-mode pass; fn must return a scalar tensor."""
    import torch

    value, d = torch.func.jvp(fn, (x,), (v,))
    if not isinstance(value, torch.Tensor) or value.numel() != 1:
        raise ParameterError(f"fn must return a scalar tensor for a forward gradient. Got "
                             f"{type(value).__name__} of shape {tuple(getattr(value, 'shape', ()))} instead.")
    return value.reshape(()), d.reshape(())


def value_and_forward_gradient(fn: Callable, x: Any, q: int = 1, generator: Any = None,
                               mask: Any = None) -> tuple[Any, Any]:
    """fn(x) and the forward-gradient estimate (1/q) sum_i (grad fn(x) . v_i) v_i, v_i ~ N(0, I).

    x is a tensor or a dict of tensors (the estimate has the same structure); generator a `torch.Generator`
    (None: torch's global one); mask a bool tensor (or dict of them) of x's shape whose False entries get no
    perturbation and a zero estimate. The q jvps run one after another: memory of one tangent, not q.
    """
    import torch

    q = check_int(q, "q", "forward_gradient", low=1)
    g, value = None, None
    with torch.no_grad():
        for _ in range(q):
            v = _tangents(x, generator, mask)
            value, d = directional_derivative(fn, x, v)
            g = _axpy(g, d / q, v)
    return value, g


def forward_gradient(fn: Callable, x: Any, q: int = 1, generator: Any = None, mask: Any = None) -> Any:
    """The forward-gradient estimate of grad fn(x) (see `value_and_forward_gradient`)."""
    return value_and_forward_gradient(fn, x, q, generator, mask)[1]


def _axpy(g: Any, a: Any, v: Any) -> Any:
    """g + a v in place over a tensor or a dict of tensors (g None: v scaled in place, v is not needed again)."""
    if isinstance(v, dict):
        return {k: _axpy(None if g is None else g[k], a, t) for k, t in v.items()}
    return v.mul_(a) if g is None else g.addcmul_(v, a)


@named("forward_grad")
class ForwardGrad(ZerothOrder):
    """Forward-gradient descent: the estimate (grad f . v) v over q Gaussian directions, Adam on it.

    Parameters
    ----------
    x0 : array (dim,)
        Initial point.
    lr : float > 0, default 0.01
        Step size (Adam's 0.01 suits parameters of order 1; Baydin et al. ran SGD at 2e-4 to 2e-5 on networks).
    q : int >= 1, default 1
        Directions (jvps) averaged per step; the variance falls like 1/q.
    update : {"sgd", "momentum", "adam", "sign"}, default "adam"
    momentum : float in [0, 1), default 0.9
        Heavy-ball coefficient of update="momentum".
    mask : bool array (dim,) or None, default None
        Coordinates that take part: the others get no tangent and are never updated.
    fn : callable or None, default None
        A torch function of a (dim,) float64 tensor returning a scalar: the optimizer computes the directional
        derivatives itself (tell takes values only). None: tell needs grads, as for sgd/adam (see the module).
    seed, maximize
        See `Optimizer`. There is no smoothing radius: jvps are exact.
    """

    needs_grad = True  # without fn; an instance built with fn sets it False

    def __init__(self, x0: Any = None, lr: float = 0.01, q: int = 1, update: str = "adam", momentum: float = 0.9,
                 mask: Any = None, fn: Callable | None = None, seed: int | None = None, maximize: bool = False):
        owner = type(self).__name__
        self.q = check_int(q, "q", owner, low=1)
        check_memory(self.q, "q", owner, self.q, "directions per step (their seeds)", unit="int64 seeds")
        if fn is not None and not callable(fn):
            raise ParameterError(f"The 'fn' parameter of {owner} must be None or a callable (a torch function). "
                                 f"Got {type(fn).__name__} instead.")
        self.fn = fn
        super().__init__(x0, lr, update, momentum, mask, seed, maximize)
        if fn is not None:
            self.needs_grad = False

    @property
    def popsize(self) -> int:
        return 1

    def _asked_now(self) -> dict[str, Any]:
        return {"seeds": draw_seeds(self.rng, self.q)}

    def _candidates(self, asked: dict[str, Any]) -> DenseCandidates:
        return DenseCandidates(self._center[None, :].copy())  # the directions stay seeds in `asked`

    def _estimate(self, f: np.ndarray, grads: np.ndarray | None) -> np.ndarray:
        if grads is None and self.fn is None:  # only reachable if needs_grad was changed by hand
            raise ParameterError(f"{type(self).__name__} was built without fn: tell(values, grads) needs grads.")
        g, v, used = np.zeros(self.dim), np.empty(self.dim), 0
        for s in np.asarray(self._asked["seeds"], dtype=np.int64):
            direction(int(s), self.dim, "gaussian", self.mask, out=v)
            d = float(grads[0] @ v) if grads is not None else self._jvp(v)
            if np.isfinite(d):
                g += d * v
                used += 1
        return g / max(used, 1)

    def _jvp(self, v: np.ndarray) -> float:
        """grad f(center) . v of the minimized objective, by torch.func.jvp on fn."""
        import torch

        x = torch.from_numpy(self._center.copy())
        with torch.no_grad():
            _, d = directional_derivative(self.fn, x, torch.from_numpy(v.copy()))
        return -float(d) if self.maximize else float(d)
