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

from ..core.callbacks import row_callback
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
    callback: Callable[[dict], bool | None] | None = None,
    checkpoint: Callable[[dict], Any] | None = None,
    resume: dict | None = None,
) -> TrainResult:
    """Train a policy with a population optimizer until a budget ends; episode returns are maximized
    (the optimizer is switched to maximize=True before its first tell, so nobody flips signs by hand).

    eval_every: training env steps between evaluations of the optimizer's center (default: 1/20 of
    max_env_steps, else every 10 generations' worth of steps). The center is also evaluated before the
    first generation and at the end. target_return stops once an evaluation reaches it.
    callback(row) -> bool | None runs after each generation with its history row: True stops (after the
    final evaluation), None or False continue (`evograd.core.callbacks`; a deprecated
    callback(optimizer, row) still works, with a DeprecationWarning).
    checkpoint(state) receives, after every generation, plain data from which `train(..., resume=state)`
    continues the run exactly: the same later generations, evaluations and result as without the stop
    (the optimizer's random state, the problem's counters and observation statistics, the evaluation
    schedule and the history are all in it).
    """
    budget = _check_arguments(problem, optimizer, max_env_steps, max_generations, max_seconds, target_return)
    if eval_every is not None:
        eval_every = check_int(eval_every, "eval_every", "train", low=1)
    eval_episodes = check_int(eval_episodes, "eval_episodes", "train", low=1)
    stop_after = row_callback(callback, "train", lambda: optimizer)
    optimizer.set_sense(problem.maximize)  # returns are maximized: nobody flips signs by hand
    run = _Run(problem, optimizer, budget, eval_every, eval_episodes, resume)
    run.evaluate_start()
    bar = _progress(progress, budget.env_steps, budget.generations, run.history[-1])
    with run_warnings():  # a warning repeated every generation is shown once, with its count at the end
        try:
            stop_reason = run.generations(bar, checkpoint, stop_after)
            run.evaluate_end(bar, checkpoint)
        finally:
            if bar is not None:
                bar.close()
    loop = run.loop
    return TrainResult(
        best_x=loop["best_x"], best_eval_return=loop["best_ret"], final_eval_return=loop["last_eval"][0],
        env_steps=problem.env_steps - loop["steps0"], eval_env_steps=problem.eval_env_steps,
        generations=optimizer.generation - loop["gens0"], wall_s=run.wall(),
        stop_reason=stop_reason, history=run.history, problem=problem, optimizer=optimizer,
    )


@dataclass
class _Budget:
    env_steps: int | None
    generations: int | None
    seconds: float | None
    target_return: float | None


def _check_arguments(problem, optimizer, max_env_steps, max_generations, max_seconds, target_return) -> _Budget:
    """Refuse an optimizer that cannot drive this problem, and a missing or invalid budget, before any
    env step: a mismatch found after the first generation would waste it."""
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
    return _Budget(max_env_steps, max_generations, max_seconds, target_return)


def start_loop(problem, optimizer: Optimizer, eval_every: int | None, resume: dict | None) -> dict:
    """A run's loop state, the plain dict its checkpoints save: fresh, or restored from a checkpoint `resume`
    together with the optimizer and the problem (shared with the gradient loop, so checkpoints look alike)."""
    if resume is None:
        return {"steps0": problem.env_steps, "gens0": optimizer.generation, "elapsed": 0.0, "history": [],
                "best_x": optimizer.center, "best_ret": -np.inf, "interval": eval_every,
                "next_eval": None, "last_eval": (float("nan"), float("nan"))}
    with applying("the resume state"):
        loop = dict(resume["loop"])
        loop["history"] = [dict(r) for r in loop["history"]]
        optimizer.load_state_dict(resume["optimizer"])
        problem.load_state_dict(resume["problem"])
    return loop


def evaluate_center(loop: dict, problem, x: np.ndarray, episodes: int) -> tuple[float, float]:
    """Mean and std of x's returns over the evaluation episodes, recorded in `loop` (a better mean is the new
    best); shared with the gradient env loop, so both evaluate alike."""
    rets = problem.evaluate_policy(x, episodes)
    mean = float(np.mean(rets)) if np.all(np.isfinite(rets)) else float("nan")
    if np.isfinite(mean) and mean > loop["best_ret"]:
        loop["best_x"], loop["best_ret"] = x, mean
    loop["last_eval"] = (mean, float(np.std(rets)))
    return loop["last_eval"]


