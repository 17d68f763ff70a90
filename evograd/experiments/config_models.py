"""The config's typed models (pydantic v2): one per section, one per method, and the JSON schema of both.

Sections (task.env, task.function, policy, budget, evaluation, workers, the top level) are written out here
with their defaults and ranges. Method blocks are generated: a population method's fields are its
optimizer constructor's parameters (names, annotations, defaults), PPO's and REINFORCE's are the fields of
PPOConfig/ReinforceConfig, so the optimizer or trainer stays the one source of truth. A generated model
checks names and types; ranges and choices are the constructor's (config_methods builds it once).
pydantic is imported here and only here, when a config is first checked: `import evograd` never loads it.
"""
from __future__ import annotations

import collections.abc
import dataclasses
import functools
import inspect
import numbers
import types
import typing
from typing import Annotated, Any, Literal, Optional, Union

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    Strict,
    StrictBool,
    StringConstraints,
    create_model,
    model_validator,
)

from ..core.validation import memory_problem
from .config_errors import ConfigError
from .references import RL_METHODS, resolve_attr, rl_settings


def _as_int(v: Any) -> Any:
    """YAML reads 2e6 as a float: an integral float is an int here, as is a numpy int."""
    if isinstance(v, float) and v.is_integer():
        return int(v)
    return int(v) if isinstance(v, numbers.Integral) and not isinstance(v, bool) else v


def Int(ge: int | None = None) -> Any:  # noqa: N802 (a type)
    """An int (never a bool, a string or 1.5), >= ge."""
    return Annotated[int, Strict(), Field(ge=ge), BeforeValidator(_as_int)]


def Float(gt: float | None = None) -> Any:  # noqa: N802 (a type)
    """A finite float (an int is one too; a bool or a string is not), > gt."""
    return Annotated[float, Strict(), Field(allow_inf_nan=False, gt=gt)]


PosInt, PosFloat = Int(1), Float(0)
Str = Annotated[str, StringConstraints(strict=True, pattern=r"\S")]  # not blank
Bool = StrictBool


def section():
    """A section left out of the file: its defaults, checked like a written one (so its rules apply)."""
    return Field(default_factory=dict, validate_default=True)


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid")

    @model_validator(mode="before")
    @classmethod
    def empty(cls, data: Any) -> Any:  # `budget:` with nothing after it is an empty section
        return {} if data is None else data


# ---------------------------------------------------------------- sections
class EnvTask(Section):
    """A Gymnasium id ("CartPole-v1", "evograd/LQR-v0") or a "module:attribute" env constructor."""
    id: Str
    kwargs: dict[str, Any] = {}
    max_episode_steps: Optional[PosInt] = None


class FunctionTask(Section):
    """A fitness function "module:attribute" of x (dim,), or of X (n, dim) when vectorized."""
    fn: Str
    dim: PosInt
    x0: Union[Float(), Annotated[list[Float()], Field(min_length=1)]] = 0.0
    vectorized: Bool = False

    @model_validator(mode="after")
    def resolvable(self) -> FunctionTask:
        if not callable(resolve_attr(self.fn, "fn")):
            raise ConfigError(f"{self.fn!r} is not callable", key="fn")
        too_big = memory_problem(self.dim, "dim")  # refused before x0 is broadcast to it
        if too_big:
            raise ConfigError(f"{too_big}, got {self.dim}", key="dim")
        if isinstance(self.x0, list) and len(self.x0) != self.dim:
            raise ConfigError(f"must be one float or a list of dim={self.dim} floats, got {len(self.x0)} values",
                              key="x0")
        return self


class Task(Section):
    """Exactly one of env, function."""
    env: EnvTask = None
    function: FunctionTask = None

    @model_validator(mode="after")
    def one_kind(self) -> Task:
        if len(self.model_fields_set) != 1:
            raise ConfigError("needs exactly one of env, function")
        return self

    @property
    def kind(self) -> str:
        return next(iter(self.model_fields_set))


