"""Test accuracy against forward passes: one training run of a method on a classification task (examples/zo_digits.py).

Every method sees minibatches of the same size from `evograd.zo.tasks.Batches` and is charged in forward-pass
equivalents (COST): one forward pass of one minibatch through one set of parameters is 1, so a population of P
members on a minibatch is P, a MeZO direction 2, an rge step q + 1, a cge step 2 per unmasked coordinate; a
backward pass is charged 2 (a backprop step: 1 + 2 = 3) and a forward-mode jvp 3. docs/zeroth_order.md measured
forward+backward at 2.8-3.4x and a jvp at 2.8-3.7x a forward pass on a 1.9M-parameter MLP. The raw counts
(forward, backward, jvp) are kept beside the total.

Methods (METHODS), each with the settings of SETTINGS[method][scale] unless overridden:
- "adam": backprop, torch.optim.Adam.
- "mezo": `evograd.zo.fit` (in place, q directions, update rule "adam" by default).
- "forward_grad": `value_and_forward_gradient` on the module's parameters (torch.func.jvp), torch Adam on it.
- "rge", "cge", "openai_es": the numpy optimizers of `evograd.optim` on the flat parameter vector
  (torch.nn.utils.parameters_to_vector), their asked rows evaluated in batches by torch.func.vmap (row by row
  beyond CHUNK_VALUES values per batch). cge takes a random mask of `density` per parameter tensor.
- "lowrank_es": `evograd.zo.LowRankES`, the population in one batched pass (nn.Sequential of Linear only).
"""
from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import parameters_to_vector, vector_to_parameters

from ..core.validation import ParameterError, check_choice
from ..optim.registry import make
from .forward_grad import value_and_forward_gradient
from .lowrank import LowRankES
from .tasks import Batches, Split, accuracy
from .training import fit

COST = {"forward": 1, "backward": 2, "jvp": 3}
METHODS = ("adam", "mezo", "rge", "cge", "forward_grad", "lowrank_es", "openai_es")
CHUNK_VALUES = 2**22  # parameter values per vmapped batch of rows
# chosen on a validation split carved from the training rows (tasks.holdout), seed 100, by final accuracy:
# small (digits MLP, reused for the CNN) from lr in {3e-4, 1e-3, 3e-3, 1e-2, 3e-2} at 10,000 fwd-eq (cge
# {3e-3 .. 3e-1}, es {1e-3 .. 1e-1}, adam at 3,000); big (10M MLP): adam from {1e-4, 1e-3} at 300 fwd-eq,
# the zeroth-order methods from {1e-5, 1e-4} (neither moved the accuracy in 150-320 fwd-eq)
SETTINGS: dict[str, dict[str, dict[str, Any]]] = {
    "adam": {"small": {"lr": 1e-2}, "big": {"lr": 1e-3}},
    "mezo": {"small": {"lr": 3e-3, "mu": 1e-3, "q": 1, "update": "adam"},
             "big": {"lr": 1e-5, "mu": 1e-3, "q": 1, "update": "adam"}},
    "rge": {"small": {"lr": 3e-3, "mu": 1e-3, "q": 10}, "big": {"lr": 1e-5, "mu": 1e-3, "q": 10}},
    "cge": {"small": {"lr": 0.1, "mu": 1e-3, "density": 0.1}},
    "forward_grad": {"small": {"lr": 3e-3, "q": 1}, "big": {"lr": 1e-5, "q": 1}},
    "lowrank_es": {"small": {"lr": 1e-2, "sigma0": 0.01, "popsize": 32, "rank": 1},
                   "big": {"lr": 1e-5, "sigma0": 0.01, "popsize": 32, "rank": 1}},
    "openai_es": {"small": {"lr": 1e-2, "sigma0": 0.01, "popsize": 32, "weight_decay": 0.0},
                  "big": {"lr": 1e-5, "sigma0": 0.01, "popsize": 16, "weight_decay": 0.0, "noise": "table"}},
}


