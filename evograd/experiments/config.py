"""Experiment configs: YAML loaded safely, checked against typed models, resolved to plain data.

Every mistake is reported before anything runs, as "<file>: <dotted.key>: <what is wrong>", so a typo in a
long config costs seconds instead of a failed overnight job. The sections are pydantic models
(config_models), the method blocks are models generated from the optimizers' and trainers' own parameters,
and what only an optimizer knows is asked of it by building it once (config_methods). What the rest of the
code receives is plain data (dicts and lists), as `yaml.safe_load` gives it back from config.resolved.yaml.
"""
from __future__ import annotations

import copy
import datetime
import os
import platform
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from .budgets import job_config, method_budget
from .config_errors import ConfigError, validated
from .config_methods import Context, check_method
from .config_models import Budget, Config, Workers, schema, sigma_is_alias
from .references import EnvMaker, env_constructor, resolve_attr


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
        what = " ".join(" ".join(str(p).split()) for p in (exc.context, exc.problem) if p)
        raise ConfigError(f"{where}invalid YAML: {what}", file) from None
    except yaml.YAMLError as exc:  # e.g. a control character: pyyaml's text spans two lines, the CLI prints one
        raise ConfigError(f"invalid YAML: {' '.join(str(exc).split())}", file) from None


def check_workers(raw: Any) -> dict:
    """The `workers` section: where one run's populations are evaluated (see evograd.parallel.backends)."""
    return validated(Workers, raw, "workers").model_dump()


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
    if block and last in ("sigma", "sigma0") and sigma_is_alias(node.get("name")):
        node.pop("sigma", None)  # either spelling replaces the file's sigma or sigma0
        node.pop("sigma0", None)
        last = "sigma0"
    node[last] = value
    return path.strip(), item


def _resolve(raw: dict, default_name: str) -> dict:
    cfg = validated(Config, raw)
    kind, is_env = cfg.task.kind, cfg.task.kind == "env"
    out = cfg.model_dump(exclude={"optimizer", "methods"})
    out["name"] = out["name"] or default_name
    out["task"] = {kind: out["task"][kind]}
    if not is_env:
        out["policy"] = out["evaluation"] = None
    ctx = Context(out, cfg.policy.model_dump(exclude_unset=True))
    out["optimizer"] = None if cfg.optimizer is None else check_method(cfg.optimizer, "optimizer", ctx)
    methods = cfg.methods
    if methods is not None and not (isinstance(methods, dict) and methods):
        raise ConfigError(f"must be a non-empty mapping of label -> method block, got {methods!r}",
                          key="methods")
    out["methods"] = {}
    for label, block in (methods or {}).items():
        if not (isinstance(label, str) and re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9_.-]*", label)):
            raise ConfigError(f"labels name run directories: use letters, digits, '_', '-', '.', got "
                              f"{label!r}", key=f"methods.{label}")
        key = f"methods.{label}"
        block, budget = _own_budget(block, key, out["budget"], is_env)
        own = ctx if budget is None else ctx.with_budget(budget, f"{key}.budget")
        out["methods"][label] = check_method(block, key, own)
        if budget is not None:
            out["methods"][label]["budget"] = budget
    if out["optimizer"] is None and not out["methods"]:
        raise ConfigError("needs an optimizer block (evograd run) or a methods block (evograd compare)",
                          key="optimizer")
    return out


def _own_budget(block: Any, key: str, top: dict, is_env: bool) -> tuple[Any, dict | None]:
    """A method's own `budget:` (e.g. SAC at 300k env steps beside ES at 5M): the keys it gives replace the
    top-level budget's for that method only. Returns the block without it and the method's whole budget."""
    if not (isinstance(block, dict) and "budget" in block):
        return block, None
    block = dict(block)
    given = validated(Budget, block.pop("budget"), f"{key}.budget").model_dump(exclude_unset=True)
    wrong = "evals" if is_env else "env_steps"
    if given.get(wrong) is not None:
        raise ConfigError("env tasks count env steps (budget.env_steps)" if is_env else
                          "function tasks count evaluations (budget.evals)", key=f"{key}.budget.{wrong}")
    return block, {**top, **given}


# ---------------------------------------------------------------- what the runner needs
def method_kwargs(block: dict) -> dict:
    """The hyperparameters of a resolved method block, for `evograd.make` / `train_ppo` beside what the runner
    sets (for ppo/reinforce it maps block["policy"] to policy, hidden_sizes, activation, normalize_obs)."""
    return {k: v for k, v in block.items() if k not in ("name", "episodes", "policy", "budget")}


# ---------------------------------------------------------------- the resolved record
def run_metadata(argv: list[str] | None = None) -> dict:
    """Versions, git revision, date and command line: what it takes to tell two runs' setups apart."""
    from importlib import metadata

    from .. import __version__

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


def to_plain(v: Any) -> Any:
    """Dicts, lists and Python scalars only (what yaml.safe_dump writes)."""
    if isinstance(v, dict):
        return {str(k): to_plain(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [to_plain(x) for x in v]
    return v.item() if isinstance(v, np.generic) else v


def dump_resolved(config: dict, path: str | os.PathLike, meta: dict | None = None) -> Path:
    """Write the resolved config plus `_meta` (run_metadata() updated with `meta`) atomically; `path` is the
    file, or a directory to hold config.resolved.yaml. load_config reads the file back (it skips _meta)."""
    path = Path(path)
    if path.is_dir():
        path = path / "config.resolved.yaml"
    doc = to_plain({**config, "_meta": {**run_metadata(), **(meta or {})}})
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(yaml.safe_dump(doc, sort_keys=False, default_flow_style=None, width=110))
    os.replace(tmp, path)
    return path


__all__ = ["ConfigError", "EnvMaker", "check_workers", "dump_resolved", "env_constructor", "load_config",
           "job_config", "method_budget", "method_kwargs", "resolve_attr", "run_metadata", "schema", "validate"]