class Policy(Section):
    """The policy network of env tasks (`policy: mlp` is short for `policy: {type: mlp}`)."""
    type: Literal["linear", "mlp"] = "linear"
    hidden_sizes: Annotated[list[PosInt], Field(min_length=1)] = [64, 64]
    activation: Literal["tanh", "relu", "elu", "gelu", "identity"] = "tanh"
    obs_norm: Bool = False
    box_head: Literal["clip", "tanh"] = "clip"
    bias: Bool = True

    @model_validator(mode="before")
    @classmethod
    def shorthand(cls, data: Any) -> Any:
        return {"type": data} if isinstance(data, str) else data


class Budget(Section):
    """When a run stops: env tasks count env steps, function tasks evaluations; seconds for either."""
    env_steps: Optional[PosInt] = None
    evals: Optional[PosInt] = None
    seconds: Optional[PosFloat] = None

    @model_validator(mode="after")
    def some(self) -> Budget:
        if self.env_steps is None and self.evals is None and self.seconds is None:
            raise ConfigError("needs at least one of env_steps, evals, seconds")
        return self


class Evaluation(Section):
    """Deterministic evaluations of env tasks: every N training env steps, on fixed-seed episodes. random_score:
    the return the compare report's normalized scores put at 0 (the threshold is 1); by default the mean
    evaluation return of the runs' untrained policies."""
    every: PosInt = 10_000
    episodes: PosInt = 10
    random_score: Optional[Float()] = None


class Workers(Section):
    """Where one run's populations are evaluated (see evograd.parallel.backends)."""
    backend: Literal["joblib", "dask"] = "joblib"
    n: PosInt = 1
    address: Optional[Str] = None
    timeout: Optional[PosFloat] = None
    retries: Int(0) = 2

    @model_validator(mode="after")
    def dask_address(self) -> Workers:
        if self.address is not None and self.backend != "dask":
            raise ConfigError("is a Dask scheduler address; set workers.backend: dask to use it", key="address")
        return self


def _seeds(v: int | list[int]) -> list[int]:
    if isinstance(v, int):  # n means seeds 0..n-1, one job each: refused before the list is built
        problem = memory_problem(v, f"seeds 0..{v - 1}", itemsize=36, unit="Python ints of 36 bytes")
        if problem:
            raise ConfigError(f"{problem}, got {v!r}")
        return list(range(v))
    if len(set(v)) != len(v):
        raise ConfigError(f"must be a non-empty list of distinct ints, got {v!r}")
    return v


Seeds = Annotated[Union[PosInt, Annotated[list[Int(0)], Field(min_length=1)]],
                  AfterValidator(_seeds)]


class Logging(Section):
    """Live scalars of every job: tensorboard true writes TensorBoard event files into each job's run folder
    (<out>/<label>/seed<k>/), a path into <path>/<label>/seed<k>/ (the tensorboard extra; see
    experiments/scalars.py)."""
    tensorboard: Union[Bool, Str] = False

    @model_validator(mode="after")
    def installed(self) -> Logging:
        if self.tensorboard:
            from .scalars import installed, missing_message

            if not installed():
                raise ConfigError(missing_message(), key="tensorboard")
        return self


class Config(Section):
    """An experiment: a task, a budget, and an `optimizer` block (evograd run) or `methods` (compare)."""
    name: Optional[Str] = None
    task: Task
    policy: Policy = section()
    budget: Budget = section()
    threshold: Optional[Float()] = None
    evaluation: Evaluation = section()
    seeds: Seeds = Field(default=1, validate_default=True)
    jobs: PosInt = 1
    workers: Workers = section()
    logging: Logging = section()
    optimizer: Any = Field(None, description="a method block, or its name alone (`optimizer: cmaes`)")
    methods: Any = Field(None, description="label (names the run directory) -> method block")

    @model_validator(mode="after")
    def task_kind(self) -> Config:
        env = self.task.kind == "env"
        for s in ("policy", "evaluation"):
            if not env and s in self.model_fields_set:
                raise ConfigError("only for env tasks", key=s)
        wrong = "evals" if env else "env_steps"
        if getattr(self.budget, wrong) is not None:
            raise ConfigError("env tasks count env steps (budget.env_steps)" if env else
                              "function tasks count evaluations (budget.evals)", key=f"budget.{wrong}")
        return self


