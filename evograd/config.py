"""Experiment configs: YAML loaded safely, checked against a small declarative schema, resolved to plain data.

Every mistake is reported before anything runs, as "<file>: <dotted.key>: <what is wrong>", so a typo in a
long config costs seconds instead of a failed overnight job. No rule is written twice: optimizer
hyperparameters are checked by building the optimizer once (its constructor owns the rules), PPO/REINFORCE
arguments by their signature's annotations plus a dry call that stops where the function first asks for an
env (all of `train_ppo`'s argument checks run before that point).
"""
from __future__ import annotations

import copy
import datetime
import difflib
import importlib
import inspect
import os
import platform
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from .validation import ParameterError, check_bool, check_float, check_int

_REQUIRED = object()
RL_METHODS = ("ppo", "reinforce")


class ConfigError(ParameterError):
    """A config (or a --set override) that cannot run; the message names the file and the dotted key."""

    def __init__(self, reason: str, file: str | None = None, key: str | None = None):
        self.reason, self.file, self.key = reason, file, key
        super().__init__(": ".join(str(p) for p in (file, key, reason) if p))


# ---------------------------------------------------------------- YAML
class _Loader(yaml.SafeLoader):
    """SafeLoader (no Python tags) that reads 1e5 and 3e-4 as numbers, as YAML 1.2 does (YAML 1.1 leaves
    them strings), and rejects duplicate keys instead of silently keeping the last one."""

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":  # `<<: *anchor` may be overridden by later keys
                continue
            key = self.construct_object(key_node, deep=True)
            if isinstance(key, (str, int, float, bool)):
                if key in seen:
                    raise yaml.constructor.ConstructorError(None, None, f"duplicate key {key!r}",
                                                            key_node.start_mark)
                seen.add(key)
        return super().construct_mapping(node, deep)


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float", re.compile(r"^[-+]?(?:[0-9][0-9_]*(?:\.[0-9_]*)?|\.[0-9_]+)[eE][-+]?[0-9]+$"),
    list("-+0123456789."))


def _parse(text: str, file: str | None) -> Any:
    try:
        return yaml.load(text, Loader=_Loader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        what = " ".join(str(p) for p in (exc.context, exc.problem) if p)
        raise ConfigError(f"{where}invalid YAML: {what}", file) from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"invalid YAML: {exc}", file) from None


# ---------------------------------------------------------------- schema
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
            return list(range(Field("int", low=1).check(v, key)))
        return copy.deepcopy(v)


POLICY = {"type": Field("choice", "linear", choices=("linear", "mlp")),
          "hidden_sizes": Field("ints", [64, 64], low=1),
          "activation": Field("choice", "tanh", choices=("tanh", "relu", "elu", "gelu", "identity")),
          "obs_norm": Field("bool", False),
          "box_head": Field("choice", "clip", choices=("clip", "tanh")),
          "bias": Field("bool", True)}
ENV = {"id": Field("str"), "kwargs": Field("mapping", {}),
       "max_episode_steps": Field("int", None, low=1, nullable=True)}
FUNCTION = {"fn": Field("str"), "dim": Field("int", low=1), "x0": Field("x0", 0.0),
            "vectorized": Field("bool", False)}
BUDGET = {"env_steps": Field("int", None, low=1, nullable=True),
          "evals": Field("int", None, low=1, nullable=True),
          "seconds": Field("float", None, low=0.0, low_inclusive=False, nullable=True)}
EVALUATION = {"every": Field("int", 10_000, low=1), "episodes": Field("int", 10, low=1)}
TOP = {"name": Field("str", None, nullable=True), "task": {"env": ENV, "function": FUNCTION},
       "policy": POLICY, "budget": BUDGET, "threshold": Field("float", None, nullable=True),
       "evaluation": EVALUATION, "seeds": Field("seeds", 1), "jobs": Field("int", 1, low=1),
       "optimizer": None, "methods": None}  # method blocks: checked by _method against the optimizer/PPO

# arguments that the runner sets from other sections of the config
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


