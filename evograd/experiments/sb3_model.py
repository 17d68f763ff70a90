"""Building a Stable-Baselines3 model from a resolved `sb3` block (the sb3 extra): the task's envs, the policy
block as SB3's net_arch and activation_fn, the zoo's extras (n_envs, normalize, noise_type/noise_std, "lin_<x>"
schedules). Used by the config check (`probe_model`) and by the job (experiments/sb3_method.py).

The policy maps onto SB3's policy_kwargs (`sb3_network`): `mlp` is net_arch of hidden_sizes for the actor and the
critic, `linear` is an actor without hidden layers (net_arch pi=[]; the critic keeps hidden layers of 64-64, as
evograd's PPO does); activation (tanh, relu, elu, gelu, identity) is activation_fn; obs_norm is VecNormalize's
observation normalization (on when the policy's obs_norm or the hyperparameters' `normalize` asks for it).
stable_baselines3 and torch are imported by the functions that need them.
"""
from __future__ import annotations

import copy
import functools
import inspect
import re
import warnings
from typing import Any

import numpy as np

from .references import env_constructor

EXTRA = "pip install 'evograd[sb3]'"
SCHEDULED = ("learning_rate", "clip_range", "clip_range_vf")  # may be "lin_<x>"
BOX_ONLY = ("SAC", "TD3")
ACTIVATION_FNS = {"tanh": "Tanh", "relu": "ReLU", "elu": "ELU", "gelu": "GELU", "identity": "Identity"}
_LIN = re.compile(r"lin_([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)")


def missing_message() -> str:
    return f"sb3 methods need stable-baselines3, which is not installed: {EXTRA}"


def algo_class(algo: str):
    """stable_baselines3.<algo>; a ModuleNotFoundError naming the extra when it is not installed."""
    try:
        import stable_baselines3
    except ImportError:
        raise ModuleNotFoundError(missing_message(), name="stable_baselines3") from None
    return getattr(stable_baselines3, algo)


def sb3_network(policy: dict, algo: str) -> tuple[Any, str]:
    """(net_arch, activation name) of a resolved policy block (see the module's docstring)."""
    critic = list(policy["hidden_sizes"]) if policy["type"] == "mlp" else [64, 64]
    actor = list(policy["hidden_sizes"]) if policy["type"] == "mlp" else []
    if algo == "DQN":
        return actor, policy["activation"]  # the Q network is the policy
    return {"pi": actor, ("qf" if algo in BOX_ONLY else "vf"): critic}, policy["activation"]


def linear_rate(value: Any) -> float | None:
    """x of an rl-zoo "lin_<x>" string, else None."""
    m = _LIN.fullmatch(value) if isinstance(value, str) else None
    return float(m.group(1)) if m else None


def env_factory(env: dict):
    """A zero-argument constructor of the task's env with its time limit (as the RL jobs build theirs)."""
    spec, steps = env_constructor(env), env.get("max_episode_steps")
    if isinstance(spec, str):
        return functools.partial(_make, spec, {"max_episode_steps": int(steps)} if steps else {})
    return functools.partial(_time_limited, spec, int(steps)) if steps else spec


def _make(env_id: str, kwargs: dict):
    import gymnasium as gym

    return gym.make(env_id, **kwargs)  # render_mode None: SB3's make_vec_env would ask for rgb_array frames


def _time_limited(make, steps: int):
    import gymnasium as gym

    return gym.wrappers.TimeLimit(make(), steps)


def _linear(rate: float, progress_remaining: float) -> float:
    return progress_remaining * rate


def build_model(algo: str, hyperparams: dict, policy: dict, env: dict, seed: int, max_envs: int | None = None,
                max_buffer: int | None = None, tensorboard_log: str | None = None):
    """(SB3 model, its VecNormalize or None) for a resolved sb3 block; max_envs/max_buffer cap the env copies
    and the replay buffer (the config check's probe)."""
    import torch
    from stable_baselines3.common.env_util import make_vec_env
    from stable_baselines3.common.vec_env import VecNormalize

    cls, kwargs = algo_class(algo), copy.deepcopy(dict(hyperparams))
    n_envs = int(kwargs.pop("n_envs", 1))
    normalize, noise = kwargs.pop("normalize", False), (kwargs.pop("noise_type", None), kwargs.pop("noise_std", None))
    venv = make_vec_env(env_factory(env), n_envs=min(n_envs, max_envs or n_envs), seed=seed)
    norm = _normalize_kwargs(normalize, policy["obs_norm"], kwargs.get("gamma"))
    if norm is not None:
        venv = VecNormalize(venv, **norm)
    for k in SCHEDULED:
        rate = linear_rate(kwargs.get(k))
        if rate is not None:
            kwargs[k] = functools.partial(_linear, rate)
    if isinstance(kwargs.get("train_freq"), list):
        kwargs["train_freq"] = tuple(kwargs["train_freq"])
    if noise[0] is not None:
        kwargs["action_noise"] = _action_noise(*noise, venv.action_space.shape[0])
    net_arch, activation = sb3_network(policy, algo)
    kwargs["policy_kwargs"] = {**(kwargs.get("policy_kwargs") or {}), "net_arch": net_arch,
                               "activation_fn": getattr(torch.nn, ACTIVATION_FNS[activation])}
    if max_buffer is not None and "buffer_size" in _parameters(cls):
        kwargs["buffer_size"] = min(int(kwargs.get("buffer_size", _parameters(cls)["buffer_size"].default)),
                                    max_buffer)
    model = cls("MlpPolicy", venv, seed=seed, device="cpu", verbose=0, tensorboard_log=tensorboard_log, **kwargs)
    return model, (venv if norm is not None else None)


def _parameters(cls) -> dict:
    return dict(inspect.signature(cls.__init__).parameters)


def _normalize_kwargs(normalize, obs_norm: bool, gamma) -> dict | None:
    """VecNormalize's arguments: the zoo's `normalize` (true: observations and rewards; a mapping: its
    arguments), observation normalization on when the policy's obs_norm asks for it; gamma the algorithm's."""
    if not normalize and not obs_norm:
        return None
    out = dict(normalize) if isinstance(normalize, dict) else {} if normalize else {"norm_reward": False}
    if obs_norm:
        out["norm_obs"] = True
    if gamma is not None:
        out.setdefault("gamma", float(gamma))
    return out


def _action_noise(kind: str, std: float, n: int):
    from stable_baselines3.common.noise import NormalActionNoise, OrnsteinUhlenbeckActionNoise

    cls = NormalActionNoise if kind == "normal" else OrnsteinUhlenbeckActionNoise
    return cls(mean=np.zeros(n), sigma=float(std) * np.ones(n))


def probe_model(algo: str, hyperparams: dict, policy: dict, env: dict) -> None:
    """Build the model once (at most 2 env copies, a replay buffer of at most 1000): SB3's own checks."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # e.g. PPO's batch-size remark about the capped rollout
        model, _ = build_model(algo, hyperparams, policy, env, seed=0, max_envs=2, max_buffer=1000)
    model.get_env().close()
