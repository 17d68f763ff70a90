"""Gradient optimizers (sgd, adam, lbfgs) on an env task, through the env's differentiable rollout.

An env class may offer `differentiable_rollout(params, seeds, max_steps=None) -> (mean return, env steps)`: the
mean return of the bias-free linear policy u = W x (params: W row-major, a torch tensor) over one episode per
reset seed, as a torch function of params, and the env steps those episodes took (evograd/LQR-v0 has one: see
envs/lqr.py). A config may name a gradient method for an env task only when its env offers it, with that policy
(`rollout_problem` says why not otherwise; the config check turns that into an error naming the method and the
env).

`train_gradient` is `evograd.gym.train.train` for such optimizers: same arguments, result, history rows,
checkpoint states and resume, and the same accounting. Each ask is one evaluation: the rollout of `problem.episodes`
episodes whose value and autograd gradient go to `tell`; its env steps (episodes x horizon) count against
max_env_steps as a population's episodes do. The seeds are the same at every evaluation of a run (the training
seeds a GymProblem gives its first candidate in its first generation): a deterministic objective, which L-BFGS
needs (envs/lqr.py says why that is sound for the LQR). The center is evaluated on the problem's fixed
evaluation episodes, exactly as for population methods, so their rows compare. The run also ends, with
stop_reason "converged", once `optimizer.converged` (L-BFGS: its convergence tests fired).
"""
from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import numpy as np

from ..core.progress import Progress, run_warnings
from ..core.validation import ParameterError, check_budget, check_int
from ..optim.base import Optimizer

if TYPE_CHECKING:  # the gym layer imports torch: loaded by the functions that run, not by the config checks
    from ..gym.problem import GymProblem
    from ..gym.train import TrainResult

ROLLOUT = "differentiable_rollout"


def rollout_env(env: Any):
    """The unwrapped env built from `env` (a Gymnasium id or a zero-argument constructor) if its class offers
    a differentiable rollout, else None."""
    import gymnasium as gym

    made = gym.make(env) if isinstance(env, str) else env()
    try:
        inner = made.unwrapped
        return inner if callable(getattr(inner, ROLLOUT, None)) else None
    finally:
        made.close()


def rollout_problem(policy: dict) -> tuple[str, str] | None:
    """(key, why) when the policy is not the one a differentiable rollout takes (linear, no bias, no
    observation normalization), else None."""
    for key, ok, want in (("type", policy.get("type", "linear") == "linear", "linear"),
                          ("bias", not policy.get("bias", True), "false"),
                          ("obs_norm", not policy.get("obs_norm", False), "false")):
        if not ok:
            return key, f"must be {want} for a gradient method (the differentiable rollout takes u = W x)"
    return None


def train_gradient(problem: GymProblem, optimizer: Optimizer, *, max_env_steps: int | None = None,
                   max_seconds: float | None = None, eval_every: int | None = None, eval_episodes: int = 10,
                   progress: bool = False, checkpoint=None, resume: dict | None = None) -> TrainResult:
    """Train the policy of `problem` with a gradient optimizer on its env's differentiable rollout (see the
    module docstring); returns are maximized. Arguments as for `evograd.gym.train.train`."""
    from ..gym.train import TrainResult

    env = _check_arguments(problem, optimizer)
    max_env_steps, _, max_seconds = check_budget("train_gradient", max_seconds, max_env_steps=max_env_steps,
                                                 max_generations=None)
    eval_every = None if eval_every is None else check_int(eval_every, "eval_every", "train_gradient", low=1)
    eval_episodes = check_int(eval_episodes, "eval_episodes", "train_gradient", low=1)
    optimizer.set_sense(True)
    run = _Run(problem, optimizer, env, max_env_steps, max_seconds, eval_every, eval_episodes, resume)
    bar = None
    if progress:
        bar = Progress("train", max_env_steps, "steps", initial=run.history[-1]["env_steps"] if run.history else 0)
    with run_warnings():
        try:
            run.evaluate_start()
            stop_reason = run.loop_until_stop(bar, checkpoint)
            run.evaluate_end(checkpoint)
        finally:
            if bar is not None:
                bar.close()
    loop = run.loop
    return TrainResult(best_x=loop["best_x"], best_eval_return=loop["best_ret"],
                       final_eval_return=loop["last_eval"][0], env_steps=problem.env_steps - loop["steps0"],
                       eval_env_steps=problem.eval_env_steps, generations=optimizer.generation - loop["gens0"],
                       wall_s=run.wall(), stop_reason=stop_reason, history=run.history, problem=problem,
                       optimizer=optimizer)


def _check_arguments(problem: GymProblem, optimizer: Optimizer):
    """The env with the rollout; refuses what cannot run before any env step."""
    if not isinstance(optimizer, Optimizer) or not optimizer.needs_grad:
        raise ParameterError(f"train_gradient drives gradient optimizers (sgd, adam, lbfgs); got "
                             f"{getattr(optimizer, 'name', type(optimizer).__name__)!r} (use evograd.gym.train).")
    if optimizer.dim != problem.dim:
        raise ParameterError(f"the optimizer searches dim {optimizer.dim} but the problem's policy has "
                             f"{problem.dim} parameters (use x0=problem.initial_params())")
    env = rollout_env(problem.env)
    if env is None:
        raise ParameterError(f"{optimizer.name!r} needs gradients, and {problem.env_id} offers no differentiable "
                             f"rollout (its env class has no {ROLLOUT} method).")
    spec = problem.policy_spec
    wrong = rollout_problem({"type": spec["policy"], "bias": spec["bias"], "obs_norm": spec["obs_norm"]})
    if wrong is not None:
        raise ParameterError(f"the policy's {wrong[0]} {wrong[1]}.")
    return env


