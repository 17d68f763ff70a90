"""Has a Stable-Baselines3 DQN job's Q-function diverged? A check for a job whose returns collapsed late in training:
Q-learning with function approximation can diverge (the "deadly triad"), and then the Q-values grow far past
any return the task pays, while an evaluation defect or a bad environment would leave them in range.

From a job directory (`<run>/<method>/seed<k>/`) of a `name: sb3, algo: DQN` method: the network in its
checkpoint (the last one written: near the end of a finished job) and in best_policy.npz (the best evaluated
one) are run on the observations of the checkpoint's replay buffer, and their Q(s, a) of the actions taken are
set beside the discounted returns that actually followed in the buffer (episodes that ended inside it, by
termination; truncated or unfinished ones are left out). Both files are plain data (evograd.core.serialization,
np.load without pickle).

    python benchmarks/dqn_q_values.py RUN/sb3_dqn
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from ..core import serialization
from .sb3_method import BEST

__all__ = ["buffer_returns", "check_job", "q_taken"]


def buffer_returns(buffer: dict, gamma: float) -> tuple[np.ndarray, np.ndarray]:
    """(indices, discounted returns) of the transitions of a one-env replay buffer state (sb3_state's
    `replay_buffer`) whose episode terminated inside the buffer, in buffer order."""
    arrays = buffer["arrays"]
    shape = np.shape(arrays["rewards"])
    if len(shape) == 2 and shape[1] != 1:
        raise ValueError(f"the replay buffer holds {shape[1]} envs' transitions side by side; this check reads a "
                         "one-env buffer (hyperparams n_envs: 1)")
    rewards = np.asarray(arrays["rewards"], dtype=np.float64).reshape(-1)
    dones = np.asarray(arrays["dones"], dtype=bool).reshape(-1)
    timeouts = np.asarray(arrays.get("timeouts", np.zeros_like(dones)), dtype=bool).reshape(-1)
    pos, size = int(buffer["pos"]), int(buffer["buffer_size"])
    n = size if buffer["full"] else pos
    order = np.r_[np.arange(pos, size), np.arange(pos)] if buffer["full"] else np.arange(n)
    keep, out, g, known = [], [], 0.0, False
    for i in order[::-1]:  # newest first: the return that followed each transition
        if dones[i]:
            known, g = not timeouts[i], 0.0  # a truncated episode's return goes on past the buffer: unknown
        g = rewards[i] + gamma * g
        if known:
            keep.append(i)
            out.append(g)
    return np.asarray(keep[::-1], dtype=int), np.asarray(out[::-1])


def q_taken(model, obs: np.ndarray, actions: np.ndarray, obs_rms: dict | None = None) -> np.ndarray:
    """Q(s, a) of the model's current network for observations (raw, as the buffer holds them) and actions;
    obs_rms (best_policy.npz's "obs_rms.*" arrays) normalizes them as VecNormalize.normalize_obs does."""
    import torch

    if obs_rms:
        clip = float(obs_rms["obs_rms.clip_obs"])
        obs = np.clip((obs - obs_rms["obs_rms.mean"]) / np.sqrt(obs_rms["obs_rms.var"] + obs_rms["obs_rms.epsilon"]),
                      -clip, clip)
    out = np.empty(len(obs))
    with torch.no_grad():
        for i in range(0, len(obs), 65536):  # in batches: a large buffer's activations need not fit at once
            q = model.q_net(torch.as_tensor(obs[i:i + 65536], dtype=torch.float32)).numpy()
            out[i:i + 65536] = q[np.arange(len(q)), actions[i:i + 65536].astype(int)]
    return out


def _percentiles(x: np.ndarray) -> list[float]:
    return [float(v) for v in np.percentile(x, [1, 50, 99])] if x.size else []


def check_job(job: str | Path) -> dict[str, Any]:
    """Percentiles (1, 50, 99) of Q(s, a) of the latest and the best network and of the returns that followed, on
    the checkpoint's replay buffer; ValueError when the directory is not a DQN job's with a checkpoint."""
    import torch

    from .sb3_model import build_model

    job = Path(job)
    run = job.parent.parent
    config = json.loads((run / "config.json").read_text())
    block = config["methods"].get(job.parent.name) or {}
    if block.get("name") != "sb3" or block.get("algo") != "DQN":
        raise ValueError(f"{job}: not a job of an `sb3` DQN method "
                         f"(methods.{job.parent.name} in {run / 'config.json'})")
    if not (job / "checkpoint.state").exists():
        raise ValueError(f"{job}: no checkpoint.state (a published copy has none: run this on the run directory)")
    torch.set_num_threads(1)
    state = serialization.load_state(job / "checkpoint.state")["model"]
    model, norm = build_model("DQN", block["hyperparams"], block["policy"], config["task"]["env"], 0, max_buffer=1)
    model.get_env().close()  # only its network is used
    buffer = state["replay_buffer"]
    gamma = float(model.gamma)
    if norm is not None and norm.norm_reward:
        raise ValueError(f"{job}: the job normalizes rewards (VecNormalize norm_reward), so its Q-values are on "
                         "another scale than the rewards in its replay buffer; this check compares raw scales")
    idx, returns = buffer_returns(buffer, gamma)
    obs = np.asarray(np.asarray(buffer["arrays"]["observations"])[idx, 0], dtype=np.float32)
    actions = np.asarray(buffer["arrays"]["actions"]).reshape(len(buffer["arrays"]["actions"]), -1)[idx, 0]
    latest_rms = None
    if norm is not None and norm.norm_obs and state["normalize"] is not None:  # the checkpoint's statistics
        rms = state["normalize"]["obs_rms"]
        latest_rms = {"obs_rms.mean": np.asarray(rms["mean"]), "obs_rms.var": np.asarray(rms["var"]),
                      "obs_rms.epsilon": norm.epsilon, "obs_rms.clip_obs": norm.clip_obs}
    policy = state["modules"]["policy"]
    model.policy.load_state_dict({k: torch.as_tensor(np.asarray(v)) for k, v in policy.items()})
    out = {"job": str(job), "env_steps": int(state["counters"]["num_timesteps"]), "gamma": gamma,
           "transitions": int(idx.size), "returns": _percentiles(returns),
           "q_latest": _percentiles(q_taken(model, obs, actions, latest_rms))}
    if (job / BEST).exists():
        with np.load(job / BEST, allow_pickle=False) as z:
            best = {k: z[k] for k in z.files}
        model.policy.load_state_dict({k: torch.as_tensor(v) for k, v in best.items()
                                      if not k.startswith("obs_rms.") and k != "eval_return"})
        best_rms = {k: best[k] for k in best if k.startswith("obs_rms.")}
        out.update(best_eval_return=float(best["eval_return"]),
                   q_best=_percentiles(q_taken(model, obs, actions, best_rms)))
    return out