# ---------------------------------------------------------------- method blocks
# arguments of the optimizers and trainers that the runner sets from other parts of the config
OPT_RUNNER_SET = {"x0": "the policy's initial parameters, or task.function.x0", "seed": "seeds",
                  "maximize": "the task (returns are maximized, function values minimized)"}
RL_RUNNER_SET = {"env": "task.env.id", "env_kwargs": "task.env.kwargs", "seed": "seeds",
                 "max_env_steps": "budget.env_steps", "max_seconds": "budget.seconds",
                 "target_return": "threshold", "eval_every": "evaluation.every",
                 "eval_episodes": "evaluation.episodes", "eval_seed": "its evaluation seeds",
                 "torch_threads": "its job setup", "callback": "its logging", "progress": "its logging",
                 "checkpoint": "its run directory", "resume": "--resume"}
RL_POLICY_OWNED = {"policy": "type", "hidden_sizes": "hidden_sizes", "activation": "activation",
                   "normalize_obs": "obs_norm"}


SB3 = "sb3"  # Stable-Baselines3's algorithms (the sb3 extra): experiments/sb3_config.py, sb3_method.py
SB3_ALGOS = ("PPO", "A2C", "SAC", "TD3", "DQN")


def method_names() -> list[str]:
    """What a config may name: the registered optimizers, the RL trainers, and sb3."""
    from ..optim.registry import available

    return available() + list(RL_METHODS) + [SB3]


def hints(name: str, env_task: bool, key: str) -> dict[str, str]:
    """Why a method block cannot set a key its optimizer or trainer takes."""
    out = {p: f"the runner sets it from {src}" for p, src in
           (RL_RUNNER_SET if name in RL_METHODS else OPT_RUNNER_SET).items()}
    if name in RL_METHODS:
        out.update({p: f"set {key}.policy.{f} instead" for p, f in RL_POLICY_OWNED.items()})
        out["episodes"] = "episodes per candidate are for population methods"
    elif not env_task:
        out["episodes"] = "function tasks have no episodes"
    if not env_task:
        out["policy"] = "only for env tasks"
    if key == "optimizer":  # (in `methods`, a block's budget is taken out before its model sees it)
        out["budget"] = "a budget of its own is for the blocks of `methods`; `evograd run` uses the top-level budget"
    return out


@functools.lru_cache(maxsize=None)
def method_model(name: str, env_task: bool) -> type[BaseModel]:
    """The model of a `name` block (policy and episodes only in env tasks), from the constructor's or the
    trainer config's parameters."""
    if name == SB3:
        return _sb3_model(env_task)
    fields: dict[str, Any] = {"name": (Literal[name], ...)}
    if env_task:
        fields["policy"] = (Policy, Field(None, description="over the top-level policy"))
        if name not in RL_METHODS:
            fields["episodes"] = (PosInt, Field(1, description="episodes per candidate"))
    alias = name not in RL_METHODS and sigma_is_alias(name)
    for p, annotation, default in _parameters(name):
        extra = {"description": "also written sigma"} if p == "sigma0" and alias else {}
        fields[p] = (yaml_type(annotation), Field(... if default is inspect.Parameter.empty else _plain(default),
                                                  **extra))
    model = create_model(name, __config__=ConfigDict(extra="forbid"), **fields)
    owner = "trainer's config" if name in RL_METHODS else "optimizer's constructor"
    model.__doc__ = (f"A {name} block: the {owner} parameters (ranges and choices are checked by it), and "
                     f"what the runner needs.")
    return model


