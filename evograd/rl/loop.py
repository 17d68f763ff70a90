"""The run loop PPO and REINFORCE share: budget, deterministic evaluation on fixed seeds, best-policy
tracking, and history rows with the columns of `evograd.gym.train`, so gradient and evolutionary runs are
evaluated, accounted for (training env steps in `env_steps`, evaluation steps and time beside them) and
plotted the same way. It also owns the plain-data checkpoint format both share (`learner_state`,
`load_learner_state`, `RunLoop.state_dict`): a run resumes from an update boundary with the same parameters,
optimizer, counters, schedule clock, history and best policy; the envs' live states are not saved.
"""
from __future__ import annotations

import contextlib
import copy
import json
import math
import time
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import torch
from torch import nn

from ..core.callbacks import row_callback
from ..core.progress import Progress
from ..core.running_stats import RunningMeanStd
from ..core.validation import ParameterError, check_bool, check_float, check_int, check_memory
from ..gym.policies import Policy, make_policy, space_from_data, space_to_data
from ..gym.rollouts import evaluation_seeds
from .common import env_factory


def run_episodes(envs: list, seeds: list[int], act: Callable[[np.ndarray], Any], record: bool = False):
    """One episode per env (reset with its seed), stepping all unfinished envs with one batched `act` call.
    `act` returns the env actions, or (env actions, actions to record) when they differ (unclipped samples).
    Returns (returns, lengths, trajectories); trajectories (when record=True) hold obs, actions, rewards,
    `truncated` (time limit, not a terminal state) and the final observation."""
    obs = [e.reset(seed=int(s))[0] for e, s in zip(envs, seeds)]
    active = list(range(len(envs)))
    rets, lens = np.zeros(len(envs)), np.zeros(len(envs), dtype=np.int64)
    trajs = [{"obs": [], "act": [], "rew": []} for _ in envs] if record else None
    while active:
        batch = np.stack([obs[i] for i in active])
        actions = act(batch)
        actions, recorded = actions if isinstance(actions, tuple) else (actions, actions)
        still = []
        for k, i in enumerate(active):
            o2, r, term, trunc, _ = envs[i].step(actions[k])
            rets[i] += r
            lens[i] += 1
            if record:
                trajs[i]["obs"].append(obs[i])
                trajs[i]["act"].append(recorded[k])
                trajs[i]["rew"].append(float(r))
            obs[i] = o2
            if term or trunc:
                if record:
                    trajs[i].update(truncated=bool(trunc and not term), final_obs=o2)
            else:
                still.append(i)
        active = still
    return rets, lens, trajs


@dataclass
class RLResult:
    """policy: the evaluated-best actor (an evograd Policy, obs statistics included); last_policy: the final
    one. history: row 0 evaluates the initial policy, then one row per update, with the columns of
    `evograd.gym.train` (generation, env_steps, eval_env_steps, wall_s, return_mean/max/min of the training
    episodes that ended, eval_return and eval_return_std, NaN where no evaluation ran, best_eval_return)
    plus the algorithm's own statistics."""

    policy: Policy
    last_policy: Policy
    history: list[dict[str, Any]]
    best_eval_return: float
    final_eval_return: float
    best_env_steps: int
    env_steps: int
    eval_env_steps: int
    wall_s: float
    eval_s: float
    setup_s: float
    stop_reason: str
    n_updates: int
    log_std: np.ndarray | None = None
    critic: nn.Module | None = None
    obs_rms: RunningMeanStd | None = None

    def __repr__(self) -> str:
        return (f"RLResult(best_eval_return={self.best_eval_return:.4g} at {self.best_env_steps} steps, "
                f"final_eval_return={self.final_eval_return:.4g}, env_steps={self.env_steps}, "
                f"stop_reason={self.stop_reason!r}, wall_s={self.wall_s:.2f})")


