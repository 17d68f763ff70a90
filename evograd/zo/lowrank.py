"""Low-rank population ES over an MLP's parameters, evaluated as one batched forward pass (EGGROLL).

EGGROLL (Sarkar et al. 2025, "Evolution Strategies at the Hyperscale") perturbs each weight matrix W (m x n)
of member i by E_i = A_i B_i^T / sqrt(r), with A_i (m x r) and B_i (n x r) standard normal. The entries of E_i
have mean 0 and variance 1 and are uncorrelated, like a dense Gaussian perturbation's, and their
distribution tends to N(0, 1) as r grows (fourth moment 3 + 6 / r). Member i's layer is then

    y = x W^T + b  +  sigma * s_i * ((x B_i) A_i^T / sqrt(r) + e_i),

one matmul of the base weights over every member's inputs together (popsize * k rows), plus rank-r
corrections computed by two batched products (x B, then (x B) A^T added in place). Biases are perturbed
densely (e_i, out_features normals per member: cheap). With antithetic pairs (the default, as OpenAI-ES
mirrors) members 2j and 2j+1 share factors with s = +1 and -1, so a generation draws popsize / 2 sets.

The population update is full rank, the ES gradient estimate of the paper: for shaped utilities u_i,

    g_W = -(1 / (popsize * sigma)) * sum_i u_i s_i A_i B_i^T / sqrt(r)

computed as one (m x r*D) @ (r*D x n) product over the D factor sets (no member matrix is ever formed),
then handed to an update rule of `evograd.optim.updates` (Adam by default, torch.optim's formulas).

Cost (benchmarks/bench_lowrank.py, 1.1M-parameter MLP, popsize 256 x 16 inputs, one CPU thread): drawing
the factors and evaluating the population ran at 0.92-1.0 (r = 1) and 0.81-0.91 (r = 4) of plain batch
inference of the same 4,096 inputs, against 0.07-0.09 for dense per-member perturbation. Each layer writes
its output once (bias, bias noise and low-rank term by one bmm) and adds x W^T in place, which is what
addmm's bias copy and GEMM cost the plain layer; the rest is x B and the normals (about 2.6M at r = 4).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import torch
from torch import nn

from ..core.shaping import SHAPERS
from ..core.validation import ParameterError, check_bool, check_choice, check_float, check_int, check_memory, check_seed
from ..optim.updates import RULES, make_rule

STATE_VERSION = 1
# elementwise activations applied in place on the layer output (a temporary of ours); other parameter-free
# modules are called on the (rows, features) batch
IN_PLACE = {nn.ReLU: torch.relu_, nn.Tanh: torch.tanh_, nn.Sigmoid: torch.sigmoid_}


def mlp_steps(model: nn.Module, owner: str = "LowRankES") -> list[tuple[str, nn.Module]]:
    """The model's steps in order as (qualified name, module): nn.Linear layers (perturbed) and parameter-free
    modules (applied to the (rows, features) batch, so they must act on each row alone). Sequentials nest."""
    if isinstance(model, nn.Linear):
        return [("", model)]
    if not isinstance(model, nn.Sequential):
        raise ParameterError(f"The 'model' parameter of {owner} must be an nn.Sequential of nn.Linear layers and "
                             f"parameter-free activations, or an nn.Linear. Got {type(model).__name__} instead.")
    steps: list[tuple[str, nn.Module]] = []
    for name, child in model.named_children():
        if isinstance(child, (nn.Sequential, nn.Linear)):
            steps += [(f"{name}.{sub}" if sub else name, m) for sub, m in mlp_steps(child, owner)]
            continue
        for pname, _ in child.named_parameters():
            raise ParameterError(f"{owner} perturbs nn.Linear layers only: parameter '{name}.{pname}' belongs to "
                                 f"a {type(child).__name__}.")
        steps.append((name, child))
    linears = [m for _, m in steps if isinstance(m, nn.Linear)]
    if not linears:
        raise ParameterError(f"The 'model' parameter of {owner} has no nn.Linear layer to perturb.")
    if len({id(m) for m in linears}) < len(linears):
        raise ParameterError(f"The 'model' parameter of {owner} uses one nn.Linear twice (shared weights).")
    return steps


@dataclass
class LowRankPopulation:
    """One generation's perturbations. Member i uses factor set `direction[i]` with sign `sign[i]`.

    For linear layer l, `factors[l]` is (At, e, Bt), each contiguous: At (D, r, m) holds A^T, e (D, m) the bias
    noise (None without a bias), Bt (D, r, n) holds B^T. Member i's perturbation of W is
    sign[i] * A B^T / sqrt(r) and of b is sign[i] * e, both times sigma.
    """

    factors: list[tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]]
    sign: np.ndarray
    direction: np.ndarray
    sigma: float
    rank: int

    def A(self, layer: int) -> torch.Tensor:
        """(D, m, r) factors A of a linear layer (a view)."""
        return self.factors[layer][0].transpose(1, 2)

    def B(self, layer: int) -> torch.Tensor:
        """(D, n, r) factors B of a linear layer (a view)."""
        return self.factors[layer][2].transpose(1, 2)

    def bias_noise(self, layer: int) -> torch.Tensor | None:
        """(D, m) bias noise of a linear layer, or None when it has no bias."""
        return self.factors[layer][1]


class LowRankES:
    """Low-rank ES (EGGROLL) over the weights and biases of an MLP, with a full-rank update.

    The model's parameters are the center: `evaluate` runs the whole population around them in one batched
    pass, and `tell` moves them in place.

    Parameters
    ----------
    model : nn.Sequential or nn.Linear
        nn.Linear layers and parameter-free row-wise modules (ReLU, Tanh, GELU, ...), nested Sequentials allowed.
    popsize : int, default 256
        Members per generation; even when `antithetic` (popsize // 2 factor sets, each used with + and -).
    sigma0 : float > 0, default 0.01
        Noise scale, fixed (a member's weights are W + sigma0 * A B^T / sqrt(rank): entries of variance
        sigma0^2, the same as a dense Gaussian perturbation of that scale).
    rank : int >= 1, default 1
        Rank r of each member's weight perturbation; the update is full rank whatever r. The paper finds small
        ranks enough; the bias of a low rank vanishes as O(1 / r).
    lr : float > 0, default 1e-3
        Step size of the update rule.
    optimizer : {"adam", "sgd"}, default "adam"
        Update rule that moves the center (`evograd.optim.updates`, the same as OpenAIES's `optimizer`).
    optimizer_kwargs : dict or None
        Its extra settings, e.g. {"momentum": 0.9} or {"weight_decay": 1e-4}.
    shaping : str, default "centered_ranks"
        Name in `evograd.core.shaping.SHAPERS`.
    antithetic : bool, default True
        Mirrored pairs sharing factors (members 2j and 2j+1 get +E and -E).
    maximize : bool, default False
        Values told are minimized (losses) unless True (returns).
    seed : int or None
        Seed of the torch.Generator that draws the factors (on `device`).
    device : str, torch.device or None
        Where the population runs; the model is moved there (nn.Module.to). None: where the model is.
    """

    def __init__(self, model: nn.Module, popsize: int = 256, sigma0: float = 0.01, rank: int = 1,
                 lr: float = 1e-3, optimizer: str = "adam", optimizer_kwargs: dict | None = None,
                 shaping: str = "centered_ranks", antithetic: bool = True, maximize: bool = False,
                 seed: int | None = None, device: Any = None):
        owner = type(self).__name__
        self.steps = mlp_steps(model, owner)
        self.antithetic = check_bool(antithetic, "antithetic", owner)
        self.popsize = check_int(popsize, "popsize", owner, low=2)
        if self.antithetic and self.popsize % 2:
            raise ParameterError(f"The 'popsize' parameter of {owner} must be an even int >= 2 (antithetic "
                                 f"pairs). Got {popsize!r} instead.")
        self.sigma = check_float(sigma0, "sigma0", owner, low=0.0, low_inclusive=False)
        self.rank = check_int(rank, "rank", owner, low=1)
        self.shaping = check_choice(shaping, "shaping", owner, SHAPERS)
        self.maximize = check_bool(maximize, "maximize", owner)
        self.seed = check_seed(seed, owner)
        self.optimizer = check_choice(optimizer, "optimizer", owner, tuple(RULES))
        if optimizer_kwargs is not None and not isinstance(optimizer_kwargs, dict):
            raise ParameterError(f"The 'optimizer_kwargs' parameter of {owner} must be a dict or None. "
                                 f"Got {optimizer_kwargs!r} instead.")
        self.inner = make_rule(self.optimizer, lr, owner, **(optimizer_kwargs or {}))
        self.model = model if device is None else model.to(device)
        self.linears = [m for _, m in self.steps if isinstance(m, nn.Linear)]
        names = {id(p): n for n, p in model.named_parameters()}
        self.params = [p for m in self.linears for p in (m.weight, m.bias) if p is not None]
        self.param_names = [names[id(p)] for p in self.params]
        self.layer_names = [(names[id(m.weight)], None if m.bias is None else names[id(m.bias)])
                            for m in self.linears]
        self.device = self.params[0].device
        self.dtype = self.params[0].dtype
        self.signs = (1.0, -1.0) if self.antithetic else (1.0,)
        self.directions = self.popsize // len(self.signs)
        check_memory(rank, "rank", owner, self.directions * sum(self._sizes()), "the factors of one generation",
                     itemsize=self.params[0].element_size(), unit="values")
        self.generator = torch.Generator(device=self.device)
        self.generator.manual_seed(self.seed if self.seed is not None else int(np.random.SeedSequence().entropy)
                                   % 2**63)
        self.generation, self.evals = 0, 0
        self._pending: LowRankPopulation | None = None
        self._rng_before_pending: torch.Tensor | None = None

    def _parts(self, lin: nn.Linear) -> tuple[int, int, int]:
        """Values per factor set of a linear layer: A (r * m), bias noise (m or 0), B (r * n)."""
        return (self.rank * lin.out_features, lin.out_features if lin.bias is not None else 0,
                self.rank * lin.in_features)

    def _sizes(self) -> list[int]:
        return [sum(self._parts(lin)) for lin in self.linears]

    @property
    def lr(self) -> float:
        return self.inner.lr

    @lr.setter
    def lr(self, value: float) -> None:
        self.inner.lr = check_float(value, "lr", type(self).__name__, low=0.0, low_inclusive=False)

    # ------------------------------------------------------------------ ask / evaluate / tell
    def ask(self) -> LowRankPopulation:
        """Draw this generation's factors (one randn call for every layer); idempotent until `tell`."""
        if self._pending is not None:
            return self._pending
        self._rng_before_pending = self.generator.get_state()
        D, r, sizes = self.directions, self.rank, self._sizes()
        buf = torch.randn(D * sum(sizes), generator=self.generator, device=self.device, dtype=self.dtype)
        factors, parts = [], buf.split([D * p for lin in self.linears for p in self._parts(lin)])
        for i, lin in enumerate(self.linears):
            m, n = lin.out_features, lin.in_features
            At, e, Bt = parts[3 * i].view(D, r, m), parts[3 * i + 1], parts[3 * i + 2].view(D, r, n)
            factors.append((At, e.view(D, m) if lin.bias is not None else None, Bt))
        sign = np.tile(self.signs, D)
        direction = np.repeat(np.arange(D), len(self.signs))
        self._pending = LowRankPopulation(factors, sign, direction, self.sigma, r)
        return self._pending

    def evaluate(self, inputs: Any) -> torch.Tensor:
        """Outputs (popsize, k, out) of every member on its inputs (popsize, k, in), in one batched pass.

        Inputs of shape (k, in) are shared by every member. No autograd graph is recorded.
        """
        pop = self._check_pending("evaluate")
        x = self._check_inputs(inputs)
        P, k = x.shape[0], x.shape[1]
        # sigma * s for each of the M * k rows of a factor set (members 2j then 2j+1, k inputs each)
        coef = torch.tensor(self.signs, dtype=self.dtype, device=self.device).repeat_interleave(k) * self.sigma
        h = x.reshape(self.directions, len(self.signs) * k, x.shape[2])
        layer, own = 0, False  # own: h is a temporary of ours (never modify the caller's inputs in place)
        with torch.no_grad():
            for _, step in self.steps:
                if isinstance(step, nn.Linear):
                    h = self._linear(h, step, pop.factors[layer], coef)
                    layer, own = layer + 1, True
                elif own and type(step) in IN_PLACE:
                    IN_PLACE[type(step)](h)
                else:
                    h = step(h.reshape(-1, h.shape[-1])).reshape(self.directions, len(self.signs) * k, -1)
        return h.view(P, k, -1)

    def _linear(self, h: torch.Tensor, lin: nn.Linear, factors: tuple, coef: torch.Tensor) -> torch.Tensor:
        """y = sigma s ((x B) A^T / sqrt(r) + e) + b per factor set, written by one bmm, then += x W^T by one
        in-place GEMM over all rows: the output is written once and updated once, as addmm's bias copy and
        GEMM would do for the plain layer."""
        At, e, Bt = factors  # (D, r, m), (D, m) or None, (D, r, n)
        D, rows, n = h.shape
        xbT = torch.bmm(Bt, h.transpose(1, 2))  # (D, r, rows): x B for every row at once
        left = [xbT * (coef / math.sqrt(self.rank))]
        if lin.bias is not None:  # rows sigma * s and 1 pick the bias noise e and the bias b
            left += [coef.expand(D, 1, rows), coef.new_ones(1, 1, 1).expand(D, 1, rows)]
            At = torch.cat([At, e.unsqueeze(1), lin.bias.view(1, 1, -1).expand(D, 1, -1)], dim=1)
        y = torch.bmm(torch.cat(left, dim=1).transpose(1, 2), At)  # (D, rows, m)
        y.view(D * rows, -1).addmm_(h.reshape(D * rows, n), lin.weight.t())
        return y

    def tell(self, values: Any) -> None:
        """Report one value per member of the last `ask` (minimized unless maximize) and move the center."""
        grads = self.gradient(values)
        x = torch.cat([p.detach().reshape(-1) for p in self.params]).to("cpu", torch.float64).numpy()
        g = torch.cat([grads[n].reshape(-1) for n in self.param_names]).to("cpu", torch.float64).numpy()
        self._write_center(self.inner.step(x, g))
        self.generation += 1
        self.evals += self.popsize
        self._pending = None

    def gradient(self, values: Any) -> dict[str, torch.Tensor]:
        """The full-rank ES estimate (a descent direction on the minimized values) per parameter name, from the
        values of the pending population; does not move the center."""
        pop = self._check_pending("gradient")
        f = self._check_values(values)
        u = SHAPERS[self.shaping](f)
        w = np.zeros(self.directions)
        np.add.at(w, pop.direction, u * pop.sign)
        w *= -1.0 / (self.popsize * self.sigma)
        wt = torch.as_tensor(w, dtype=self.dtype, device=self.device)
        out, r = {}, self.rank
        for lin, (At, e, Bt), (wname, bname) in zip(self.linears, pop.factors, self.layer_names):
            bw = (Bt * (wt / math.sqrt(r)).view(-1, 1, 1)).view(-1, lin.in_features)
            out[wname] = At.view(-1, lin.out_features).t() @ bw  # (m x rD) @ (rD x n)
            if bname is not None:
                out[bname] = wt @ e
        return out

    def step(self, inputs: Any, loss_fn: Callable[[torch.Tensor], Any]) -> torch.Tensor:
        """One generation: ask, evaluate `inputs`, `loss_fn(outputs) -> (popsize,)` values, tell; returns them.

        E.g. `es.step(x, lambda out: ((out - y) ** 2).mean(dim=(1, 2)))` with x (k, in) and y (k, out)."""
        self.ask()
        values = loss_fn(self.evaluate(inputs))
        self.tell(values)
        return values

    # ------------------------------------------------------------------ checks
    def _check_pending(self, what: str) -> LowRankPopulation:
        if self._pending is None:
            raise RuntimeError(f"{type(self).__name__}.{what}() was called before ask(): ask for a population first.")
        return self._pending

    def _check_inputs(self, inputs: Any) -> torch.Tensor:
        owner, n = type(self).__name__, self.linears[0].in_features
        x = torch.as_tensor(inputs, dtype=self.dtype, device=self.device)
        if x.ndim == 2:
            x = x.unsqueeze(0).expand(self.popsize, *x.shape)
        if x.ndim != 3 or x.shape[0] != self.popsize or x.shape[2] != n or x.shape[1] == 0:
            raise ParameterError(f"The 'inputs' passed to {owner}.evaluate() must have shape ({self.popsize}, k, "
                                 f"{n}) or (k, {n}). Got shape {tuple(x.shape)} instead.")
        return x.contiguous()

    def _check_values(self, values: Any) -> np.ndarray:
        owner = type(self).__name__
        if isinstance(values, torch.Tensor):
            values = values.detach().to("cpu", torch.float64).numpy()
        try:
            f = np.array(values, dtype=np.float64)
        except (TypeError, ValueError):
            f = None
        if f is None or f.shape != (self.popsize,):
            raise ParameterError(f"The 'values' passed to {owner}.tell() must be {self.popsize} real numbers, one "
                                 f"per member. Got {values!r:.80} instead.")
        f = -f if self.maximize else f
        f[~np.isfinite(f)] = np.inf  # NaN and inf rank worst
        return f

    def _write_center(self, flat: np.ndarray) -> None:
        src = torch.as_tensor(flat).to(self.device, self.dtype)
        with torch.no_grad():
            offset = 0
            for p in self.params:
                p.copy_(src[offset: offset + p.numel()].view_as(p))
                offset += p.numel()

    # ------------------------------------------------------------------ state
    def state_dict(self) -> dict[str, Any]:
        """Plain data: the center, the update rule, the generator (as it was before a pending ask, so the
        restored ES asks that population again), counters and the settings a restore must match."""
        rng = self._rng_before_pending if self._pending is not None else self.generator.get_state()
        return {"version": STATE_VERSION, "optimizer": "lowrank_es", "popsize": self.popsize, "rank": self.rank,
                "antithetic": self.antithetic, "sigma": self.sigma, "maximize": self.maximize, "seed": self.seed,
                "generation": self.generation, "evals": self.evals, "rng": rng.numpy().copy(),
                "center": {n: p.detach().to("cpu", torch.float64).numpy().copy()
                           for n, p in zip(self.param_names, self.params)},
                "inner": self.inner.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        owner = type(self).__name__
        if not isinstance(state, dict) or state.get("version") != STATE_VERSION:
            raise ParameterError(f"{owner}.load_state_dict() needs a dict from state_dict() (version "
                                 f"{STATE_VERSION}).")
        for key in ("popsize", "rank", "antithetic"):
            if state[key] != getattr(self, key):
                raise ParameterError(f"{owner}: the state has {key}={state[key]!r}, this ES has "
                                     f"{key}={getattr(self, key)!r}.")
        center = state["center"]
        for n, p in zip(self.param_names, self.params):
            if n not in center or tuple(np.shape(center[n])) != tuple(p.shape):
                got = "missing" if n not in center else f"shape {tuple(np.shape(center[n]))}"
                raise ParameterError(f"{owner}: parameter '{n}' of the state is {got}, the model's has shape "
                                     f"{tuple(p.shape)}.")
        self._write_center(np.concatenate([np.asarray(center[n], dtype=np.float64).ravel()
                                           for n in self.param_names]))
        self.inner.load_state_dict(state["inner"])
        self.generator.set_state(torch.as_tensor(np.asarray(state["rng"], dtype=np.uint8)))
        self.sigma, self.maximize, self.seed = float(state["sigma"]), bool(state["maximize"]), state["seed"]
        self.generation, self.evals = int(state["generation"]), int(state["evals"])
        self._pending, self._rng_before_pending = None, None