class _Run:
    """One run's loop state, a plain dict with the keys of `evograd.gym.train`'s (so checkpoints look alike)."""

    def __init__(self, problem, optimizer, env, max_env_steps, max_seconds, eval_every, eval_episodes, resume):
        from ..gym.rollouts import episode_seeds
        from ..gym.train import start_loop

        self.problem, self.optimizer, self.env = problem, optimizer, env
        self.max_env_steps, self.max_seconds, self.eval_episodes = max_env_steps, max_seconds, eval_episodes
        self.seeds = episode_seeds(problem.seed, 0, [0] * problem.episodes, list(range(problem.episodes)))
        self.clock0 = time.perf_counter()
        self.loop = start_loop(problem, optimizer, eval_every, resume)
        self.history = self.loop["history"]

    def wall(self) -> float:
        return self.loop["elapsed"] + time.perf_counter() - self.clock0

    def used(self) -> int:
        return self.problem.env_steps - self.loop["steps0"]

    def snapshot(self) -> dict[str, Any]:
        return {"version": 1, "loop": dict(self.loop, elapsed=self.wall()),
                "optimizer": self.optimizer.state_dict(), "problem": self.problem.state_dict()}

    def evaluate_center(self) -> tuple[float, float]:
        from ..gym.train import evaluate_center

        return evaluate_center(self.loop, self.problem, self.optimizer.center, self.eval_episodes)

    def row(self, ret: float | None) -> dict[str, float]:
        nan = float("nan")
        ok = ret is not None and np.isfinite(ret)
        value = float(ret) if ok else nan
        return {"generation": self.optimizer.generation - self.loop["gens0"], "env_steps": self.used(),
                "eval_env_steps": self.problem.eval_env_steps, "wall_s": self.wall(), "return_mean": value,
                "return_max": value, "return_min": value, "failed": int(ret is not None and not ok),
                "eval_return": nan, "eval_return_std": nan}

    def evaluate_start(self) -> None:
        if not self.history:
            row = self.row(None)
            row["eval_return"], row["eval_return_std"] = self.evaluate_center()
            row["best_eval_return"] = self.loop["best_ret"]
            self.history.append(row)

    def stop_reason(self) -> str | None:
        if self.max_env_steps is not None and self.used() >= self.max_env_steps:
            return "max_env_steps"
        if self.max_seconds is not None and self.wall() >= self.max_seconds:
            return "max_seconds"
        if self.optimizer.converged:
            return "converged"
        return None

    def loop_until_stop(self, bar, checkpoint) -> str:
        while True:
            reason = self.stop_reason()
            if reason is not None:
                return reason
            row = self.step()
            if bar is not None:
                bar.update(row["env_steps"], {"ret": round(row["return_mean"], 3),
                                              "best_eval": round(row["best_eval_return"], 3)},
                           event=bool(np.isfinite(row["eval_return"])))
            if checkpoint is not None:
                checkpoint(self.snapshot())

    def step(self) -> dict[str, float]:
        """One evaluation: rollout, autograd, tell; then the scheduled evaluation of the center."""
        import torch

        x = torch.tensor(self.optimizer.ask()[0], dtype=torch.float64, requires_grad=True)
        ret, steps = self.env.differentiable_rollout(x, self.seeds, self.problem.max_episode_steps)
        (grad,) = torch.autograd.grad(ret, x)
        self.optimizer.tell([float(ret.detach())], grad.numpy()[None, :])
        self.problem.env_steps += int(steps)
        loop = self.loop
        if loop["interval"] is None:  # default schedule, as in train: 1/20 of the budget or 10 evaluations
            loop["interval"] = max(self.max_env_steps // 20 if self.max_env_steps is not None else 10 * steps, 1)
        if loop["next_eval"] is None:
            loop["next_eval"] = loop["steps0"] + loop["interval"]
        row = self.row(float(ret.detach()))
        done = self.max_env_steps is not None and self.used() >= self.max_env_steps
        if self.problem.env_steps >= loop["next_eval"] or done or self.optimizer.converged:
            row["eval_return"], row["eval_return_std"] = self.evaluate_center()
            while loop["next_eval"] <= self.problem.env_steps:
                loop["next_eval"] += loop["interval"]
        row["best_eval_return"], row["wall_s"] = loop["best_ret"], self.wall()
        self.history.append(row)
        return row

    def evaluate_end(self, checkpoint) -> None:
        last = self.history[-1]
        if np.isnan(last["eval_return"]):
            last["eval_return"], last["eval_return_std"] = self.evaluate_center()
            last["best_eval_return"] = self.loop["best_ret"]
            if checkpoint is not None:
                checkpoint(self.snapshot())
