"""`name: sb3` jobs: a Stable-Baselines3 algorithm (PPO, A2C, SAC, TD3, DQN; the sb3 extra) as a compare method,
under the protocol every other method of a config runs under.

* Budget: `model.learn(total_timesteps=budget.env_steps)`, so training stops at the first update boundary at or
  past the budget, as evograd's PPO and the population methods do (an on-policy run ends after the rollout that
  reaches it, an off-policy one within `train_freq` steps); budget.seconds, when given, also stops it (checked
  at every env step, evaluations included in the clock, as evograd's RL loop does), with stop_reason
  "max_seconds" instead of "max_env_steps".
* Seeds: the job's seed is SB3's `seed=` (torch, numpy and the action spaces) and the training envs' reset seeds
  (seed + i for env i, make_vec_env's rule).
* Evaluation: evograd's evaluator, `evograd.rl.loop.run_episodes`, runs SB3's deterministic policy
  (`model.predict(obs, deterministic=True)`: argmax, the clipped Gaussian mean, or the squashed SAC/TD3 action)
  on evaluation.episodes fresh envs of the task, reset with the seeds every env job uses
  (`evograd.gym.rollouts.evaluation_seeds`: population, ppo, reinforce and sb3 alike), with VecNormalize's
  observation statistics frozen (`normalize_obs`, which never updates them). The initial policy is evaluated
  at env step 0, then the policy at the first update boundary after every evaluation.every training env steps,
  and the final one; evaluation steps are counted apart (eval_env_steps).
* Files: progress.csv (a row at each evaluation, and at the first update boundary after every evaluation.every
  / 10 training steps, with the returns of the training episodes that ended since the last row), status.json,
  result.json (extra.stop_reason, extra.eval_seeds) in the format of every env job, so the report, statistics
  and HTML page take it as they are; best_policy.npz: the best evaluated policy's SB3 state_dict and
  observation statistics, as plain arrays.
* Resume: checkpoint.state holds the model's training state as plain data (experiments/sb3_state.py: parameters,
  optimizer moments, replay buffer, VecNormalize statistics, counters, generators; never SB3's pickled zip) and
  this job's rows, clock and best policy, written at update boundaries at most every max(30 x checkpoint_seconds
  (60 s by default), 50 x the last write's seconds). `compare --resume` / `run --resume` continue from it
  (extra.resumed counts the resumes; the envs are reset with a seed drawn from the job seed and the step
  count, so a resumed run is not bit-identical to an uninterrupted one). A job with no checkpoint, or whose
  model's buffer sb3_state does not handle, runs again from the start (extra.restarted); a finished one
  (result.json with status ok) is kept.

The block's policy and hyperparameters are checked, and `hyperparams: zoo` resolved, when the config loads
(experiments/sb3_config.py; the zoo's table is experiments/sb3_zoo.py).
"""
from __future__ import annotations

import json
import math
import time
from pathlib import Path

import numpy as np

from ..core import serialization
from ..core.progress import Progress
from . import sb3_state, scalars
from .jobfiles import (
    CHECKPOINT,
    ENV_COLUMNS,
    PROGRESS,
    RESULT,
    Throttle,
    first_reaching,
    num,
    write_progress,
    write_status,
)
from .sb3_model import build_model, env_factory

BEST = "best_policy.npz"


def eval_seeds(seed: int, episodes: int) -> list[int]:
    """The evaluation episodes' reset seeds of every env job (`evograd.gym.rollouts.evaluation_seeds`)."""
    from ..gym.rollouts import evaluation_seeds

    return evaluation_seeds(seed, episodes)