class _Run:
    """One run's steps around `loop`, the plain dict a checkpoint saves: the starting counters, the elapsed
    time, the history, the best evaluated center and the evaluation schedule. Everything that decides a later
    generation lives in that dict, the optimizer or the problem, which is why a resumed run is exact."""

    def __init__(self, problem: GymProblem, optimizer: Optimizer, budget: _Budget, eval_every: int | None,
                 eval_episodes: int, resume: dict | None):
        self.problem, self.optimizer, self.budget, self.eval_episodes = problem, optimizer, budget, eval_episodes
        self.clock0 = time.perf_counter()
        self.loop = start_loop(problem, optimizer, eval_every, resume)
        self.history = self.loop["history"]

    def wall(self) -> float:
        return self.loop["elapsed"] + time.perf_counter() - self.clock0

    def evaluate_center(self) -> tuple[float, float]:
        return evaluate_center(self.loop, self.problem, self.optimizer.center, self.eval_episodes)

    def row_for(self, gen_returns: np.ndarray | None) -> dict[str, float]:
        """A history row for the generation just told (None: generation 0, no training returns)."""
        ok = np.zeros(0) if gen_returns is None else gen_returns[np.isfinite(gen_returns)]
        nan = float("nan")
        return {
            "generation": self.optimizer.generation - self.loop["gens0"],
            "env_steps": self.problem.env_steps - self.loop["steps0"],
            "eval_env_steps": self.problem.eval_env_steps,
            "wall_s": self.wall(),
            "return_mean": float(ok.mean()) if ok.size else nan,
            "return_max": float(ok.max()) if ok.size else nan,
            "return_min": float(ok.min()) if ok.size else nan,
            "failed": 0 if gen_returns is None else int(len(gen_returns) - ok.size),
            "eval_return": nan,
            "eval_return_std": nan,
        }

    def snapshot(self) -> dict[str, Any]:
        state = dict(self.loop, elapsed=self.wall())
        return {"version": 1, "loop": state, "optimizer": self.optimizer.state_dict(),
                "problem": self.problem.state_dict()}

    def evaluate_start(self) -> None:
        """Generation 0: the starting point, evaluated like every later center (a resumed run has it)."""
        if not self.history:
            row = self.row_for(None)
            row["eval_return"], row["eval_return_std"] = self.evaluate_center()
            row["best_eval_return"] = self.loop["best_ret"]
            self.history.append(row)

    def budget_spent(self) -> str | None:
        """The budget that has ended before the next generation, if any."""
        b, used_steps = self.budget, self.problem.env_steps - self.loop["steps0"]
        if b.env_steps is not None and used_steps >= b.env_steps:
            return "max_env_steps"
        if b.generations is not None and self.optimizer.generation - self.loop["gens0"] >= b.generations:
            return "max_generations"
        if b.seconds is not None and self.wall() >= b.seconds:
            return "max_seconds"
        return None

    def generations(self, bar: Progress | None, checkpoint, stop_after) -> str:
        """Run generations until a budget, the callback or the target return ends the run; returns why."""
        while True:
            stop_reason = self.budget_spent()
            if stop_reason is not None:
                return stop_reason
            row = self.generation()
            if bar is not None:
                _show(bar, row, self.budget.env_steps)
            if checkpoint is not None:
                checkpoint(self.snapshot())
            if stop_after is not None and stop_after(row):
                return "callback"
            target = self.budget.target_return
            if target is not None and np.isfinite(row["eval_return"]) and row["eval_return"] >= target:
                return "target_return"

    def generation(self) -> dict[str, float]:
        """ask -> evaluate -> tell, then evaluate the center when the schedule (or the budget's end) says so;
        returns the generation's history row, already appended."""
        problem, loop, max_env_steps = self.problem, self.loop, self.budget.env_steps
        X = self.optimizer.ask_candidates()  # seeded populations reach the workers as seeds, not rows
        steps_before = problem.env_steps
        returns = problem.evaluate(X)
        self.optimizer.tell(returns)
        if loop["interval"] is None:  # default schedule, fixed once the cost of a generation is known
            gen_steps = problem.env_steps - steps_before
            loop["interval"] = max(max_env_steps // 20 if max_env_steps is not None else 10 * gen_steps, 1)
        if loop["next_eval"] is None:
            loop["next_eval"] = loop["steps0"] + loop["interval"]
        row = self.row_for(returns)
        done = max_env_steps is not None and problem.env_steps - loop["steps0"] >= max_env_steps
        if problem.env_steps >= loop["next_eval"] or done:
            row["eval_return"], row["eval_return_std"] = self.evaluate_center()
            while loop["next_eval"] <= problem.env_steps:
                loop["next_eval"] += loop["interval"]
        row["best_eval_return"] = loop["best_ret"]
        row["wall_s"] = self.wall()
        self.history.append(row)
        return row

    def evaluate_end(self, bar: Progress | None, checkpoint) -> None:
        """The end is always evaluated: a run stopped between scheduled evaluations evaluates its last center
        (and checkpoints again, so a resumed finished run does not evaluate it twice)."""
        last = self.history[-1]
        if np.isnan(last["eval_return"]):
            last["eval_return"], last["eval_return_std"] = self.evaluate_center()
            last["best_eval_return"] = self.loop["best_ret"]
            if bar is not None:
                _show(bar, last, self.budget.env_steps)
            if checkpoint is not None:
                checkpoint(self.snapshot())


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
