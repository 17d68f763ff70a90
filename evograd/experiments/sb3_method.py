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
* Resume: sb3 jobs restart, they do not resume. SB3 saves a model as a zip holding pickles, which evograd never
  loads from a run directory; a job that did not finish runs again from the start (extra.restarted), a finished
  one (result.json with status ok) is kept, by `compare --resume` and `run --resume` alike.

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
from . import scalars
from .jobfiles import ENV_COLUMNS, PROGRESS, RESULT, Throttle, first_reaching, num, write_progress, write_status
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
    restarted = bool(resume and (d / PROGRESS).exists())
    (d / BEST).unlink(missing_ok=True)
    env = config["task"]["env"]
    tb = scalars.log_dir(config, label, seed, d)
    model, norm = build_model(block["algo"], block["hyperparams"], block["policy"], env, seed,
                              tensorboard_log=None if tb is None else str(tb))
    run = _Run(config, label, seed, d, model, norm, progress, checkpoint_seconds)
    try:
        run.start()
        model.learn(total_timesteps=int(config["budget"]["env_steps"]), callback=_callback(run), tb_log_name="sb3")
        run.finish()
    finally:
        run.close()
        model.get_env().close()
    thr, hist = config.get("threshold"), run.history
    return {"method": label, "seed": seed, "best_eval_return": num(run.best_return),
            "final_eval_return": num(run.last_return), "env_steps": int(model.num_timesteps), "wall_s": run.wall(),
            "steps_to_threshold": first_reaching(hist, "eval_return", thr, "env_steps"),
            "seconds_to_threshold": first_reaching(hist, "eval_return", thr, "wall_s"),
            "extra": {"eval_env_steps": run.eval_env_steps, "stop_reason": run.stop_reason,
                      "n_updates": getattr(model, "_n_updates", None), "algo": block["algo"],
                      "stable_baselines3": _version(), "eval_seeds": run.eval_seeds, "restarted": restarted}}


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
        self.bar = Progress("train", self.max_steps, "steps") if progress else None

    def wall(self) -> float:
        return time.perf_counter() - self.t0

    def start(self) -> None:
        self.t0 = time.perf_counter()
        self._add_row(0, evaluate=True)

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
