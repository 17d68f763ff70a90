"""Config checks below the YAML: the shared basics (ConfigError, Field, sections, key and message helpers)
and the checks of one method block (`optimizer:` or `methods.<label>:`).

It exists so config.py stays about files (YAML, --set overrides, the top-level sections, the resolved
record) while this module holds the part that knows optimizers, policies and training functions: building
an optimizer once, probing an env for the policy size, dry-calling train_ppo. config.py imports this module
at its top and re-exports ConfigError and Field; the few config.py names used here (POLICY, RL_METHODS,
env_constructor, rl_function) are imported inside functions, so there is no import cycle.
"""
from __future__ import annotations

import copy
import difflib
import inspect
import re
from typing import Any

import numpy as np

from ..core.validation import ParameterError, check_bool, check_float, check_int, memory_problem
from .config_errors import ConfigError
from .references import RL_METHODS, env_constructor, rl_function

_REQUIRED = object()


# ---------------------------------------------------------------- schema basics
class Field:
    """One config value: kind (int, float, bool, str, choice, ints, mapping, x0, seeds), default (_REQUIRED:
    must be given), range, choices, and whether null is allowed."""

    def __init__(self, kind: str, default: Any = _REQUIRED, low=None, high=None, low_inclusive=True,
                 choices=(), nullable=False):
        self.kind, self.default, self.low, self.high = kind, default, low, high
        self.low_inclusive, self.choices, self.nullable = low_inclusive, tuple(choices), nullable

    def check(self, value: Any, key: str) -> Any:
        if value is None and self.nullable:
            return None
        try:
            return self._check(value, key)
        except ParameterError as exc:
            if isinstance(exc, ConfigError) and exc.key:  # an item of a list, already named
                raise
            reason = _short(exc)
            raise ConfigError(reason.replace(", got", " or null, got", 1) if self.nullable else reason,
                              key=key) from None

    def _check(self, v: Any, key: str) -> Any:
        k = self.kind
        if k == "int":
            return check_int(int(v) if isinstance(v, float) and v.is_integer() else v,  # 2e6 is a float
                             key, "config", self.low, self.high)
        if k == "float":
            return check_float(v, key, "config", self.low, self.high, self.low_inclusive)
        if k == "bool":
            return check_bool(v, key, "config")
        if k == "str" and not (isinstance(v, str) and v.strip()):
            raise ConfigError(f"must be a non-empty string, got {v!r}")
        if k == "choice" and v not in self.choices:
            raise ConfigError(f"must be one of {', '.join(map(repr, self.choices))}, got {v!r}")
        if k == "mapping" and not (isinstance(v, dict) and all(isinstance(x, str) for x in v)):
            raise ConfigError(f"must be a mapping with string keys, got {v!r}")
        if k in ("ints", "x0", "seeds") and isinstance(v, (list, tuple)):
            item = Field("float") if k == "x0" else Field("int", low=self.low if k == "ints" else 0)
            out = [item.check(x, f"{key}[{i}]") for i, x in enumerate(v)]
            if not out or (k == "seeds" and len(set(out)) != len(out)):
                raise ConfigError("must be " + ("a non-empty list of distinct ints" if k == "seeds" else
                                                f"a non-empty list of ints >= {self.low}") + f", got {v!r}")
            return out
        if k == "ints":
            raise ConfigError(f"must be a non-empty list of ints >= {self.low}, got {v!r}")
        if k == "x0":
            return Field("float").check(v, key)
        if k == "seeds":  # n means seeds 0..n-1
            n = Field("int", low=1).check(v, key)
            problem = memory_problem(n, f"seeds 0..{n - 1}", itemsize=36, unit="Python ints of 36 bytes")
            if problem:  # one job per seed: refused before the list of them is built
                raise ConfigError(f"{problem}, got {v!r}")
            return list(range(n))
        return copy.deepcopy(v)


# arguments that the runner sets from other sections of the config
# the policy section's schema (also checked per method)
POLICY = {"type": Field("choice", "linear", choices=("linear", "mlp")),
          "hidden_sizes": Field("ints", [64, 64], low=1),
          "activation": Field("choice", "tanh", choices=("tanh", "relu", "elu", "gelu", "identity")),
          "obs_norm": Field("bool", False),
          "box_head": Field("choice", "clip", choices=("clip", "tanh")),
          "bias": Field("bool", True)}
_RL_RUNNER_SET = {"env": "task.env.id", "env_kwargs": "task.env.kwargs", "seed": "seeds",
                  "max_env_steps": "budget.env_steps", "max_seconds": "budget.seconds",
                  "target_return": "threshold", "eval_every": "evaluation.every",
                  "eval_episodes": "evaluation.episodes", "eval_seed": "its evaluation seeds",
                  "torch_threads": "its job setup", "callback": "its logging", "progress": "its logging",
                  "checkpoint": "its run directory", "resume": "--resume"}