def _check_keys(raw: dict, allowed, key: str, hints: dict | None = None, shown=None) -> None:
    shown = [str(a) for a in (allowed if shown is None else shown)]
    for k in raw:
        if k in allowed:
            continue
        if hints and k in hints:
            raise ConfigError(f"{k!r} cannot be set here: {hints[k]}", key=_join(key, k))
        close = difflib.get_close_matches(str(k), shown, n=1, cutoff=0.6)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ConfigError(f"unknown key {k!r}{hint}; accepted: {', '.join(shown)}", key=_join(key, k))


def _section(raw: Any, schema: dict, key: str) -> dict:
    raw = {} if raw is None else raw
    if not isinstance(raw, dict):
        raise ConfigError(f"must be a mapping, got {raw!r}", key=key)
    _check_keys(raw, schema, key)
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


# ---------------------------------------------------------------- loading
def load_config(path: str | os.PathLike, overrides: list[str] | tuple[str, ...] = ()) -> dict:
    """Load a YAML config, apply `--set key.path=value` overrides, fill defaults, validate, resolve.

    Returns plain data: seeds as a list; every method block with its merged `policy` (env tasks), `episodes`
    (population methods on env tasks) and all its hyperparameters (the given values over the signature's
    defaults; `sigma` renamed `sigma0`). Raises ConfigError naming the file and the dotted key.
    """
    file = str(path)
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise ConfigError(f"cannot read the config: {exc.strerror or exc}", file) from None
    raw = _parse(text, file)
    if not isinstance(raw, dict):
        raise ConfigError(f"must be a mapping of config keys, got {type(raw).__name__}", file)
    return validate(raw, file=file, overrides=overrides, default_name=Path(path).stem)


def validate(raw: dict, file: str = "<config>", overrides=(), default_name: str = "experiment") -> dict:
    """`load_config` for a config already in memory (a dict as yaml.safe_load returns it)."""
    raw = copy.deepcopy(raw)
    raw.pop("_meta", None)  # a config.resolved.yaml loads again
    applied = []
    for item in overrides:
        try:
            applied.append(_apply_override(raw, item))
        except ConfigError as exc:
            raise ConfigError(exc.reason, file, exc.key) from None
    try:
        return _resolve(raw, default_name)
    except ConfigError as exc:
        reason = exc.reason
        for k, item in applied:
            if exc.key and (exc.key == k or exc.key.startswith(k + ".") or k.startswith(exc.key + ".")):
                reason += f" (from --set {item})"
                break
        raise ConfigError(reason, file, exc.key) from None


def _apply_override(raw: dict, item: str) -> tuple[str, str]:
    path, eq, text = item.partition("=") if isinstance(item, str) else ("", "", "")
    parts = path.strip().split(".")
    if not (eq and all(parts)):
        raise ConfigError(f"--set takes key.path=value, got {item!r}")
    try:
        value = _parse(text, None)
    except ConfigError as exc:
        raise ConfigError(f"the value of --set {item} is {exc.reason}", key=path.strip()) from None
    node = raw
    for i, p in enumerate(parts[:-1]):
        here, cur = parts[:i + 1], node.get(p)
        if cur is None:  # created here; the schema check that follows rejects it where it is unknown
            cur = node[p] = {}
        elif isinstance(cur, str) and p == "policy":  # the shorthands `policy: mlp`, `optimizer: ars`
            cur = node[p] = {"type": cur}
        elif isinstance(cur, str) and (here == ["optimizer"] or (len(here) == 2 and here[0] == "methods")):
            cur = node[p] = {"name": cur}
        if not isinstance(cur, dict):
            raise ConfigError(f"cannot set {path}: {'.'.join(here)} is {cur!r}, not a mapping", key=path)
        node = cur
    last = parts[-1]
    block = parts[:-1] == ["optimizer"] or (len(parts) == 3 and parts[0] == "methods")
    if block and last in ("sigma", "sigma0") and not _has_own_sigma(node.get("name")):
        node.pop("sigma", None)  # either spelling replaces the file's sigma or sigma0
        node.pop("sigma0", None)
        last = "sigma0"
    node[last] = value
    return path.strip(), item


