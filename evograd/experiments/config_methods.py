"""The checks of one method block (`optimizer:` or `methods.<label>:`) that its model cannot make.

The block's model (config_models.method_model) checks its keys and types. What only the optimizer or the
trainer knows is asked of it: the optimizer is built once, on the policy's parameter count (an env probed
once per distinct policy) or the function's x0, and its own ParameterError is reported under the key that
caused it; PPO/REINFORCE are dry-called until they first ask for an env (every argument check of
`train_ppo` runs before that). Sizes that cannot fit in memory are refused here before anything allocates.
A gradient method (sgd, adam, lbfgs) may train a policy only where the env offers a differentiable rollout, with
the bias-free linear policy it takes (experiments/gradient.py); on function tasks minimize differentiates fn.
An sb3 block (Stable-Baselines3's algorithms) is checked by experiments/sb3_config.py.
"""
from __future__ import annotations

import dataclasses
import difflib
import re
from typing import Any

import numpy as np

from ..core.validation import ParameterError, memory_problem
from ..rl.settings import ACTIVATIONS
from .config_errors import ConfigError, validated
from .config_models import RL_POLICY_OWNED, RL_RUNNER_SET, SB3, Policy, hints, method_model, method_names
from .gradient import ROLLOUT, rollout_env, rollout_problem
from .references import RL_METHODS, env_constructor, rl_function, rl_settings
from .sb3_config import check_sb3


class Context:
    """What method blocks are checked against: the resolved sections, the top-level policy's given keys,
    and the parameter count of each distinct policy (one probe env per policy, cached)."""

    def __init__(self, cfg: dict, policy_given: dict):
        self.cfg, self.policy_given, self._dims = cfg, policy_given, {}
        self.is_env = "env" in cfg["task"]
        self.budget_key = "budget"  # where the budget in cfg comes from, for error messages

    def with_budget(self, budget: dict, key: str) -> Context:
        """The same context for a method with a budget of its own, given at `key` (the policy probes stay
        shared)."""
        ctx = Context({**self.cfg, "budget": budget}, self.policy_given)
        ctx._dims, ctx.budget_key = self._dims, key
        return ctx

    def x0(self, policy: dict | None, policy_key: str) -> np.ndarray:
        if not self.is_env:
            fn = self.cfg["task"]["function"]
            return np.broadcast_to(np.asarray(fn["x0"], dtype=float), (fn["dim"],)).copy()
        spec = repr(sorted(policy.items()))
        if spec not in self._dims:
            self._dims[spec] = _policy_dim(self.cfg["task"]["env"], policy, policy_key)
        return np.zeros(self._dims[spec])


def _policy_dim(env: dict, policy: dict, policy_key: str) -> int:
    from ..gym.problem import GymProblem

    try:
        fields = {k: policy[k] for k in ("hidden_sizes", "activation", "obs_norm", "box_head", "bias")}
        problem = GymProblem(env_constructor(env), policy=policy["type"],
                             max_episode_steps=env["max_episode_steps"], **fields)
    except ParameterError as exc:
        p = _param_of(exc) or next((f for f in fields if f in str(exc)), None)
        p = "type" if p == "policy" else p
        key = (f"{policy_key}.{p}" if p in Policy.model_fields else f"task.env.kwargs.{p}" if p in env["kwargs"]
               else "task.env.id" if "cannot make env" in str(exc) else "task.env")
        raise ConfigError(_short(exc).replace("GymProblem: ", ""), key=key) from None
    except Exception as exc:  # noqa: BLE001 (any failure of the env's own constructor)
        raise ConfigError(f"cannot make the env: {type(exc).__name__}: {exc}",
                          key="task.env.kwargs" if env["kwargs"] else "task.env") from None
    problem.close()
    return problem.dim