_RL_POLICY_OWNED = {"policy": "type", "hidden_sizes": "hidden_sizes", "activation": "activation",
                    "normalize_obs": "obs_norm"}
_OPT_RUNNER_SET = {"x0": "the policy's initial parameters, or task.function.x0", "seed": "seeds",
                   "maximize": "the task (returns are maximized, function values minimized)"}


def check_keys(raw: dict, allowed, key: str, hints: dict | None = None, shown=None) -> None:
    shown = [str(a) for a in (allowed if shown is None else shown)]
    for k in raw:
        if k in allowed:
            continue
        if hints and k in hints:
            raise ConfigError(f"{k!r} cannot be set here: {hints[k]}", key=_join(key, k))
        close = difflib.get_close_matches(str(k), shown, n=1, cutoff=0.6)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ConfigError(f"unknown key {k!r}{hint}; accepted: {', '.join(shown)}", key=_join(key, k))


def check_section(raw: Any, schema: dict, key: str) -> dict:
    raw = {} if raw is None else raw
    if not isinstance(raw, dict):
        raise ConfigError(f"must be a mapping, got {raw!r}", key=key)
    check_keys(raw, schema, key)
    out = {}
    for k, spec in schema.items():
        if k in raw:
            out[k] = spec.check(raw[k], _join(key, k))
        elif spec.default is _REQUIRED:
            raise ConfigError("missing (required)", key=_join(key, k))
        else:
            out[k] = copy.deepcopy(spec.default)
    return out


def _join(key: str, k: Any) -> str:
    return f"{key}.{k}" if key else str(k)


def _short(exc: Exception) -> str:
    """evograd's "The 'p' parameter of X must be Y. Got V instead." -> "must be Y, got V"."""
    m = re.fullmatch(r"The '[^']*' parameter of \S+ (must .*?)\. Got (.*) instead\.", str(exc), re.DOTALL)
    return f"{m.group(1)}, got {m.group(2)}" if m else str(exc)


def _param_of(exc: Exception) -> str | None:
    m = re.search(r"The '(\w+)' parameter of", str(exc))
    return m.group(1) if m else None


# ---------------------------------------------------------------- method blocks
def policy_dict(value: Any) -> Any:
    return {"type": value} if isinstance(value, str) else value  # `policy: mlp` is short for {type: mlp}


class Context:
    """What method blocks are checked against: the resolved sections, and the parameter count of each
    distinct policy (one probe env per policy, cached)."""

    def __init__(self, cfg: dict, policy_raw: Any):
        self.cfg, self.policy_raw, self._dims = cfg, policy_raw or {}, {}
        self.is_env = "env" in cfg["task"]

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
        key = (f"{policy_key}.{p}" if p in POLICY else f"task.env.kwargs.{p}" if p in env["kwargs"] else
               "task.env.id" if "cannot make env" in str(exc) else "task.env")
        raise ConfigError(_short(exc).replace("GymProblem: ", ""), key=key) from None
    except Exception as exc:  # noqa: BLE001 (any failure of the env's own constructor)
        raise ConfigError(f"cannot make the env: {type(exc).__name__}: {exc}",
                          key="task.env.kwargs" if env["kwargs"] else "task.env") from None
    problem.close()
    return problem.dim