def _has_own_sigma(name: Any) -> bool:
    from .registry import available, get, hyperparameters

    return isinstance(name, str) and name in available() and "sigma" in hyperparameters(get(name))


def _resolve(raw: dict, default_name: str) -> dict:
    _check_keys(raw, TOP, "")
    out: dict[str, Any] = {"name": TOP["name"].check(raw.get("name"), "name") or default_name}
    task = raw.get("task")
    if not isinstance(task, dict):
        raise ConfigError(f"must be a mapping with exactly one of env, function, got {task!r}", key="task")
    _check_keys(task, TOP["task"], "task")
    if len(task) != 1:
        raise ConfigError("needs exactly one of env, function", key="task")
    kind = next(iter(task))
    body = _section(task[kind], TOP["task"][kind], f"task.{kind}")
    is_env = kind == "env"
    if is_env:
        if not isinstance(_env_ref(body["id"]), str) and body["kwargs"]:
            raise ConfigError("only for Gymnasium ids (a constructor takes no arguments)",
                              key="task.env.kwargs")
    else:
        if not callable(resolve_attr(body["fn"], "task.function.fn")):
            raise ConfigError(f"{body['fn']!r} is not callable", key="task.function.fn")
        if isinstance(body["x0"], list) and len(body["x0"]) != body["dim"]:
            raise ConfigError(f"must be one float or a list of dim={body['dim']} floats, got "
                              f"{len(body['x0'])} values", key="task.function.x0")
        for section in ("policy", "evaluation"):
            if section in raw:
                raise ConfigError("only for env tasks", key=section)
    out["task"] = {kind: body}
    policy_raw = _policy_dict(raw.get("policy"))
    out["policy"] = _section(policy_raw, POLICY, "policy") if is_env else None
    out["budget"] = budget = _section(raw.get("budget"), BUDGET, "budget")
    if all(v is None for v in budget.values()):
        raise ConfigError("needs at least one of env_steps, evals, seconds", key="budget")
    wrong = "evals" if is_env else "env_steps"
    if budget[wrong] is not None:
        raise ConfigError("env tasks count env steps (budget.env_steps)" if is_env else
                          "function tasks count evaluations (budget.evals)", key=f"budget.{wrong}")
    out["threshold"] = TOP["threshold"].check(raw.get("threshold"), "threshold")
    out["evaluation"] = _section(raw.get("evaluation"), EVALUATION, "evaluation") if is_env else None
    out["seeds"] = TOP["seeds"].check(raw.get("seeds", 1), "seeds")
    out["jobs"] = TOP["jobs"].check(raw.get("jobs", 1), "jobs")

    ctx = _Context(out, policy_raw)
    out["optimizer"] = None if raw.get("optimizer") is None else _method(raw["optimizer"], "optimizer", ctx)
    methods = raw.get("methods")
    if methods is not None and not (isinstance(methods, dict) and methods):
        raise ConfigError(f"must be a non-empty mapping of label -> method block, got {methods!r}",
                          key="methods")
    out["methods"] = {}
    for label, block in (methods or {}).items():
        if not (isinstance(label, str) and re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9_.-]*", label)):
            raise ConfigError(f"labels name run directories: use letters, digits, '_', '-', '.', got "
                              f"{label!r}", key=f"methods.{label}")
        out["methods"][label] = _method(block, f"methods.{label}", ctx)
    if out["optimizer"] is None and not out["methods"]:
        raise ConfigError("needs an optimizer block (evograd run) or a methods block (evograd compare)",
                          key="optimizer")
    return out


def _policy_dict(value: Any) -> Any:
    return {"type": value} if isinstance(value, str) else value  # `policy: mlp` is short for {type: mlp}


class _Context:
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
    from .gym_problem import GymProblem

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