def run_sb3_job(config: dict, label: str, block: dict, seed: int, d: Path, resume: bool, progress: bool,
                checkpoint_seconds: float = 2.0) -> dict:
    """Train, evaluate and record one sb3 job (see the module's docstring); returns its result dict."""
    if resume and _finished(d) is not None:  # a finished job is kept, as `compare --resume` keeps it
        return _finished(d)
    state = _checkpoint(d) if resume else None  # a damaged one is refused before anything is built or written
    env = config["task"]["env"]
    tb = scalars.log_dir(config, label, seed, d)
    model, norm = build_model(block["algo"], block["hyperparams"], block["policy"], env, seed,
                              tensorboard_log=None if tb is None else str(tb))
    if state is not None and not sb3_state.supported(model):
        state = None
    restarted = bool(resume and state is None and (d / PROGRESS).exists())
    budget = int(config["budget"]["env_steps"])
    run = None
    try:
        run = _Run(config, label, seed, d, model, norm, progress, checkpoint_seconds)
        if state is None:
            (d / BEST).unlink(missing_ok=True)
            run.start()
        else:
            run.resume(state)
        left = budget - int(model.num_timesteps)
        if left > 0 and run.stop_reason is None:
            model.learn(total_timesteps=left, callback=_callback(run), tb_log_name="sb3",
                        reset_num_timesteps=state is None)
        run.finish()
    finally:
        if run is not None:
            run.close()
        model.get_env().close()
    thr, hist = config.get("threshold"), run.history
    return {"method": label, "seed": seed, "best_eval_return": num(run.best_return),
            "final_eval_return": num(run.last_return), "env_steps": int(model.num_timesteps), "wall_s": run.wall(),
            "steps_to_threshold": first_reaching(hist, "eval_return", thr, "env_steps"),
            "seconds_to_threshold": first_reaching(hist, "eval_return", thr, "wall_s"),
            "extra": {"eval_env_steps": run.eval_env_steps, "stop_reason": run.stop_reason,
                      "n_updates": getattr(model, "_n_updates", None), "algo": block["algo"],
                      "stable_baselines3": _version(), "eval_seeds": run.eval_seeds, "restarted": restarted,
                      "resumed": run.resumed}}


def _checkpoint(d: Path) -> dict | None:
    """The job's checkpoint (StateError when damaged, hostile or of another kind of job), None without one."""
    path = d / CHECKPOINT
    if not path.exists():
        return None
    state = serialization.load_state(path)
    if not (isinstance(state, dict) and state.get("kind") == "sb3" and isinstance(state.get("loop"), dict)
            and isinstance(state.get("model"), dict)):
        raise serialization.StateError(f"{path} is not a checkpoint of an sb3 job")
    return state


def _check_loop(loop: dict, budget: int) -> None:
    """The checkpoint's own part (rows, counters, clock) is what this job writes, or a StateError."""
    def number(v, low=-math.inf, nan_ok=False):
        return not isinstance(v, bool) and isinstance(v, (int, float)) and (v >= low or (nan_ok and math.isnan(v)))

    missing = [k for k in (*_Run.LOOP_KEYS, "wall_s", "best_state") if k not in loop]
    if missing:
        raise serialization.StateError(f"the checkpoint's loop has no {missing[0]!r}")
    hist = loop["history"]
    if not (isinstance(hist, list) and hist and all(isinstance(r, dict) for r in hist)):
        raise serialization.StateError("the checkpoint's history is not a list of rows")
    steps = [r.get("env_steps") for r in hist]
    if not all(isinstance(s, int) and not isinstance(s, bool) and 0 <= s <= budget for s in steps) or \
            steps != sorted(steps) or not all(number(r.get("wall_s"), 0.0) for r in hist):  # (NaN fails >= 0)
        raise serialization.StateError(f"the checkpoint's rows need env steps rising within 0..{budget} and clocks")
    ints = ("eval_env_steps", "next_eval", "resumed")
    if not all(isinstance(loop[k], int) and not isinstance(loop[k], bool) and loop[k] >= 0 for k in ints):
        raise serialization.StateError(f"the checkpoint's {', '.join(ints)} must be ints >= 0")
    if not (number(loop["eval_s"], 0.0) and number(loop["wall_s"], 0.0) and number(loop["best_return"])
            and number(loop["last_return"], nan_ok=True) and math.isfinite(loop["wall_s"] + loop["eval_s"])):
        raise serialization.StateError("the checkpoint's clock and returns must be numbers")
    if loop["stop_reason"] is not None:
        raise serialization.StateError("a checkpoint is taken while training runs: its stop_reason must be None")
    if not (isinstance(loop["episode_returns"], list) and all(number(v, nan_ok=True) for v in loop["episode_returns"])):
        raise serialization.StateError("the checkpoint's episode returns must be a list of numbers")
    best = loop["best_state"]
    if best is not None and not (isinstance(best, dict) and all(isinstance(v, np.ndarray) for v in best.values())):
        raise serialization.StateError("the checkpoint's best policy must be arrays")


def _finished(d: Path) -> dict | None:
    try:
        result = json.loads((d / RESULT).read_text())
    except (OSError, ValueError):
        return None
    return result if isinstance(result, dict) and result.get("status") == "ok" else None


def _version() -> str:
    from importlib import metadata

    return metadata.version("stable-baselines3")