def check_method(raw: Any, key: str, ctx: Context) -> dict:
    from ..optim.registry import available, get, hyperparameters, renamed_parameters

    raw = {"name": raw} if isinstance(raw, str) else raw  # `optimizer: cmaes` is short for {name: cmaes}
    if not isinstance(raw, dict):
        raise ConfigError(f"must be a method block (a mapping with a name), got {raw!r}", key=key)
    raw, names = dict(raw), available() + list(RL_METHODS)
    name = raw.pop("name", None)
    if name not in names:
        close = difflib.get_close_matches(str(name), names, n=1, cutoff=0.5)
        what = "missing" if name is None else f"unknown method {name!r}"
        raise ConfigError(f"{what}{f' (did you mean {close[0]!r}?)' if close else ''}; available: "
                          f"{', '.join(names)}", key=f"{key}.name")
    rl = name in RL_METHODS
    if rl:
        if not ctx.is_env:
            raise ConfigError(f"{name} trains a policy: it needs task.env", key=f"{key}.name")
        params = inspect.signature(rl_function(name)).parameters
        hints = {**{p: f"the runner sets it from {src}" for p, src in _RL_RUNNER_SET.items()},
                 **{p: f"set {key}.policy.{f} instead" for p, f in _RL_POLICY_OWNED.items()},
                 "episodes": "episodes per candidate are for population methods"}
        allowed = [p for p in params if p not in hints]
    else:
        cls = get(name)
        if cls.needs_grad:
            raise ConfigError(f"{name!r} needs gradients; configs run population methods (or ppo/reinforce)",
                              key=f"{key}.name")
        params = inspect.signature(cls.__init__).parameters
        hints = {p: f"the runner sets it from {src}" for p, src in _OPT_RUNNER_SET.items()}
        if not ctx.is_env:
            hints["episodes"] = "function tasks have no episodes"
        allowed = [p for p in hyperparameters(cls) if p not in hints]
    for old, r in ({} if rl else renamed_parameters(cls)).items():  # never read an old name as another
        if old in raw:
            raise ConfigError(f"renamed {r.new!r}{f' ({r.note})' if r.note else ''}: write {r.new} instead",
                              key=f"{key}.{old}")
    alias = not rl and "sigma" in raw and "sigma" not in allowed
    if alias:
        if "sigma0" in raw:
            raise ConfigError("sigma is an alias of sigma0: give one of them, not both", key=f"{key}.sigma")
        raw["sigma0"] = raw.pop("sigma")
    if "policy" in raw and not ctx.is_env:
        raise ConfigError("only for env tasks", key=f"{key}.policy")
    out: dict[str, Any] = {"name": name}
    policy, override = None, {}
    if ctx.is_env:
        override = policy_dict(raw.pop("policy", None)) or {}
        if not isinstance(override, dict):
            raise ConfigError(f"must be a mapping of policy fields, got {override!r}", key=f"{key}.policy")
        merged = {**policy_dict(ctx.policy_raw), **override}
        policy = out["policy"] = check_section(merged, POLICY, f"{key}.policy")
        if not rl:
            out["episodes"] = Field("int", 1, low=1).check(raw.pop("episodes", 1), f"{key}.episodes")
    common = ["name"] + (["policy"] if ctx.is_env else []) + (["episodes"] if ctx.is_env and not rl else [])
    check_keys(raw, allowed, key, hints, shown=common + allowed)
    if rl:
        _check_rl(name, params, raw, key, ctx, policy, override)
    else:
        x0 = ctx.x0(policy, f"{key}.policy")
        popsize = _check_optimizer(name, raw, key, x0, alias, ctx)
        if ctx.is_env:  # the rollouts' sizes: one return per candidate and episode, one row per eval episode
            train_eps, eval_eps = out["episodes"], ctx.cfg["evaluation"]["episodes"]
            for k, n, size, what in ((f"{key}.episodes", train_eps, popsize, f"popsize x episodes = {popsize} x"),
                                     ("evaluation.episodes", eval_eps, x0.size, f"dim x episodes = {x0.size} x")):
                problem = memory_problem(size * n, f"{what} {n}")
                if problem:
                    raise ConfigError(f"{problem}, got {n}", key=k)
    for p in allowed:  # the effective value of every hyperparameter, for the record
        if p in raw:
            out[p] = raw[p]
        elif _is_plain(params[p].default):
            out[p] = to_plain(params[p].default)
    return out


def _check_optimizer(name: str, kwargs: dict, key: str, x0: np.ndarray, alias: bool, ctx: Context) -> int:
    """Build the optimizer once (its constructor owns the rules); returns its popsize."""
    from ..optim.registry import make

    while True:
        try:
            opt = make(name, x0=x0, seed=max(ctx.cfg["seeds"]), **kwargs)  # cmaes takes seeds < 2**32
            break
        except ParameterError as exc:
            p = _param_of(exc)
            if _integral_float(kwargs.get(p)) and re.search(r"must be an? (even )?int\b", str(exc)):
                kwargs[p] = int(kwargs[p])  # `popsize: 1e3` is a float in YAML; int fields take it (Field("int"))
                continue
            _optimizer_error(exc, p, key, alias, kwargs, ctx)
        except Exception as exc:  # noqa: BLE001
            raise ConfigError(f"{name} cannot be built with these settings: {type(exc).__name__}: {exc}",
                              key=key) from None
    evals = ctx.cfg["budget"].get("evals")
    if evals is not None and evals < opt.popsize:  # minimize would stop before the first generation
        raise ConfigError(f"must be an int >= {opt.popsize} (one generation of {key}: {name} asks for "
                          f"{opt.popsize} candidates at a time), got {evals}", key="budget.evals")
    return int(opt.popsize)


def _integral_float(v: Any) -> bool:
    return isinstance(v, float) and v.is_integer()


