"""The checks of an `sb3` method block (Stable-Baselines3's PPO, A2C, SAC, TD3, DQN; the sb3 extra).

    methods:
      sb3_ppo: {name: sb3, algo: PPO, hyperparams: zoo}          # rl-baselines3-zoo's settings for the task
      sb3_sac: {name: sb3, algo: SAC, hyperparams: {learning_rate: 1e-3}, policy: {box_head: tanh}}

What the block says is checked when the config loads, before anything runs: that stable-baselines3 is installed
(else the error names `pip install 'evograd[sb3]'`), the algorithm against the env's action space (DQN needs
Discrete actions, SAC and TD3 Box ones), the policy against what SB3 can express, the hyperparameters' names
against the algorithm's constructor, and finally their values, by building the model once (on at most two env
copies, with a replay buffer of at most 1000 transitions). `hyperparams: zoo` is resolved to the zoo's entry
(experiments/sb3_zoo.py), so config.resolved.yaml records what ran.

The policy maps onto SB3's net_arch and activation_fn as experiments/sb3_model.py says (`linear` included: an
actor without hidden layers). What SB3 cannot express is an error naming the key: bias false (its layers always
have biases), box_head tanh for PPO/A2C (SB3 clips their Gaussian's actions; it squashes them only with gSDE),
box_head clip for SAC/TD3 (they always squash with tanh: say box_head: tanh).
"""
from __future__ import annotations

import difflib
import inspect
from typing import Any

from .config_errors import ConfigError, validated
from .config_models import SB3, Policy, method_model
from .sb3_model import BOX_ONLY, SCHEDULED, algo_class, env_factory, linear_rate, probe_model
from .sb3_zoo import zoo_entry, zoo_envs

# SB3 constructor arguments a config may not give, and why
RUNNER_SET = {"policy": "set {key}.policy instead (SB3's net_arch and activation_fn come from it)",
              "env": "the runner sets it from task.env", "seed": "the runner sets it from seeds",
              "verbose": "the runner sets it", "device": "the runner sets it (cpu)",
              "_init_setup_model": "the runner sets it", "tensorboard_log": "set logging.tensorboard instead",
              "n_timesteps": "the budget is budget.env_steps, the same for every method",
              "action_noise": "give noise_type and noise_std instead"}
EXTRAS = ("n_envs", "normalize", "noise_type", "noise_std")  # the zoo's keys that are not constructor arguments
NORMALIZE_KEYS = ("norm_obs", "norm_reward", "clip_obs", "clip_reward", "gamma", "epsilon")
DISCRETE_ONLY = ("DQN",)


def policy_problem(policy: dict, algo: str, box: bool) -> tuple[str, str] | None:
    """(field, why) when SB3 cannot express the policy block, else None."""
    if not policy["bias"]:
        return "bias", "must be true for sb3 (SB3's layers always have biases)"
    if box and algo in BOX_ONLY and policy["box_head"] != "tanh":
        return "box_head", f"must be 'tanh' for sb3 {algo} (it squashes its actions with tanh)"
    if box and algo not in BOX_ONLY and policy["box_head"] != "clip":
        return "box_head", f"must be 'clip' for sb3 {algo} (SB3 clips its Gaussian's actions)"
    return None


def check_sb3(raw: dict, key: str, ctx) -> dict:
    """The resolved sb3 block: name, merged policy, algo, and the hyperparameters as a mapping."""
    if not ctx.is_env:
        raise ConfigError("sb3 trains a policy: it needs task.env", key=f"{key}.name")
    try:
        algo_class("PPO")
    except ModuleNotFoundError as exc:
        raise ConfigError(str(exc), key=f"{key}.name") from None
    model = method_model(SB3, True)
    hints = {k: f"SB3's own settings go under {key}.hyperparams" for k in raw
             if k not in model.model_fields and not difflib.get_close_matches(k, list(model.model_fields), 1, 0.6)}
    block = validated(model, raw, key, hints)
    override = block.policy.model_dump(exclude_unset=True) if block.policy is not None else {}
    policy = validated(Policy, {**ctx.policy_given, **override}, f"{key}.policy").model_dump()
    if ctx.cfg["budget"]["env_steps"] is None:
        raise ConfigError("sb3 needs budget.env_steps (SB3's schedules decay over it)", key=f"{key}.name")
    env = ctx.cfg["task"]["env"]
    box = _check_spaces(block.algo, env, key)
    wrong = policy_problem(policy, block.algo, box)
    if wrong is not None:
        field, why = wrong
        where = "" if field in override else ", inherited from the top-level policy"
        raise ConfigError(f"{why}, got {policy[field]!r}{where}", key=f"{key}.policy.{field}")
    hp = _hyperparams(block.hyperparams, block.algo, env["id"], key, box)
    try:
        probe_model(block.algo, hp, policy, env)
    except Exception as exc:  # noqa: BLE001 (SB3's own checks: AssertionError, ValueError, TypeError, ...)
        raise ConfigError(f"SB3's {block.algo} cannot be built with these hyperparameters: {type(exc).__name__}: "
                          f"{' '.join(str(exc).split())}", key=f"{key}.hyperparams") from None
    return {"name": SB3, "policy": policy, "algo": block.algo, "hyperparams": hp}