def _method(raw: Any, key: str, ctx: _Context) -> dict:
    from .registry import available, get, hyperparameters

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
        override = _policy_dict(raw.pop("policy", None)) or {}
        if not isinstance(override, dict):
            raise ConfigError(f"must be a mapping of policy fields, got {override!r}", key=f"{key}.policy")
        merged = {**_policy_dict(ctx.policy_raw), **override}
        policy = out["policy"] = _section(merged, POLICY, f"{key}.policy")
        if not rl:
            out["episodes"] = Field("int", 1, low=1).check(raw.pop("episodes", 1), f"{key}.episodes")
    common = ["name"] + (["policy"] if ctx.is_env else []) + (["episodes"] if ctx.is_env and not rl else [])
    _check_keys(raw, allowed, key, hints, shown=common + allowed)
    if rl:
        _check_rl(name, params, raw, key, ctx, policy, override)
    else:
        _check_optimizer(name, raw, key, ctx.x0(policy, f"{key}.policy"), alias)
    for p in allowed:  # the effective value of every hyperparameter, for the record
        if p in raw:
            out[p] = raw[p]
        elif _is_plain(params[p].default):
            out[p] = _plain(params[p].default)
    return out


def _check_optimizer(name: str, kwargs: dict, key: str, x0: np.ndarray, alias: bool) -> None:
    from .registry import make

    try:
        make(name, x0=x0, seed=0, **kwargs)
    except ParameterError as exc:
        p = _param_of(exc)
        if p == "x0":
            raise ConfigError(_short(exc), key="task.function.x0") from None
        shown = "sigma" if alias and p == "sigma0" else p
        raise ConfigError(_short(exc), key=f"{key}.{shown}" if p in kwargs else key) from None
    except Exception as exc:  # noqa: BLE001
        raise ConfigError(f"{name} cannot be built with these settings: {type(exc).__name__}: {exc}",
                          key=key) from None


class _DryRun(Exception):
    """Raised by the probe env: the training function has checked its arguments and asks for an env."""


def _probe_env(*args, **kwargs):
    raise _DryRun


def _check_rl(name: str, params, kwargs: dict, key: str, ctx: _Context, policy: dict, override: dict) -> None:
    words = {"int": "an int", "float": "a float", "bool": "a bool", "str": "a string", "dict": "a mapping",
             "None": "null"}
    for k, v in kwargs.items():
        expected = _annotation_kinds(params[k].annotation)
        if expected and not _matches(v, expected):
            what = " or ".join(words.get(x, x) for x in sorted(expected, key=lambda x: (x == "None", x)))
            raise ConfigError(f"must be {what}, got {v!r}", key=f"{key}.{k}")
    from . import rl_common

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