class RunLoop:
    """Budget, evaluation schedule, best-policy tracking and history for one training run."""

    def __init__(self, owner, env, seed, max_env_steps, eval_every, eval_episodes, eval_seed, max_seconds,
                 target_return, env_kwargs, torch_threads, callback, progress=False):
        self.t_setup = time.perf_counter()
        self.seed = check_int(seed, "seed", owner, low=0)
        self.max_env_steps = None if max_env_steps is None else check_int(
            max_env_steps, "max_env_steps", owner, low=1)
        self.eval_every = None if eval_every is None else check_int(eval_every, "eval_every", owner, low=1)
        self.eval_episodes = check_int(eval_episodes, "eval_episodes", owner, low=1)
        check_memory(self.eval_episodes, "eval_episodes", owner, self.eval_episodes,  # one env per episode
                     "eval_episodes", itemsize=1024, unit="envs of at least 1 KiB")
        if eval_seed is None:  # the episodes every method of a comparison is evaluated on
            self.eval_seeds = evaluation_seeds(self.seed, self.eval_episodes)
        else:  # an outside protocol's seeds (the control benchmark's 10_000 + seed + i)
            base = check_int(eval_seed, "eval_seed", owner, low=0)
            self.eval_seeds = [base + i for i in range(self.eval_episodes)]
        self.max_seconds = None if max_seconds is None else check_float(
            max_seconds, "max_seconds", owner, low=0.0, low_inclusive=False)
        if self.max_env_steps is None and self.max_seconds is None:
            raise ParameterError(f"{owner} needs a budget: pass max_env_steps or max_seconds (there is no "
                                 f"default, so a run never stops at a cap its caller did not choose).")
        self.target = None if target_return is None else check_float(target_return, "target_return", owner)
        self.torch_threads = None if torch_threads is None else check_int(
            torch_threads, "torch_threads", owner, low=1)
        self.progress = check_bool(progress, "progress", owner)
        if env_kwargs is not None and not isinstance(env_kwargs, dict):
            raise ParameterError(f"The 'env_kwargs' parameter of {owner} must be a dict. "
                                 f"Got {env_kwargs!r} instead.")
        # the one callback form, callback(row) -> bool | None (evograd.core.callbacks); a deprecated
        # callback(optimizer, row) gets the Adam that steps the network's parameters (given to start)
        self.optimizer = None
        self.callback = row_callback(callback, owner, lambda: self.optimizer)
        factory = env_factory(env, env_kwargs)
        self.eval_envs = [factory() for _ in range(self.eval_episodes)]
        self.spaces = (self.eval_envs[0].observation_space, self.eval_envs[0].action_space)
        self.env_steps = self.eval_env_steps = 0
        self.history: list[dict[str, Any]] = []
        self.best_return, self.best_steps, self.best_policy = -math.inf, 0, None
        self.last_return = float("nan")
        self.eval_s, self.stop_reason, self.bar = 0.0, None, None
        self.next_eval = self.eval_every

    @contextlib.contextmanager
    def torch_mode(self):
        """torch's thread count (torch_threads) and denormal flushing for the run, restored after it.

        Denormals: gradients and Adam's second moments of rarely active units fall below float32's normal
        range (1.2e-38), where each operation on them takes a slow microcode path: a HalfCheetah 256-256
        minibatch step on random data ran 2.4x slower, a HalfCheetah PPO run's first 40k steps 6% slower (it
        grows as Adam's moments of dead units decay). Flushing them to zero changes nothing above that range.
        The flag is per thread, so it is set only when the run computes on one thread (torch_threads=1, what
        the experiment runner and benchmarks use): with more, torch's worker threads would flush and the
        calling one not, and results would depend on how work is split. torch has no getter for the flag, so
        it is restored to torch's default (off)."""
        old = torch.get_num_threads()
        if self.torch_threads is not None:
            torch.set_num_threads(self.torch_threads)
        flush = torch.get_num_threads() == 1 and torch.set_flush_denormal(True)
        try:
            yield
        finally:
            if flush:
                torch.set_flush_denormal(False)
            torch.set_num_threads(old)

    def start(self, ac, obs_rms: RunningMeanStd | None = None, resume: dict | None = None,
              optimizer: Any = None) -> None:
        """Start the clock and evaluate the initial policy (row 0, as `evograd.gym.train` does); or, with
        `resume` (a `state_dict()`), continue that run's clock, counters, history and best policy instead.
        optimizer: the learner's protocol optimizer, which a deprecated two-argument callback receives."""
        self.optimizer = optimizer
        self.t0, self.c0 = time.perf_counter(), time.process_time()
        self.setup_s = self.t0 - self.t_setup
        if resume is None:
            row = self._row({}, [])
            self._evaluate_into(row, ac, obs_rms)
            self._finish_row(row)
        else:
            self._restore(resume, ac, obs_rms)
        if self.progress:  # a bar on a terminal; in a log, one line per evaluation (see evograd.core.progress)
            steps = self.max_env_steps
            self.bar = (Progress("train", steps, "steps", initial=min(self.env_steps, steps)) if steps
                        else Progress("train", None, "updates", initial=len(self.history) - 1))

    def state_dict(self) -> dict[str, Any]:
        """The loop's part of a checkpoint, as plain data (the history list is a copy; its rows are not)."""
        best = None if self.best_policy is None else policy_payload(self.best_policy)
        return {"env_steps": int(self.env_steps), "eval_env_steps": int(self.eval_env_steps),
                "elapsed": self._wall(), "cpu_s": time.process_time() - self.c0, "eval_s": float(self.eval_s),
                "history": list(self.history), "best_return": float(self.best_return),
                "best_steps": int(self.best_steps), "last_return": float(self.last_return),
                "eval_every": self.eval_every, "next_eval": self.next_eval, "best_policy": best}

    def _restore(self, st: dict, ac, obs_rms: RunningMeanStd | None) -> None:
        self.t0 -= float(st["elapsed"])  # wall_s and the time-based schedule continue where they were
        self.c0 -= float(st["cpu_s"])
        self.env_steps, self.eval_env_steps = int(st["env_steps"]), int(st["eval_env_steps"])
        self.eval_s = float(st["eval_s"])
        self.history = [dict(r) for r in st["history"]]
        self.best_return, self.best_steps = float(st["best_return"]), int(st["best_steps"])
        self.last_return = float(st["last_return"])
        self.eval_every, self.next_eval = st["eval_every"], st["next_eval"]
        if st["best_policy"] is not None:
            self.best_policy = copy.deepcopy(ac.actor)
            load_policy_payload(self.best_policy, st["best_policy"])
        # a run that had already ended stays ended (its last row was evaluated when it stopped)
        self.stop_reason = self._budget_reason()
        if self.stop_reason is None and self.target is not None and self.last_return >= self.target:
            self.stop_reason = "target_return"
        if self.stop_reason is not None and self.history and math.isnan(self.history[-1]["eval_return"]):
            self._evaluate_into(self.history[-1], ac, obs_rms)
            self.history[-1]["best_eval_return"] = self.best_return

    @property
    def updates(self) -> int:
        """Updates done so far (the history's last generation; row 0 is the initial evaluation)."""
        return int(self.history[-1]["generation"]) if self.history else 0

    def add_steps(self, n: int) -> None:
        self.env_steps += n

    def done(self) -> bool:
        return self.stop_reason is not None

    def progress_remaining(self) -> float:
        """SB3's schedule clock: 1 at the start, 0 when the budget (env steps, else seconds) is spent."""
        used = self.env_steps / self.max_env_steps if self.max_env_steps else self._wall() / self.max_seconds
        return min(1.0, max(0.0, 1.0 - used))

    def _wall(self) -> float:
        return time.perf_counter() - self.t0

    def _budget_reason(self) -> str | None:
        if self.max_env_steps is not None and self.env_steps >= self.max_env_steps:
            return "max_env_steps"
        if self.max_seconds is not None and self._wall() >= self.max_seconds:
            return "max_seconds"
        return None

    def _set_obs_stats(self, actor: Policy, obs_rms: RunningMeanStd | None) -> None:
        if obs_rms is not None:  # VecNormalize divides by sqrt(var + 1e-8); the Policy by sqrt(var)
            stats = RunningMeanStd.from_state_dict({**obs_rms.state_dict(), "var": obs_rms.var + 1e-8})
            actor.set_obs_stats(stats, clip=10.0)

    def evaluate(self, actor: Policy) -> tuple[float, float]:
        t = time.perf_counter()
        act = lambda o: actor.act(o, deterministic=True)  # noqa: E731
        rets, lens, _ = run_episodes(self.eval_envs, self.eval_seeds, act)
        self.eval_env_steps += int(lens.sum())
        self.eval_s += time.perf_counter() - t
        return float(rets.mean()), float(rets.std())

    def _row(self, stats: dict, episode_returns) -> dict:
        rets = np.asarray(episode_returns, dtype=np.float64)
        nan = float("nan")
        return {"generation": len(self.history), "env_steps": self.env_steps, "eval_env_steps": 0,
                "wall_s": 0.0, "return_mean": float(rets.mean()) if rets.size else nan,
                "return_max": float(rets.max()) if rets.size else nan,
                "return_min": float(rets.min()) if rets.size else nan,
                "eval_return": nan, "eval_return_std": nan, **stats}

    def _finish_row(self, row: dict) -> None:
        row.update(best_eval_return=self.best_return, wall_s=self._wall(), eval_s=self.eval_s,
                   cpu_s=time.process_time() - self.c0, eval_env_steps=self.eval_env_steps)
        self.history.append(row)

    def end_iteration(self, stats: dict, episode_returns, ac, obs_rms: RunningMeanStd | None = None) -> None:
        """Append the update's row (episode_returns: training episodes that ended in it); evaluate when due
        and always before stopping; decide whether to stop."""
        self.stop_reason = self._budget_reason()
        if self.next_eval is None:  # default schedule: 20 evaluations over the budget, else every 10 updates
            self.eval_every = max(self.max_env_steps // 20 if self.max_env_steps else 10 * self.env_steps, 1)
            self.next_eval = self.eval_every
        row = self._row(stats, episode_returns)
        if self.env_steps >= self.next_eval or self.stop_reason is not None:
            while self.next_eval <= self.env_steps:
                self.next_eval += self.eval_every
            self._evaluate_into(row, ac, obs_rms)
        self._finish_row(row)
        if self.bar is not None:
            evaluated = not math.isnan(row["eval_return"])
            fields = {} if self.max_env_steps else {"steps": self.env_steps}
            fields.update(ret=round(row["return_mean"], 1), best_eval=round(self.best_return, 1))
            if evaluated and self.bar.plain:
                fields["eval"] = round(row["eval_return"], 1)
            self.bar.update(self.env_steps if self.max_env_steps else row["generation"], fields, event=evaluated)
        if self.callback is not None and self.callback(row) and self.stop_reason is None:
            self.stop_reason = "callback"
            if math.isnan(row["eval_return"]):
                self._evaluate_into(row, ac, obs_rms)
                row["best_eval_return"] = self.best_return

    def _evaluate_into(self, row: dict, ac, obs_rms: RunningMeanStd | None) -> None:
        self._set_obs_stats(ac.actor, obs_rms)
        mean, std = self.evaluate(ac.actor)
        row["eval_return"], row["eval_return_std"] = mean, std
        self.last_return = mean
        if mean > self.best_return:
            self.best_return, self.best_steps = mean, self.env_steps
            self.best_policy = copy.deepcopy(ac.actor)
        if self.target is not None and mean >= self.target and self.stop_reason is None:
            self.stop_reason = "target_return"

    def finish(self, ac, obs_rms: RunningMeanStd | None, n_updates: int) -> RLResult:
        self._set_obs_stats(ac.actor, obs_rms)
        last = copy.deepcopy(ac.actor)
        return RLResult(policy=self.best_policy if self.best_policy is not None else last, last_policy=last,
                        history=self.history, best_eval_return=self.best_return,
                        final_eval_return=self.last_return, best_env_steps=self.best_steps,
                        env_steps=self.env_steps, eval_env_steps=self.eval_env_steps, wall_s=self._wall(),
                        eval_s=self.eval_s, setup_s=self.setup_s,
                        stop_reason=self.stop_reason or "max_env_steps",
                        n_updates=n_updates,
                        log_std=None if ac.discrete else ac.log_std.detach().numpy().copy(),
                        critic=copy.deepcopy(ac.critic), obs_rms=None if obs_rms is None else obs_rms.copy())

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
        for e in self.eval_envs:
            e.close()


# ---------------------------------------------------------------- checkpoints (plain data only)
STATE_VERSION = 1


def policy_payload(policy: Policy) -> dict[str, Any]:
    """A Policy as plain data: its tensors (weights and obs statistics) as numpy arrays and, as json
    text, what `policy_from_payload` needs to rebuild a built-in one without the run."""
    return {"spec": json.dumps(policy.spec), "observation_space": json.dumps(space_to_data(policy.observation_space)),
            "action_space": json.dumps(space_to_data(policy.action_space)),
            "state_dict": {k: v.detach().cpu().numpy().copy() for k, v in policy.state_dict().items()}}


def load_policy_payload(policy: Policy, payload: dict) -> Policy:
    policy.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in payload["state_dict"].items()})
    return policy