def _callback(run: _Run):
    """SB3's callback around the run: rows at update boundaries (a rollout's start follows the update), the
    training episodes' returns and the seconds budget at every env step."""
    from stable_baselines3.common.callbacks import BaseCallback

    class Schedule(BaseCallback):
        def _on_rollout_start(self) -> None:
            run.boundary(int(self.model.num_timesteps))

        def _on_step(self) -> bool:
            return run.step(self.locals.get("infos") or ())

    return Schedule()


class _Run:
    """The job's clock, evaluation schedule, history rows and best policy."""

    def __init__(self, config: dict, label: str, seed: int, d: Path, model, norm, progress: bool,
                 checkpoint_seconds: float):
        budget, ev = config["budget"], config["evaluation"]
        self.label, self.seed, self.d, self.model, self.norm = label, seed, d, model, norm
        self.max_steps, self.max_seconds = int(budget["env_steps"]), budget.get("seconds")
        self.eval_every, self.row_every = int(ev["every"]), max(1, int(ev["every"]) // 10)
        self.eval_seeds = eval_seeds(seed, int(ev["episodes"]))
        make = env_factory(config["task"]["env"])
        self.eval_envs = [make() for _ in self.eval_seeds]
        self.history: list[dict] = []
        self.episode_returns: list[float] = []
        self.eval_env_steps, self.eval_s, self.next_eval = 0, 0.0, self.eval_every
        self.best_return, self.best_state, self.last_return = -math.inf, None, math.nan
        self.stop_reason, self.t0, self.saved_best = None, time.perf_counter(), -math.inf
        self.throttle = Throttle(checkpoint_seconds)
        self.checkpoint_seconds, self.checkpoint_cost = checkpoint_seconds, 0.0
        self.last_checkpoint = time.perf_counter()
        self.resumed = 0
        self.checkpointing = sb3_state.supported(model)
        self.bar = Progress("train", self.max_steps, "steps") if progress else None

    def wall(self) -> float:
        return time.perf_counter() - self.t0

    def start(self) -> None:
        self.t0 = time.perf_counter()
        self._add_row(0, evaluate=True)

    # the model's state (a replay buffer of megabytes) is written 30x less often than the rows (checkpoint_seconds)
    CHECKPOINT_EVERY = 30
    LOOP_KEYS = ("history", "episode_returns", "eval_env_steps", "eval_s", "next_eval", "best_return",
                 "last_return", "stop_reason", "resumed")

    def resume(self, state: dict) -> None:
        """Continue from a checkpoint: the model's state, then this run's rows, clock and best policy; the
        envs are reset at the next learn() with a seed drawn from (seed, env steps)."""
        from ..rl.loop import reset_seed

        loop = state["loop"]
        with serialization.applying("the resume state"):
            _check_loop(loop, self.max_steps)
            sb3_state.load_model_state(self.model, self.norm, state["model"])
            for k in self.LOOP_KEYS:
                setattr(self, k, loop[k])
            self.history = [dict(r) for r in self.history]
            self.episode_returns = [float(r) for r in self.episode_returns]
            self.best_return, self.last_return = float(self.best_return), float(self.last_return)
            self.best_state = None if loop["best_state"] is None else dict(loop["best_state"])
            self.t0 = time.perf_counter() - float(loop["wall_s"])
            if int(self.model.num_timesteps) < self.history[-1]["env_steps"]:
                raise serialization.StateError("the checkpoint's rows go past its model's env steps")
            self.model.get_env().seed(reset_seed(self.seed, int(self.model.num_timesteps)))
        # best_policy.npz is rewritten from the checkpoint's best at the next save: a better policy the killed
        # run found after its checkpoint is not in the rows the run goes on from
        self.saved_best, self.resumed = -math.inf, self.resumed + 1

    def _checkpoint_due(self) -> bool:
        # at most every 30 x checkpoint_seconds, and never more than 2% of the time in writing (a replay buffer
        # of 300k HalfCheetah transitions is about 50 MB): a kill loses at most that much training
        every = max(self.CHECKPOINT_EVERY * self.checkpoint_seconds, 50 * self.checkpoint_cost)
        return time.perf_counter() - self.last_checkpoint >= every

    def checkpoint(self) -> None:
        t = time.perf_counter()
        loop = {k: getattr(self, k) for k in self.LOOP_KEYS}
        loop.update(wall_s=self.wall(), best_state=self.best_state)
        state = {"version": 1, "kind": "sb3", "loop": loop, "model": sb3_state.model_state(self.model, self.norm)}
        serialization.save_state(self.d / CHECKPOINT, state)
        self._save()  # rows, best policy and status as of the checkpoint
        self.last_checkpoint = time.perf_counter()
        self.checkpoint_cost = self.last_checkpoint - t

    def step(self, infos) -> bool:
        """False stops training (the seconds budget is spent)."""
        for info in infos:
            episode = info.get("episode") if isinstance(info, dict) else None
            if episode is not None:
                self.episode_returns.append(float(episode["r"]))
        if self.max_seconds is not None and self.wall() >= self.max_seconds:
            self.stop_reason = "max_seconds"
            return False
        return True

    def boundary(self, steps: int) -> None:
        """An update boundary: a row when an evaluation is due or row_every steps passed since the last row."""
        last = self.history[-1]["env_steps"]
        due = steps >= self.next_eval
        if steps > last and (due or steps - last >= self.row_every):
            self._add_row(steps, evaluate=due)
        if steps > last and self.checkpointing and self._checkpoint_due():
            self.checkpoint()

    def finish(self) -> None:
        """The final policy is always evaluated (in a row of its own when steps were taken since the last)."""
        self.stop_reason = self.stop_reason or "max_env_steps"
        steps, last = int(self.model.num_timesteps), self.history[-1]
        if steps > last["env_steps"]:
            self._add_row(steps, evaluate=True, final=True)
        else:
            if math.isnan(last["eval_return"]):
                self._evaluate_into(last)
                last.update(eval_env_steps=self.eval_env_steps, best_eval_return=self.best_return)
            self._save()

    def _add_row(self, steps: int, evaluate: bool, final: bool = False) -> None:
        rets, nan = np.asarray(self.episode_returns, dtype=np.float64), math.nan
        self.episode_returns = []
        row = {"generation": len(self.history), "env_steps": steps, "return_mean": rets.mean() if rets.size else nan,
               "return_max": rets.max() if rets.size else nan, "return_min": rets.min() if rets.size else nan,
               "eval_return": nan, "eval_return_std": nan}
        if evaluate:
            while self.next_eval <= steps:
                self.next_eval += self.eval_every
            self._evaluate_into(row)
        row.update(eval_env_steps=self.eval_env_steps, wall_s=self.wall(), eval_s=self.eval_s,
                   best_eval_return=self.best_return)
        self.history.append(row)
        if self.bar is not None:
            fields = {"ret": round(float(row["return_mean"]), 1), "best_eval": round(self.best_return, 1)}
            self.bar.update(min(steps, self.max_steps), fields, event=evaluate)
        if final or self.throttle.due():
            self._save()

    def _evaluate_into(self, row: dict) -> None:
        import torch

        from ..rl.loop import run_episodes

        t = time.perf_counter()
        norm, model = self.norm, self.model
        act = lambda o: model.predict(norm.normalize_obs(o) if norm is not None else o, deterministic=True)[0]
        with torch.no_grad():
            rets, lens, _ = run_episodes(self.eval_envs, self.eval_seeds, act)
        self.eval_env_steps += int(lens.sum())
        self.eval_s += time.perf_counter() - t
        row["eval_return"], row["eval_return_std"] = float(rets.mean()), float(rets.std())
        self.last_return = row["eval_return"]
        if self.last_return > self.best_return:
            self.best_return = self.last_return
            self.best_state = self._policy_state()

    def _policy_state(self) -> dict[str, np.ndarray]:
        state = {k: v.detach().cpu().numpy().copy() for k, v in self.model.policy.state_dict().items()}
        norm = self.norm
        if norm is not None and norm.norm_obs:  # what normalize_obs applies: clip((o - mean) / sqrt(var + eps))
            state.update({"obs_rms.mean": np.array(norm.obs_rms.mean), "obs_rms.var": np.array(norm.obs_rms.var),
                          "obs_rms.clip_obs": np.array(norm.clip_obs), "obs_rms.epsilon": np.array(norm.epsilon)})
        return state

    def _save(self) -> None:
        write_progress(self.d, self.history, ENV_COLUMNS, self.label, self.seed)
        if self.best_state is not None and self.best_return > self.saved_best:
            arrays = {**self.best_state, "eval_return": np.array(self.best_return)}
            serialization.atomic_write(self.d / BEST, lambda fh: np.savez(fh, **arrays))
            self.saved_best = self.best_return
        last = self.history[-1]
        write_status(self.d, env_steps=last["env_steps"], budget=self.max_steps, wall_s=last["wall_s"],
                     best_eval_return=self.best_return)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
        for e in self.eval_envs:
            e.close()
