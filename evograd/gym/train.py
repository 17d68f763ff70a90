"""`train`: any population optimizer on a GymProblem, with env-step budgets and scheduled evaluation.

Accounting is the same for every method: the budget counts training env steps (every step of every
episode the optimizer learns from); evaluation episodes run on a schedule in training env steps, with a
deterministic policy and fixed evaluation seeds, and are counted apart. The policy reported as "best" is
the optimizer's center (distribution mean, consensus or elite) that scored highest in such an
evaluation over several episodes, never a lucky single training episode.
"""
from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..core.progress import Progress, run_warnings
from ..core.serialization import applying
from ..core.validation import ParameterError, check_budget, check_int
from ..optim.base import Optimizer
from .problem import GymProblem


@dataclass
class TrainResult:
    """best_x / best_eval_return: the best evaluated center; history: one row per generation."""

    best_x: np.ndarray
    best_eval_return: float
    final_eval_return: float
    env_steps: int
    eval_env_steps: int
    generations: int
    wall_s: float
    stop_reason: str
    history: list[dict[str, float]] = field(default_factory=list)
    problem: Any = None
    optimizer: Any = None

    def policy(self):
        """The best policy as a torch module (with its observation statistics)."""
        return self.problem.policy(self.best_x)

    def __repr__(self) -> str:
        return (f"TrainResult(best_eval_return={self.best_eval_return:.4g}, final_eval_return="
                f"{self.final_eval_return:.4g}, env_steps={self.env_steps}, generations={self.generations}, "
                f"stop_reason={self.stop_reason!r}, wall_s={self.wall_s:.1f})")