def _plain(v: Any) -> Any:
    if isinstance(v, dict):
        return {str(k): _plain(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_plain(x) for x in v]
    return v.item() if isinstance(v, np.generic) else v


# ---------------------------------------------------------------- what the runner needs
def rl_function(name: str):
    """evograd.train_ppo / evograd.train_reinforce, imported lazily."""
    import evograd

    return getattr(evograd, f"train_{name}", None) or getattr(importlib.import_module(f"evograd.{name}"),
                                                              f"train_{name}")


def method_kwargs(block: dict) -> dict:
    """The hyperparameters of a resolved method block, for `evograd.make` / `train_ppo` beside what the runner
    sets (for ppo/reinforce it maps block["policy"] to policy, hidden_sizes, activation, normalize_obs)."""
    return {k: v for k, v in block.items() if k not in ("name", "episodes", "policy")}


class EnvMaker:
    """gym.make(env_id, **kwargs) as a picklable zero-argument constructor named after the id (GymProblem
    reports an env by its constructor's __name__)."""

    def __init__(self, env_id: str, kwargs: dict):
        self.env_id, self.kwargs, self.__name__ = env_id, dict(kwargs), env_id

    def __call__(self):
        import gymnasium as gym

        return gym.make(self.env_id, **self.kwargs)

    def __repr__(self) -> str:
        return f"EnvMaker({self.env_id!r}, {self.kwargs!r})"


def env_constructor(env: dict):
    """What GymProblem and train_ppo take for a resolved task.env: the Gymnasium id, or a picklable
    zero-argument constructor (an EnvMaker for an id with kwargs, or the resolved "module:attribute").
    max_episode_steps is not applied here (GymProblem takes it as an argument)."""
    ref = _env_ref(env["id"])
    return EnvMaker(ref, env["kwargs"]) if isinstance(ref, str) and env.get("kwargs") else ref


def _env_ref(spec: str):
    """"module:attribute" (identifiers) names a constructor; anything else is a Gymnasium id
    ("evograd/LQR-v0", "CartPole-v1": never identifiers)."""
    mod, sep, attr = spec.partition(":")
    if sep and re.fullmatch(r"[A-Za-z_][\w.]*", mod) and re.fullmatch(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)*", attr):
        obj = resolve_attr(spec, "task.env.id")
        if not callable(obj):
            raise ConfigError(f"{spec!r} is not callable (a zero-argument env constructor)",
                              key="task.env.id")
        return obj
    return spec


def resolve_attr(spec: str, key: str | None = None) -> Any:
    """"package.module:attr.sub" -> the object (errors name `key`). The current directory goes on sys.path
    (as `python -m` does), so "examples.custom_fitness:styblinski_tang" resolves from the repository root;
    joblib's workers inherit the path."""
    def fail(reason):
        return ConfigError(f"cannot resolve {spec!r}: {reason}", key=key)

    module_name, sep, attr = spec.partition(":") if isinstance(spec, str) else ("", "", "")
    if not (sep and module_name and attr):
        raise ConfigError(f"expected 'module:attribute', got {spec!r}", key=key)
    cwd = os.getcwd()
    if cwd not in {os.path.abspath(p or ".") for p in sys.path}:
        sys.path.insert(0, cwd)
    try:
        obj = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name and (module_name == exc.name or module_name.startswith(exc.name + ".")):
            raise fail(f"no module named {exc.name!r} (sys.path includes the current directory "
                       f"{cwd})") from None
        raise fail(f"importing {module_name!r} failed: {exc}") from None
    except Exception as exc:  # noqa: BLE001 (the module's own code failed)
        raise fail(f"importing {module_name!r} raised {type(exc).__name__}: {exc}") from None
    for part in attr.split("."):
        if not hasattr(obj, part):
            close = difflib.get_close_matches(part, [n for n in dir(obj) if not n.startswith("_")], n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise fail(f"{getattr(obj, '__name__', module_name)!r} has no attribute {part!r}{hint}")
        obj = getattr(obj, part)
    return obj


# ---------------------------------------------------------------- the resolved record
def run_metadata(argv: list[str] | None = None) -> dict:
    """Versions, git revision, date and command line: what it takes to tell two runs' setups apart."""
    from importlib import metadata

    from . import __version__

    versions = {"python": platform.python_version()}
    for pkg in ("numpy", "torch", "gymnasium", "cma"):
        try:
            versions[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            versions[pkg] = "not installed"
    versions["evograd"] = __version__
    try:
        git = subprocess.run(["git", "rev-parse", "HEAD"], check=False, capture_output=True, text=True,
                             cwd=Path(__file__).resolve().parent, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        git = ""
    return {"versions": versions, "git_revision": git or "unknown",
            "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "argv": list(sys.argv if argv is None else argv)}


def dump_resolved(config: dict, path: str | os.PathLike, meta: dict | None = None) -> Path:
    """Write the resolved config plus `_meta` (run_metadata() updated with `meta`) atomically; `path` is the
    file, or a directory to hold config.resolved.yaml. load_config reads the file back (it skips _meta)."""
    path = Path(path)
    if path.is_dir():
        path = path / "config.resolved.yaml"
    doc = _plain({**config, "_meta": {**run_metadata(), **(meta or {})}})
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(yaml.safe_dump(doc, sort_keys=False, default_flow_style=None, width=110))
    os.replace(tmp, path)
    return path


__all__ = ["ConfigError", "EnvMaker", "Field", "dump_resolved", "env_constructor", "load_config",
           "method_kwargs", "resolve_attr", "rl_function", "run_metadata", "validate"]