def loss_of(model: nn.Module, batch: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
    return F.cross_entropy(model(batch[0]), batch[1])


class Meter:
    """Charges forward-pass equivalents and evaluates test accuracy each time the total crosses a checkpoint.

    rows: one per evaluation, {"fwd_eq", "forward", "backward", "jvp", "test_acc", "wall_s"}; wall_s is
    training time (evaluations excluded). `done` once the total reaches `budget`."""

    def __init__(self, budget: float, checkpoints: Any, evaluate: Callable[[], float]):
        self.budget, self.evaluate = float(budget), evaluate
        self.checkpoints = sorted(float(c) for c in checkpoints if 0 < c < budget) + [self.budget]
        self.counts = {k: 0 for k in COST}
        self.rows: list[dict[str, float]] = []
        self.t0, self.eval_s, self.next = time.perf_counter(), 0.0, 0
        self.record()

    @property
    def spent(self) -> int:
        return sum(COST[k] * n for k, n in self.counts.items())

    @property
    def done(self) -> bool:
        return self.spent >= self.budget

    def add(self, forward: int = 0, backward: int = 0, jvp: int = 0) -> None:
        for key, n in (("forward", forward), ("backward", backward), ("jvp", jvp)):
            self.counts[key] += n
        if self.next < len(self.checkpoints) and self.spent >= self.checkpoints[self.next]:
            while self.next < len(self.checkpoints) and self.spent >= self.checkpoints[self.next]:
                self.next += 1
            self.record()

    def record(self) -> None:
        t = time.perf_counter()
        acc = float(self.evaluate())
        self.eval_s += time.perf_counter() - t
        self.rows.append({"fwd_eq": self.spent, **self.counts, "test_acc": acc,
                          "wall_s": time.perf_counter() - self.t0 - self.eval_s})


def run(method: str, make_model: Callable[[], nn.Module], split: Split, *, seed: int, budget: float,
        checkpoints: Any = (), batch_size: int = 128, scale: str = "small", **overrides: Any) -> dict[str, Any]:
    """Build a model by make_model() after torch.manual_seed(seed), train it on split's training data with
    `method` until `budget` forward-pass equivalents, evaluating test accuracy at each checkpoint. Returns
    {"method", "seed", "settings", "rows", "counts", "fwd_eq", "wall_s", "model"} (rows: see `Meter`)."""
    check_choice(method, "method", "compare.run", METHODS)
    if scale not in SETTINGS[method]:
        raise ParameterError(f"compare.run: method {method!r} has no {scale!r} settings (it has "
                             f"{sorted(SETTINGS[method])})")
    settings = {**SETTINGS[method][scale], **overrides}
    torch.manual_seed(seed)
    model = make_model()
    batches = Batches(split.x_train, split.y_train, batch_size, seed)
    meter = Meter(budget, checkpoints, lambda: accuracy(model, split.x_test, split.y_test))
    RUNNERS[method](model, batches, meter, seed, settings)
    if meter.rows[-1]["fwd_eq"] != meter.spent:
        meter.record()
    return {"method": method, "seed": seed, "settings": settings, "rows": meter.rows, "counts": dict(meter.counts),
            "fwd_eq": meter.spent, "wall_s": meter.rows[-1]["wall_s"], "model": model}


def _adam(model: nn.Module, batches: Batches, meter: Meter, seed: int, s: dict) -> None:
    opt = torch.optim.Adam(model.parameters(), lr=s["lr"])
    for batch in batches.forever():
        opt.zero_grad(set_to_none=True)
        loss_of(model, batch).backward()
        opt.step()
        meter.add(forward=1, backward=1)
        if meter.done:
            return


def _mezo(model: nn.Module, batches: Batches, meter: Meter, seed: int, s: dict) -> None:
    seen = [0]

    def callback(row: dict) -> bool:
        meter.add(forward=row["forward_passes"] - seen[0])
        seen[0] = row["forward_passes"]
        return meter.done

    steps = int(np.ceil(meter.budget / (2 * s["q"])))
    fit(model, loss_of, batches, "mezo", lr=s["lr"], mu=s["mu"], q=s["q"], update=s["update"], steps=steps,
        seed=seed, callback=callback)


def _forward_grad(model: nn.Module, batches: Batches, meter: Meter, seed: int, s: dict) -> None:
    params = dict(model.named_parameters())
    view = {n: p.detach() for n, p in params.items()}  # the same storage: Adam's steps show through
    opt = torch.optim.Adam(params.values(), lr=s["lr"])
    gen = torch.Generator().manual_seed(seed)
    for x, y in batches.forever():
        def fn(p: dict, x=x, y=y) -> torch.Tensor:
            return F.cross_entropy(torch.func.functional_call(model, p, (x,)), y)

        _, g = value_and_forward_gradient(fn, view, q=s["q"], generator=gen)
        for n, p in params.items():
            p.grad = g[n]
        opt.step()
        meter.add(jvp=s["q"])
        if meter.done:
            return


def _lowrank_es(model: nn.Module, batches: Batches, meter: Meter, seed: int, s: dict) -> None:
    es = LowRankES(model, popsize=s["popsize"], sigma0=s["sigma0"], rank=s["rank"], lr=s["lr"], seed=seed)
    for x, y in batches.forever():
        es.ask()
        out = es.evaluate(x)  # (popsize, batch, classes)
        losses = F.cross_entropy(out.reshape(-1, out.shape[-1]), y.repeat(es.popsize), reduction="none")
        es.tell(losses.view(es.popsize, -1).mean(dim=1))
        meter.add(forward=es.popsize)
        if meter.done:
            return


class FlatModel:
    """The module as a function of its flat float64 parameter vector (parameters_to_vector's order)."""

    def __init__(self, model: nn.Module):
        self.model = model
        self.names = [n for n, _ in model.named_parameters()]
        self.shapes = [p.shape for _, p in model.named_parameters()]
        self.x0 = parameters_to_vector(model.parameters()).detach().double().numpy()
        self.dim = self.x0.shape[0]

    def write(self, x: np.ndarray) -> None:
        with torch.no_grad():
            vector_to_parameters(torch.from_numpy(np.asarray(x)).float(), self.model.parameters())

    def losses(self, cand: Any, batch: tuple[torch.Tensor, torch.Tensor]) -> np.ndarray:
        """The minibatch loss of every row of `cand` (evograd Candidates), vmapped in chunks of rows."""
        n, chunk = len(cand), max(1, CHUNK_VALUES // self.dim)
        out = np.empty(n)
        with torch.no_grad():
            for a in range(0, n, chunk):
                rows = cand.take(np.arange(a, min(a + chunk, n)))
                out[a: a + len(rows)] = self._rows(torch.from_numpy(rows).float(), batch)
        return out

    def _rows(self, theta: torch.Tensor, batch: tuple[torch.Tensor, torch.Tensor]) -> np.ndarray:
        if theta.shape[0] == 1:
            vector_to_parameters(theta[0], self.model.parameters())
            return np.array([float(loss_of(self.model, batch))])
        params, offset = {}, 0
        for name, shape in zip(self.names, self.shapes):
            size = int(np.prod(shape))
            params[name] = theta[:, offset: offset + size].reshape(-1, *shape)
            offset += size

        def one(p: dict) -> torch.Tensor:
            return F.cross_entropy(torch.func.functional_call(self.model, p, (batch[0],)), batch[1])

        return torch.func.vmap(one)(params).numpy().astype(np.float64)

    def mask(self, density: float, seed: int) -> np.ndarray:
        """A random mask keeping round(density * size) entries (at least 1) of every parameter tensor."""
        rng, parts = np.random.default_rng(seed), []
        for shape in self.shapes:
            size = int(np.prod(shape))
            m = np.zeros(size, dtype=bool)
            m[rng.choice(size, size=max(1, round(density * size)), replace=False)] = True
            parts.append(m)
        return np.concatenate(parts)


def _flat(make: Callable[[FlatModel, int, dict], Any]) -> Callable:
    """A runner that drives a numpy optimizer of evograd.optim through ask/tell on the flat parameters."""

    def runner(model: nn.Module, batches: Batches, meter: Meter, seed: int, s: dict) -> None:
        flat = FlatModel(model)
        opt = make(flat, seed, s)
        for batch in batches.forever():
            cand = opt.ask_candidates()
            opt.tell(flat.losses(cand, batch))
            flat.write(opt.center)
            meter.add(forward=len(cand))
            if meter.done:
                return

    return runner


def _rge(flat: FlatModel, seed: int, s: dict) -> Any:
    return make("rge", x0=flat.x0, lr=s["lr"], mu=s["mu"], q=s["q"], seed=seed)


def _cge(flat: FlatModel, seed: int, s: dict) -> Any:
    return make("cge", x0=flat.x0, lr=s["lr"], mu=s["mu"], mask=flat.mask(s["density"], seed), seed=seed)


def _openai_es(flat: FlatModel, seed: int, s: dict) -> Any:
    return make("openai_es", x0=flat.x0, popsize=s["popsize"], sigma0=s["sigma0"], lr=s["lr"],
                      weight_decay=s["weight_decay"], noise=s.get("noise", "rng"), seed=seed)


RUNNERS: dict[str, Callable] = {"adam": _adam, "mezo": _mezo, "forward_grad": _forward_grad,
                                "lowrank_es": _lowrank_es, "rge": _flat(_rge), "cge": _flat(_cge),
                                "openai_es": _flat(_openai_es)}
