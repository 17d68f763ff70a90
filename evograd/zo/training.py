"""`evograd.zo.fit`: train a torch module without backpropagation, its parameters perturbed and updated in place.

    result = eg.zo.fit(model, lambda m, b: F.mse_loss(m(b[0]), b[1]), loader, lr=1e-3, steps=2000, seed=0)

One step takes one batch from `data` and makes a MeZO step on it (`evograd.zo.mezo.InPlaceMeZO`: 2 q forward
passes, 4 passes over the parameters, no copy of them). The module is used in the mode it is in (call
`model.eval()` first to train without dropout); its two forward passes per direction see the same random state.
"""
from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import torch

from ..core.callbacks import callback_name, wants_stop
from ..core.progress import Progress, run_warnings
from ..core.progress import progress as make_progress
from ..core.validation import ParameterError, check_budget, check_choice
from .mezo import InPlaceMeZO
from .noise import CHUNK

METHODS = ("mezo",)
OWNER = "fit"


@dataclass
class FitResult:
    """steps/epochs: work done (epochs completed); forward_passes: training forward passes (evaluations apart);
    loss: the last step's mean of l+ and l-; eval: the last evaluation's figures; history: one row per step."""

    model: torch.nn.Module
    method: str
    seed: int
    steps: int
    epochs: int
    forward_passes: int
    wall_s: float
    stop_reason: str
    loss: float
    eval: dict[str, float] = field(default_factory=dict)
    history: list[dict[str, Any]] = field(default_factory=list)
    optimizer: Any = None

    def __repr__(self) -> str:
        return (f"FitResult(method={self.method!r}, loss={self.loss:.6g}, steps={self.steps}, epochs={self.epochs}, "
                f"forward_passes={self.forward_passes}, stop_reason={self.stop_reason!r}, wall_s={self.wall_s:.2f})")


def fit(model: torch.nn.Module, loss_fn: Callable[[torch.nn.Module, Any], Any], data: Iterable, method: str = "mezo",
        *, lr: float = 1e-6, mu: float = 1e-3, q: int = 1, steps: int | None = None, epochs: int | None = None,
        max_seconds: float | None = None, seed: int | None = None, update: str = "sgd",
        momentum: float = 0.9, mask: Any = None, chunk: int = CHUNK,
        eval_fn: Callable[[torch.nn.Module], Any] | None = None, eval_data: Iterable | None = None,
        callback: Callable[[dict], bool | None] | None = None, progress: bool = False) -> FitResult:
    """Minimize loss_fn(model, batch) over the batches of `data` by MeZO, in place.

    data: an iterable of batches, iterated again for each epoch (a list, a DataLoader); a one-shot iterator
    ends the run when it runs out. Budget: at least one of steps (MeZO steps, one batch each), epochs,
    max_seconds. lr, mu (smoothing radius, MeZO's eps), q, seed, update ("sgd"; "sign"; "momentum" and "adam"
    keep 1x and 2x the trained parameters' memory in state), momentum, mask and chunk are `InPlaceMeZO`'s.
    Evaluation, at the end of every epoch and of the run: eval_data (batches: mean loss_fn, "eval_loss") and/or
    eval_fn(model) -> number ("eval") or dict ("eval_<key>"), both under torch.no_grad.
    callback(row) -> bool | None after each step with its history row (step, epoch, loss, projected_grad_rms,
    forward_passes, skipped, wall_s and any eval figures); True stops.
    """
    check_choice(method, "method", OWNER, METHODS)
    steps, epochs, max_seconds = check_budget(OWNER, max_seconds, steps=steps, epochs=epochs)
    _check_callables(loss_fn=loss_fn, eval_fn=eval_fn, callback=callback)
    _check_iterable(data, "data")
    if eval_data is not None:
        _check_iterable(eval_data, "eval_data")
    opt = InPlaceMeZO(model, lr=lr, mu=mu, q=q, seed=seed, update=update, momentum=momentum, mask=mask,
                      chunk=chunk, owner=OWNER)
    evaluate = _evaluator(model, loss_fn, eval_fn, eval_data)
    bar = make_progress(progress, f"zo.fit {method}", steps, "step")
    t0, history = time.perf_counter(), []
    try:
        with run_warnings():
            stop_reason, done_epochs = _loop(opt, model, loss_fn, data, (steps, epochs, max_seconds, t0),
                                             evaluate, callback, bar, history)
    finally:
        if bar is not None:
            bar.close()
    last_eval = {k: v for k, v in history[-1].items() if k.startswith("eval")} if history else {}
    if evaluate is not None and history and not last_eval:
        last_eval = evaluate()
        history[-1].update(last_eval)
    return FitResult(model, method, opt.seed, opt.steps, done_epochs, opt.forward_passes, time.perf_counter() - t0,
                     stop_reason, history[-1]["loss"] if history else math.nan, last_eval, history, opt)