def check_method(raw: Any, key: str, ctx: Context) -> dict:
    """The resolved block: name, merged policy and episodes (env tasks), every hyperparameter's value."""
    from ..optim.registry import get

    raw = {"name": raw} if isinstance(raw, str) else raw  # `optimizer: cmaes` is short for {name: cmaes}
    if not isinstance(raw, dict):
        raise ConfigError(f"must be a method block (a mapping with a name), got {raw!r}", key=key)
    name, names = raw.get("name"), method_names()
    if not (isinstance(name, str) and name in names):
        close = difflib.get_close_matches(str(name), names, n=1, cutoff=0.5)
        what = "missing" if name is None else f"unknown method {name!r}"
        raise ConfigError(f"{what}{f' (did you mean {close[0]!r}?)' if close else ''}; available: "
                          f"{', '.join(names)}", key=f"{key}.name")
    if name == SB3:  # Stable-Baselines3's algorithms: their own block (experiments/sb3_config.py)
        return check_sb3(raw, key, ctx)
    rl = name in RL_METHODS
    if rl and not ctx.is_env:
        raise ConfigError(f"{name} trains a policy: it needs task.env", key=f"{key}.name")
    if not rl and get(name).needs_grad and ctx.is_env:  # on function tasks, minimize differentiates fn
        _check_rollout(name, key, ctx)
    model = method_model(name, ctx.is_env)
    raw, alias = _current_names(dict(raw), name, model, key)
    try:
        block = validated(model, raw, key, hints(name, ctx.is_env, key))
    except ConfigError as exc:
        p = (exc.key or "").removeprefix(f"{key}.")
        own = p in model.model_fields and p not in ("name", "policy", "episodes")  # a value of the wrong type
        words = _own_words(name, p, raw[p]) if own and p in raw else None
        raise _unaliased(ConfigError(words, key=exc.key) if words else exc, key, alias) from None
    out = block.model_dump()
    policy, override = None, {}
    if ctx.is_env:
        override = block.policy.model_dump(exclude_unset=True) if block.policy is not None else {}
        policy = out["policy"] = validated(Policy, {**ctx.policy_given, **override}, f"{key}.policy").model_dump()
    kwargs = {k: v for k, v in out.items() if k not in ("name", "policy", "episodes")}
    if rl:
        _check_rl(name, kwargs, key, ctx, policy, override)
        return out
    wrong = rollout_problem(policy) if ctx.is_env and get(name).needs_grad else None
    if wrong is not None:  # the differentiable rollout takes one kind of policy
        field, why = wrong
        where = "" if field in override else ", inherited from the top-level policy"
        raise ConfigError(f"{why}, got {policy[field]!r}{where}", key=f"{key}.policy.{field}")
    x0 = ctx.x0(policy, f"{key}.policy")
    try:
        popsize = _check_optimizer(name, kwargs, key, x0, ctx)
    except ConfigError as exc:
        raise _unaliased(exc, key, alias) from None
    if ctx.is_env:  # the rollouts' sizes: one return per candidate and episode, one row per eval episode
        train_eps, eval_eps = out["episodes"], ctx.cfg["evaluation"]["episodes"]
        for k, n, size, what in ((f"{key}.episodes", train_eps, popsize, f"popsize x episodes = {popsize} x"),
                                 ("evaluation.episodes", eval_eps, x0.size, f"dim x episodes = {x0.size} x")):
            problem = memory_problem(size * n, f"{what} {n}")
            if problem:
                raise ConfigError(f"{problem}, got {n}", key=k)
    return out


def _check_rollout(name: str, key: str, ctx: Context) -> None:
    """A gradient method on an env task needs the env's differentiable rollout (see experiments/gradient.py)."""
    env = ctx.cfg["task"]["env"]
    try:
        ok = rollout_env(env_constructor(env)) is not None
    except Exception:  # noqa: BLE001 (an env that cannot be made: the policy probe reports it with its key)
        return
    if not ok:
        raise ConfigError(f"{name!r} needs gradients, and {env['id']} offers no differentiable rollout (an env "
                          f"method {ROLLOUT}(params, seeds)); use a population method or ppo/reinforce",
                          key=f"{key}.name")


def _current_names(raw: dict, name: str, model, key: str) -> tuple[dict, bool]:
    """An old parameter name is an error naming the new one (never read as another); `sigma` is short for
    sigma0 where the method has no sigma of its own. Returns the block and whether it used `sigma`."""
    from ..optim.registry import get, renamed_parameters

    for old, r in ({} if name in RL_METHODS else renamed_parameters(get(name))).items():
        if old in raw:
            raise ConfigError(f"renamed {r.new!r}{f' ({r.note})' if r.note else ''}: write {r.new} instead",
                              key=f"{key}.{old}")
    alias = name not in RL_METHODS and "sigma" in raw and "sigma" not in model.model_fields
    if alias:
        if "sigma0" in raw:
            raise ConfigError("sigma is an alias of sigma0: give one of them, not both", key=f"{key}.sigma")
        raw["sigma0"] = raw.pop("sigma")
    return raw, alias


def _unaliased(exc: ConfigError, key: str, alias: bool) -> ConfigError:
    """An error about sigma0 under the name the config used (sigma)."""
    if alias and exc.key == f"{key}.sigma0":
        return ConfigError(exc.reason, key=f"{key}.sigma")
    return exc