def _check_spaces(algo: str, env: dict, key: str) -> bool:
    """Whether the env's actions are a Box (the env built once); errors for what `algo` cannot train."""
    import gymnasium as gym

    try:
        made = env_factory(env)()
    except Exception as exc:  # noqa: BLE001 (any failure of the env's own constructor)
        raise ConfigError(f"cannot make the env: {type(exc).__name__}: {exc}",
                          key="task.env.kwargs" if env["kwargs"] else "task.env") from None
    obs, act = made.observation_space, made.action_space
    made.close()
    box, discrete = isinstance(act, gym.spaces.Box), isinstance(act, gym.spaces.Discrete)
    if algo in DISCRETE_ONLY and not discrete:
        raise ConfigError(f"{algo} needs a Discrete action space; {env['id']} has {act}", key=f"{key}.algo")
    if algo in BOX_ONLY and not box:
        raise ConfigError(f"{algo} needs a Box action space; {env['id']} has {act}", key=f"{key}.algo")
    if not isinstance(obs, (gym.spaces.Box, gym.spaces.Discrete)):
        raise ConfigError(f"sb3 methods train SB3's MlpPolicy, which takes Box or Discrete observations; "
                          f"{env['id']} has {obs}", key="task.env.id")
    return box


def _hyperparams(value: Any, algo: str, env_id: str, block_key: str, box: bool) -> dict:
    key = f"{block_key}.hyperparams"
    if value == "zoo":
        hp = zoo_entry(algo, env_id)
        if hp is None:
            raise ConfigError(f"rl-baselines3-zoo has no {algo} entry for {env_id} (it has {', '.join(zoo_envs(algo))}"
                              f"); give the hyperparameters as a mapping ({{}} for SB3's defaults)", key=key)
        return hp
    hp = dict(value)
    allowed = [p for p in inspect.signature(algo_class(algo).__init__).parameters if p != "self"]
    for k, v in hp.items():
        if k in RUNNER_SET:
            raise ConfigError(f"cannot be set here: {RUNNER_SET[k].format(key=block_key)}",
                              key=f"{key}.{k}")
        if k not in allowed and k not in EXTRAS:
            close = difflib.get_close_matches(k, allowed + list(EXTRAS), n=1, cutoff=0.6)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ConfigError(f"unknown hyperparameter of SB3's {algo}{hint}", key=f"{key}.{k}")
        if k.endswith("_class"):
            raise ConfigError("a class cannot be given in a config", key=f"{key}.{k}")
        _check_value(k, v, block_key, box)
    return hp


def _check_value(k: str, v: Any, block_key: str, box: bool) -> None:
    where = f"{block_key}.hyperparams.{k}"
    if k in SCHEDULED and isinstance(v, str) and not linear_rate(v) is not None:
        raise ConfigError(f"must be a number or 'lin_<number>' (a linear decay to 0), got {v!r}", key=where)
    if k == "n_envs" and not (isinstance(v, int) and not isinstance(v, bool) and 1 <= v <= 1024):
        raise ConfigError(f"must be an int in the range [1, 1024], got {v!r}", key=where)
    if k == "normalize" and not isinstance(v, bool):
        if not (isinstance(v, dict) and set(v) <= set(NORMALIZE_KEYS)):
            raise ConfigError(f"must be a bool or a mapping of VecNormalize's {', '.join(NORMALIZE_KEYS)}, got {v!r}",
                              key=where)
    if k == "noise_type" and (v not in ("normal", "ornstein-uhlenbeck") or not box):
        raise ConfigError(f"must be 'normal' or 'ornstein-uhlenbeck' (action noise of Box actions), got {v!r}",
                          key=where)
    if k == "noise_std" and not (isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0):
        raise ConfigError(f"must be a float > 0, got {v!r}", key=where)
    if k == "policy_kwargs":
        if not isinstance(v, dict):
            raise ConfigError(f"must be a mapping, got {v!r}", key=where)
        for owned, field in (("net_arch", "hidden_sizes"), ("activation_fn", "activation")):
            if owned in v:
                raise ConfigError(f"cannot be set here: set {block_key}.policy.{field} instead", key=f"{where}.{owned}")
        bad = next((p for p in v if p.endswith("_class")), None)
        if bad is not None:
            raise ConfigError("a class cannot be given in a config", key=f"{where}.{bad}")