def _loop(opt: InPlaceMeZO, model: torch.nn.Module, loss_fn: Callable, data: Iterable, budget: tuple,
          evaluate: Callable | None, callback: Callable | None, bar: Progress | None, history: list) -> tuple[str, int]:
    """Step until a budget, the callback or the data ends the run; returns (stop reason, epochs completed)."""
    max_steps, max_epochs, max_seconds, t0 = budget
    epochs_done = 0
    for epoch, batch, epoch_ends in _batches(data):
        out = opt.step(lambda: loss_fn(model, batch))
        grads = out["projected_grads"]
        row = {"step": opt.steps, "epoch": epoch, "loss": out["loss"],
               "projected_grad_rms": math.sqrt(sum(g * g for g in grads) / len(grads)),
               "forward_passes": opt.forward_passes, "skipped": out["skipped"], "wall_s": time.perf_counter() - t0}
        epochs_done += epoch_ends
        reason = _budget_reason(opt.steps, epochs_done, row["wall_s"], max_steps, max_epochs, max_seconds)
        if evaluate is not None and (epoch_ends or reason):
            row.update(evaluate())
        history.append(row)
        if bar is not None:
            bar.update(opt.steps, {k: row[k] for k in row if k == "loss" or k.startswith("eval")}, event=epoch_ends)
        if callback is not None and wants_stop(callback(row), callback_name(callback), OWNER):
            return "callback", epochs_done
        if reason:
            return reason, epochs_done
    return "data_exhausted", epochs_done


def _budget_reason(steps: int, epochs: int, seconds: float, max_steps, max_epochs, max_seconds) -> str:
    if max_steps is not None and steps >= max_steps:
        return "steps"
    if max_epochs is not None and epochs >= max_epochs:
        return "epochs"
    if max_seconds is not None and seconds >= max_seconds:
        return "max_seconds"
    return ""


def _batches(data: Iterable) -> Iterator[tuple[int, Any, bool]]:
    """(epoch, batch, whether the batch ends its epoch), iterating `data` again for each epoch."""
    epoch = 0
    while True:
        it = iter(data)
        try:
            ahead = next(it)
        except StopIteration:
            if epoch == 0:
                raise ParameterError(f"The 'data' parameter of {OWNER} yielded no batch.") from None
            return  # a one-shot iterator has run out
        for batch in it:
            yield epoch, ahead, False
            ahead = batch
        yield epoch, ahead, True
        epoch += 1


def _evaluator(model: torch.nn.Module, loss_fn: Callable, eval_fn: Callable | None,
               eval_data: Iterable | None) -> Callable[[], dict[str, float]] | None:
    if eval_fn is None and eval_data is None:
        return None

    @torch.no_grad()
    def evaluate() -> dict[str, float]:
        out = {}
        if eval_data is not None:
            losses = [_number(loss_fn(model, batch), "loss_fn") for batch in eval_data]
            out["eval_loss"] = sum(losses) / len(losses) if losses else math.nan
        if eval_fn is not None:
            value = eval_fn(model)
            if isinstance(value, dict):
                out.update({f"eval_{k}": _number(v, f"eval_fn's {k!r}") for k, v in value.items()})
            else:
                out["eval"] = _number(value, "eval_fn")
        return out

    return evaluate


def _number(value: Any, what: str) -> float:
    if isinstance(value, torch.Tensor) and value.numel() == 1:
        return float(value.item())
    try:
        return float(value)
    except (TypeError, ValueError):
        raise ParameterError(f"{OWNER}: {what} must return a number or a one-element tensor; got {value!r}") from None


def _check_callables(**given: Any) -> None:
    for name, fn in given.items():
        if fn is not None and not callable(fn):
            raise ParameterError(f"The '{name}' parameter of {OWNER} must be callable. Got {fn!r} instead.")
    if given.get("loss_fn") is None:
        raise ParameterError(f"The 'loss_fn' parameter of {OWNER} must be callable. Got None instead.")


def _check_iterable(value: Any, name: str) -> None:
    if isinstance(value, (str, bytes)) or not hasattr(value, "__iter__"):
        raise ParameterError(f"The '{name}' parameter of {OWNER} must be an iterable of batches (a list, a "
                             f"DataLoader). Got {value!r} instead.")