def _check_optimizer(name: str, kwargs: dict, key: str, x0: np.ndarray, ctx: Context) -> int:
    """Build the optimizer once (its constructor owns the rules); returns its popsize."""
    from ..optim.registry import make

    try:
        opt = make(name, x0=x0, seed=max(ctx.cfg["seeds"]), **kwargs)  # cmaes takes seeds < 2**32
    except ParameterError as exc:
        p = _param_of(exc)
        if p == "x0":
            size = "fit in memory" in str(exc)  # too many parameters: the size is set by dim or the policy
            where = ("policy" if ctx.is_env else "task.function.dim") if size else "task.function.x0"
        else:
            where = "seeds" if p == "seed" else f"{key}.{p}" if p in kwargs else key
        raise ConfigError(_short(exc), key=where) from None
    except Exception as exc:  # noqa: BLE001
        raise ConfigError(f"{name} cannot be built with these settings: {type(exc).__name__}: {exc}",
                          key=key) from None
    evals = ctx.cfg["budget"].get("evals")
    if evals is not None and evals < opt.popsize:  # minimize would stop before the first generation
        raise ConfigError(f"must be an int >= {opt.popsize} (one generation of {key}: {name} asks for "
                          f"{opt.popsize} candidates at a time), got {evals}", key=f"{ctx.budget_key}.evals")
    return int(opt.popsize)


def _own_words(name: str, p: str, value: Any) -> str | None:
    """What the optimizer (or trainer) itself says about a value of `p` its block's model refused: its
    message also gives the range ("must be an int >= 2, got 1.5"); None if it says nothing about `p`."""
    from ..optim.registry import make

    try:
        if name in RL_METHODS:
            rl_function(name)(_probe_env, **{p: value})
        else:
            make(name, x0=np.zeros(2), **{p: value})
    except ParameterError as exc:
        return _short(exc) if _param_of(exc) == p else None
    except Exception:  # noqa: BLE001 (_DryRun, or anything else: the model's words stand)
        return None
    return None


class _DryRun(Exception):
    """Raised by the probe env: the training function has checked its arguments and asks for an env."""


def _probe_env(*args, **kwargs):
    raise _DryRun


def _check_rl(name: str, kwargs: dict, key: str, ctx: Context, policy: dict, override: dict) -> None:
    settings = {f.name for f in dataclasses.fields(rl_settings(name))}
    for field, ok, why in (("box_head", policy["box_head"] == "clip", "must be 'clip' (the RL actor's head)"),
                           ("bias", policy["bias"], "must be true (the RL actor always has biases)"),
                           ("activation", policy["activation"] in ACTIVATIONS, f"must be one of {ACTIVATIONS}"),
                           ("obs_norm", "normalize_obs" in settings or not policy["obs_norm"],
                            f"must be false ({name} has no observation normalization)")):
        if not ok:
            where = "" if field in override else ", inherited from the top-level policy"
            raise ConfigError(f"{why} for {name}, got {policy[field]!r}{where}", key=f"{key}.policy.{field}")
    budget, evaluation = ctx.cfg["budget"], ctx.cfg["evaluation"]
    if budget["env_steps"] is None:
        raise ConfigError(f"{name} needs budget.env_steps (its schedules decay over it)", key=f"{key}.name")
    runner = {"seed": 0, "max_env_steps": budget["env_steps"], "max_seconds": budget["seconds"],
              "eval_every": evaluation["every"], "eval_episodes": evaluation["episodes"],
              "target_return": ctx.cfg["threshold"], "policy": policy["type"],
              "hidden_sizes": policy["hidden_sizes"], "activation": policy["activation"]}
    if "normalize_obs" in settings:
        runner["normalize_obs"] = policy["obs_norm"]
    try:
        rl_function(name)(_probe_env, **runner, **kwargs)
    except _DryRun:
        pass
    except ParameterError as exc:
        p = _param_of(exc)
        where = (f"{key}.{p}" if p in kwargs else f"{key}.policy.{RL_POLICY_OWNED[p]}" if p in RL_POLICY_OWNED
                 else RL_RUNNER_SET.get(p, key))
        raise ConfigError(_short(exc), key=where) from None


def _short(exc: Exception) -> str:
    """evograd's "The 'p' parameter of X must be Y. Got V instead." -> "must be Y, got V"."""
    m = re.fullmatch(r"The '[^']*' parameter of \S+ (must .*?)\. Got (.*) instead\.", str(exc), re.DOTALL)
    return f"{m.group(1)}, got {m.group(2)}" if m else str(exc)


def _param_of(exc: Exception) -> str | None:
    m = re.search(r"The '(\w+)' parameter of", str(exc))
    return m.group(1) if m else None