def _optimizer_error(exc: ParameterError, p: str | None, key: str, alias: bool, kwargs: dict, ctx: Context):
    """The constructor's message, under the key of the config value that caused it."""
    if p == "x0":
        size = "fit in memory" in str(exc)  # too many parameters: the size is set by dim or the policy
        where = ("policy" if ctx.is_env else "task.function.dim") if size else "task.function.x0"
        raise ConfigError(_short(exc), key=where) from None
    if p == "seed":
        raise ConfigError(_short(exc), key="seeds") from None
    shown = "sigma" if alias and p == "sigma0" else p
    raise ConfigError(_short(exc), key=f"{key}.{shown}" if p in kwargs else key) from None


class _DryRun(Exception):
    """Raised by the probe env: the training function has checked its arguments and asks for an env."""


def _probe_env(*args, **kwargs):
    raise _DryRun


def _check_rl(name: str, params, kwargs: dict, key: str, ctx: Context, policy: dict, override: dict) -> None:
    words = {"int": "an int", "float": "a float", "bool": "a bool", "str": "a string", "dict": "a mapping",
             "None": "null"}
    for k, v in kwargs.items():
        expected = _annotation_kinds(params[k].annotation)
        if expected and "int" in expected and _integral_float(v) and not _matches(v, expected):
            v = kwargs[k] = int(v)  # `n_steps: 2e3` is a float in YAML; int fields take it (Field("int"))
        if expected and not _matches(v, expected):
            what = " or ".join(words.get(x, x) for x in sorted(expected, key=lambda x: (x == "None", x)))
            raise ConfigError(f"must be {what}, got {v!r}", key=f"{key}.{k}")
    from ..rl import common as rl_common

    acts = tuple(getattr(rl_common, "_ACTS", ()))
    for field, ok, why in (("box_head", policy["box_head"] == "clip", "must be 'clip' (the RL actor's head)"),
                           ("bias", policy["bias"], "must be true (the RL actor always has biases)"),
                           ("activation", not acts or policy["activation"] in acts, f"must be one of {acts}"),
                           ("obs_norm", "normalize_obs" in params or not policy["obs_norm"],
                            f"must be false ({name} has no observation normalization)")):
        if not ok:
            where = "" if field in override else ", inherited from the top-level policy"
            raise ConfigError(f"{why} for {name}, got {policy[field]!r}{where}", key=f"{key}.policy.{field}")
    budget, evaluation = ctx.cfg["budget"], ctx.cfg["evaluation"]
    if budget["env_steps"] is None:
        raise ConfigError(f"{name} needs budget.env_steps (its schedules decay over it)", key=f"{key}.name")
    runner = {"env": _probe_env, "seed": 0, "max_env_steps": budget["env_steps"],
              "max_seconds": budget["seconds"], "eval_every": evaluation["every"],
              "eval_episodes": evaluation["episodes"], "target_return": ctx.cfg["threshold"],
              "policy": policy["type"], "hidden_sizes": policy["hidden_sizes"],
              "activation": policy["activation"], "normalize_obs": policy["obs_norm"]}
    try:
        rl_function(name)(**{k: v for k, v in runner.items() if k in params}, **kwargs)
    except _DryRun:
        pass
    except ParameterError as exc:
        p = _param_of(exc)
        where = f"{key}.{p}" if p in kwargs else _RL_RUNNER_SET.get(p, key)
        raise ConfigError(_short(exc), key=where) from None


def _annotation_kinds(annotation: Any) -> set[str] | None:
    """The YAML-expressible types an annotation allows ({"int", "None"}, ...); None: anything goes."""
    text = annotation if isinstance(annotation, str) else getattr(annotation, "__name__", "")
    kinds = set()
    for part in (x.strip(" '\"") for x in text.strip(" '\"").split("|")):
        if part in ("int", "float", "bool", "str", "dict", "None"):
            kinds.add(part)
        elif re.fullmatch(r"(tuple|list|Sequence)\[int(, \.\.\.)?\]", part):
            kinds.add("a list of ints")
        elif not part.startswith("Callable"):  # Any, or a type YAML cannot spell: no check
            return None
    return kinds


def _matches(v: Any, kinds: set[str]) -> bool:
    if v is None or isinstance(v, bool):
        return ("None" if v is None else "bool") in kinds
    if isinstance(v, (int, float)):
        return "float" in kinds or (isinstance(v, int) and "int" in kinds)
    if isinstance(v, list):
        return "a list of ints" in kinds and all(isinstance(x, int) and not isinstance(x, bool) for x in v)
    return type(v).__name__ in kinds


def _is_plain(v: Any) -> bool:
    if v is None or isinstance(v, (bool, int, float, str)):
        return True
    return isinstance(v, (list, tuple)) and all(_is_plain(x) for x in v)


def to_plain(v: Any) -> Any:
    if isinstance(v, dict):
        return {str(k): to_plain(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [to_plain(x) for x in v]
    return v.item() if isinstance(v, np.generic) else v