def _sb3_model(env_task: bool) -> type[BaseModel]:
    fields: dict[str, Any] = {"name": (Literal[SB3], ...)}
    if env_task:
        fields["policy"] = (Policy, Field(None, description="over the top-level policy; SB3's net_arch and "
                                                            "activation_fn"))
    fields["algo"] = (Literal[SB3_ALGOS], Field(..., description="the Stable-Baselines3 algorithm"))
    fields["hyperparams"] = (Union[Literal["zoo"], dict[str, Any]], Field(
        "zoo", description="'zoo': rl-baselines3-zoo's tuned settings for the task (experiments/sb3_zoo.py), or "
                           "the algorithm's keyword arguments (plus the zoo's n_envs, normalize, noise_type, "
                           "noise_std); {} is SB3's defaults"))
    model = create_model(SB3, __config__=ConfigDict(extra="forbid"), **fields)
    model.__doc__ = ("An sb3 block: a Stable-Baselines3 algorithm trained on the same env-step budget and seeds and "
                     "evaluated like every other method (the sb3 extra).")
    return model


def sigma_is_alias(name: Any) -> bool:
    """Whether `sigma` in a block of optimizer `name` means sigma0 (the optimizer has no `sigma`, nor an old
    parameter of that name whose error must name its new one)."""
    from ..optim.registry import available, get, hyperparameters, renamed_parameters

    if not (isinstance(name, str) and name in available()):
        return True  # (not an optimizer: the block's check names what is wrong with it)
    cls = get(name)
    return "sigma" not in hyperparameters(cls) and "sigma" not in renamed_parameters(cls)


def _parameters(name: str) -> list[tuple[str, Any, Any]]:
    """(name, annotation, default) of every parameter a `name` block may set."""
    if name in RL_METHODS:
        cls = rl_settings(name)
        hints_ = _hints(cls)
        return [(f.name, hints_.get(f.name, Any), f.default) for f in dataclasses.fields(cls)
                if f.name not in RL_RUNNER_SET and f.name not in RL_POLICY_OWNED]
    from ..optim.registry import get, hyperparameters

    cls = get(name)
    params, hints_ = inspect.signature(cls.__init__).parameters, _hints(cls.__init__)
    return [(p, hints_.get(p, Any), params[p].default) for p in hyperparameters(cls) if p not in OPT_RUNNER_SET]


def _hints(obj) -> dict[str, Any]:
    try:
        return typing.get_type_hints(obj)
    except Exception:  # noqa: BLE001 (an annotation naming what only a type checker imports: no type check)
        return {}


def yaml_type(annotation: Any) -> Any:
    """The config's type for a Python annotation: YAML-expressible parts kept (a callable cannot be written in
    YAML), numbers as the config reads them; anything else is left to the constructor (Any)."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin in (Union, types.UnionType):
        parts = [yaml_type(a) for a in args if not _is_callable(a)]
        return Any if not parts or Any in parts else Union[tuple(parts)]
    simple = {int: Int(), float: Float(), bool: Bool, str: Str, type(None): type(None), dict: dict[str, Any]}
    if annotation in simple:
        return simple[annotation]
    if origin is dict:
        return dict[str, Any]
    if origin in (list, tuple) and args:
        return list[yaml_type(args[0])]
    if origin is Literal:
        return annotation
    return Any


def _is_callable(a: Any) -> bool:
    return a is typing.Callable or a is collections.abc.Callable or typing.get_origin(a) is collections.abc.Callable


def _plain(v: Any) -> Any:
    return [_plain(x) for x in v] if isinstance(v, tuple) else v


def schema() -> dict:
    """The JSON schema of a config file: the sections, and every method's block (env-task form; gradient
    methods run on env tasks whose env offers a differentiable rollout, see experiments/gradient.py)."""
    names = method_names()
    own = Field(None, description="in `methods` only: this method's own budget, its keys over the top level's")
    models = (create_model(n, __base__=method_model(n, True), budget=(Optional[Budget], own)) for n in names)
    block = Annotated[Union[tuple(models)], Field(discriminator="name")]
    full = create_model("Config", __base__=Config, __doc__=Config.__doc__,
                        optimizer=(Optional[block], Field(None, description="the method of `evograd run`",
                                                          json_schema_extra={"not": {"required": ["budget"]}})),
                        methods=(Optional[dict[str, block]],
                                 Field(None, description="label (names the run directory) -> method block")))
    return full.model_json_schema()