def policy_from_payload(payload: dict, module: nn.Module | None = None) -> Policy:
    """Rebuild a checkpoint's best policy (a custom module must be passed as a fresh instance)."""
    spec = json.loads(payload["spec"])
    kind = spec.pop("policy")
    if kind == "custom":
        if module is None:
            raise ValueError("this checkpoint holds a custom torch module; pass a fresh instance as module=...")
        kind = module
    policy = make_policy(kind, space_from_data(json.loads(payload["observation_space"])),
                         space_from_data(json.loads(payload["action_space"])), **spec)
    return load_policy_payload(policy, payload)


def check_checkpoint_args(owner: str, checkpoint: Any, resume: Any) -> None:
    if checkpoint is not None and not callable(checkpoint):
        raise ParameterError(f"The 'checkpoint' parameter of {owner} must be callable. Got {checkpoint!r} instead.")
    if resume is not None and not (isinstance(resume, dict) and "loop" in resume and "params" in resume):
        raise ParameterError(f"The 'resume' parameter of {owner} must be a state its checkpoint received. "
                             f"Got {type(resume).__name__} instead.")


def learner_state(algorithm: str, loop: RunLoop, ac, opt, rng: np.random.Generator, **extra) -> dict[str, Any]:
    """A checkpoint at an update boundary: the actor-critic's flat parameters, the protocol Adam's state
    (moments, step counts, learning rate), the sampling generator, the update count and the loop.
    Torch's global RNG is not drawn from by the built-in networks, so it is not saved (a custom module
    that draws from it, e.g. dropout, resumes with a different stream)."""
    return {"version": STATE_VERSION, "algorithm": algorithm, "params": ac.flat[0].detach().numpy().copy(),
            "optimizer": opt.state_dict(), "rng": rng.bit_generator.state, "updates": loop.updates,
            **extra, "loop": loop.state_dict()}


def load_learner_state(owner: str, algorithm: str, state: dict, ac, opt, rng: np.random.Generator) -> None:
    if state.get("version") != STATE_VERSION or state.get("algorithm") != algorithm:
        raise ParameterError(f"The 'resume' state given to {owner} is a {state.get('algorithm')!r} state of "
                             f"version {state.get('version')!r}; this needs {algorithm!r} version {STATE_VERSION}.")
    flat = ac.flat[0]
    params = np.asarray(state["params"])
    if params.shape != tuple(flat.shape):
        raise ParameterError(f"The 'resume' state given to {owner} has {params.size} parameters; this actor-critic "
                             f"has {flat.numel()} (resume with the arguments of the checkpointed run).")
    opt.load_state_dict(state["optimizer"])
    with torch.no_grad():
        flat.copy_(torch.from_numpy(params).to(flat.dtype))
    rng.bit_generator.state = state["rng"]


def reset_seed(seed: int, updates: int) -> int:
    """Seed of the env reset after a resume: a fresh stream per (run seed, update count)."""
    return int(np.random.SeedSequence([seed, updates, 0x5E5E]).generate_state(1)[0])