def train(
    problem: GymProblem,
    optimizer: Optimizer,
    *,
    max_env_steps: int | None = None,
    max_generations: int | None = None,
    max_seconds: float | None = None,
    eval_every: int | None = None,
    eval_episodes: int = 10,
    target_return: float | None = None,
    progress: bool = False,
    callback: Callable[[dict], Any] | None = None,
    checkpoint: Callable[[dict], Any] | None = None,
    resume: dict | None = None,
) -> TrainResult:
    """Train a policy with a population optimizer until a budget ends; episode returns are maximized
    (the optimizer is switched to maximize=True before its first tell, so nobody flips signs by hand).

    eval_every: training env steps between evaluations of the optimizer's center (default: 1/20 of
    max_env_steps, else every 10 generations' worth of steps). The center is also evaluated before the
    first generation and at the end. target_return stops once an evaluation reaches it.
    callback(row) runs after each generation and may return True to stop.
    checkpoint(state) receives, after every generation, plain data from which `train(..., resume=state)`
    continues the run exactly: the same later generations, evaluations and result as without the stop
    (the optimizer's random state, the problem's counters and observation statistics, the evaluation
    schedule and the history are all in it).
    """
    if not isinstance(optimizer, Optimizer):
        raise ParameterError(f"The 'optimizer' argument must be an evograd optimizer. Got {type(optimizer).__name__}.")
    if optimizer.needs_grad:
        raise ParameterError(f"train() drives population optimizers; {optimizer.name!r} needs gradients "
                             "(use evograd.train_ppo for gradient RL).")
    if optimizer.dim != problem.dim:
        raise ParameterError(f"the optimizer searches dim {optimizer.dim} but the problem's policy has "
                             f"{problem.dim} parameters (use x0=problem.initial_params())")
    max_env_steps, max_generations, max_seconds = check_budget(
        "train", max_seconds, max_env_steps=max_env_steps, max_generations=max_generations)
    if eval_every is not None:
        eval_every = check_int(eval_every, "eval_every", "train", low=1)
    eval_episodes = check_int(eval_episodes, "eval_episodes", "train", low=1)
    optimizer.set_sense(problem.maximize)  # returns are maximized: nobody flips signs by hand

    clock0 = time.perf_counter()
    if resume is None:
        # everything a checkpoint needs to continue exactly where the run stopped
        loop = {"steps0": problem.env_steps, "gens0": optimizer.generation, "elapsed": 0.0, "history": [],
                "best_x": optimizer.center, "best_ret": -np.inf, "interval": eval_every, "next_eval": None,
                "last_eval": (float("nan"), float("nan"))}
    else:
        with applying("the resume state"):
            loop = dict(resume["loop"])
            loop["history"] = [dict(r) for r in loop["history"]]
            optimizer.load_state_dict(resume["optimizer"])
            problem.load_state_dict(resume["problem"])

    def wall() -> float:
        return loop["elapsed"] + time.perf_counter() - clock0

    def evaluate_center() -> tuple[float, float]:
        x = optimizer.center
        rets = problem.evaluate_policy(x, eval_episodes)
        mean = float(np.mean(rets)) if np.all(np.isfinite(rets)) else float("nan")
        if np.isfinite(mean) and mean > loop["best_ret"]:
            loop["best_x"], loop["best_ret"] = x, mean
        loop["last_eval"] = (mean, float(np.std(rets)))
        return loop["last_eval"]

    def row_for(gen_returns: np.ndarray | None) -> dict[str, float]:
        ok = np.zeros(0) if gen_returns is None else gen_returns[np.isfinite(gen_returns)]
        nan = float("nan")
        return {
            "generation": optimizer.generation - loop["gens0"],
            "env_steps": problem.env_steps - loop["steps0"],
            "eval_env_steps": problem.eval_env_steps,
            "wall_s": wall(),
            "return_mean": float(ok.mean()) if ok.size else nan,
            "return_max": float(ok.max()) if ok.size else nan,
            "return_min": float(ok.min()) if ok.size else nan,
            "failed": 0 if gen_returns is None else int(len(gen_returns) - ok.size),
            "eval_return": nan,
            "eval_return_std": nan,
        }

    def snapshot() -> dict[str, Any]:
        state = dict(loop, elapsed=wall())
        return {"version": 1, "loop": state, "optimizer": optimizer.state_dict(), "problem": problem.state_dict()}

    history = loop["history"]
    if not history:  # generation 0: the starting point, evaluated like every later center
        row = row_for(None)
        row["eval_return"], row["eval_return_std"] = evaluate_center()
        row["best_eval_return"] = loop["best_ret"]
        history.append(row)
    bar = _progress(progress, max_env_steps, max_generations, history[-1])
    stop_reason = "max_generations"
    with run_warnings():  # a warning repeated every generation is shown once, with its count at the end
        try:
            while True:
                used_steps = problem.env_steps - loop["steps0"]
                if max_env_steps is not None and used_steps >= max_env_steps:
                    stop_reason = "max_env_steps"
                    break
                if max_generations is not None and optimizer.generation - loop["gens0"] >= max_generations:
                    stop_reason = "max_generations"
                    break
                if max_seconds is not None and wall() >= max_seconds:
                    stop_reason = "max_seconds"
                    break
                X = optimizer.ask_candidates()  # seeded populations reach the workers as seeds, not rows
                steps_before = problem.env_steps
                returns = problem.evaluate(X)
                optimizer.tell(returns)
                if loop["interval"] is None:  # default schedule, fixed once the cost of a generation is known
                    gen_steps = problem.env_steps - steps_before
                    loop["interval"] = max(max_env_steps // 20 if max_env_steps is not None else 10 * gen_steps, 1)
                if loop["next_eval"] is None:
                    loop["next_eval"] = loop["steps0"] + loop["interval"]
                row = row_for(returns)
                done = max_env_steps is not None and problem.env_steps - loop["steps0"] >= max_env_steps
                if problem.env_steps >= loop["next_eval"] or done:
                    row["eval_return"], row["eval_return_std"] = evaluate_center()
                    while loop["next_eval"] <= problem.env_steps:
                        loop["next_eval"] += loop["interval"]
                row["best_eval_return"] = loop["best_ret"]
                row["wall_s"] = wall()
                history.append(row)
                if bar is not None:
                    _show(bar, row, max_env_steps)
                if checkpoint is not None:
                    checkpoint(snapshot())
                if callback is not None and callback(row):
                    stop_reason = "callback"
                    break
                if (target_return is not None and np.isfinite(row["eval_return"])
                        and row["eval_return"] >= target_return):
                    stop_reason = "target_return"
                    break
            if np.isnan(history[-1]["eval_return"]):  # the end is always evaluated
                history[-1]["eval_return"], history[-1]["eval_return_std"] = evaluate_center()
                history[-1]["best_eval_return"] = loop["best_ret"]
                if bar is not None:
                    _show(bar, history[-1], max_env_steps)
                if checkpoint is not None:
                    checkpoint(snapshot())
        finally:
            if bar is not None:
                bar.close()
    return TrainResult(
        best_x=loop["best_x"], best_eval_return=loop["best_ret"], final_eval_return=loop["last_eval"][0],
        env_steps=problem.env_steps - loop["steps0"], eval_env_steps=problem.eval_env_steps,
        generations=optimizer.generation - loop["gens0"], wall_s=wall(),
        stop_reason=stop_reason, history=history, problem=problem, optimizer=optimizer,
    )


def _progress(enabled: bool, max_env_steps, max_generations, last: dict) -> Progress | None:
    """A bar on a terminal; in a log, one line per evaluation of the center (see evograd.core.progress)."""
    if not enabled:
        return None
    if max_env_steps is not None:
        return Progress("train", max_env_steps, "steps", initial=min(last["env_steps"], max_env_steps))
    return Progress("train", max_generations, "generations", initial=last["generation"])


def _show(bar: Progress, row: dict, max_env_steps) -> None:
    evaluated = bool(np.isfinite(row["eval_return"]))
    fields = {} if max_env_steps is not None else {"steps": row["env_steps"]}
    fields.update(ret=round(row["return_mean"], 1), best_eval=round(row["best_eval_return"], 1))
    if evaluated and bar.plain:
        fields["eval"] = round(row["eval_return"], 1)
    bar.update(row["env_steps"] if max_env_steps is not None else row["generation"], fields, event=evaluated)
