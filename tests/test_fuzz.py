"""Fuzzing the user-facing surface with hostile inputs: configs (as dicts, YAML text, --set overrides and
through the CLI), `make(name, ...)` with odd hyperparameters for every registered optimizer, and `minimize`
with odd budgets, fitness return values and x0.

The contract checked for every generated input: it either works, or raises one of evograd's documented errors
(ParameterError, and its ConfigError) with a one-line message; never MemoryError, never a TypeError/ValueError
from inside numpy or torch, never a silent numpy cast (ComplexWarning is turned into an error here), never a
hang (each call runs under a 10 s alarm).

Hypothesis runs derandomized (a fixed sequence of examples, no example database), so the suite is
deterministic; sizes are drawn from small values and from absurd ones (1e12, 2**64, 10**400), never the middle
range that would fit in memory but take minutes to allocate. The whole module takes about 6 s (8 s with
interpreter start) on a shared 2-core machine.
"""
from __future__ import annotations

import contextlib
import copy
import io
import math
import signal
import sys
import warnings
from decimal import Decimal
from fractions import Fraction

import numpy as np
import pytest
import torch
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import evograd
from evograd import ParameterError
from evograd import functions as F
from evograd.experiments.config import ConfigError, load_config, validate
from evograd.optim.registry import available, get, hyperparameters, usable

pytestmark = pytest.mark.skipif(not hasattr(signal, "setitimer"), reason="the hang guard needs SIGALRM")
FUZZ = settings(derandomize=True, database=None, deadline=None, print_blob=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much,
                                       HealthCheck.function_scoped_fixture])
ComplexWarning = getattr(np, "exceptions", np).ComplexWarning


class Hang(Exception):
    """A call ran past the alarm."""


@contextlib.contextmanager
def guarded(seconds: float = 10.0):
    """No hang (SIGALRM), no silent complex cast, other warnings (NaN values, overflow) ignored."""
    def on_alarm(*_):
        raise Hang(f"no answer within {seconds} s")

    old = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            warnings.simplefilter("error", ComplexWarning)
            yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def clean(exc: BaseException, allowed=(ParameterError,)) -> None:
    """The error is a documented one, with a non-empty one-line message."""
    assert isinstance(exc, allowed), f"{type(exc).__name__} is not a documented error: {exc}"
    msg = str(exc)
    assert msg.strip() and "\n" not in msg, f"not a one-line message: {msg!r}"


def outcome(call, allowed=(ParameterError,)):
    """call()'s result, or None after checking that it raised a documented one-line error."""
    with guarded():
        try:
            return call()
        except allowed as exc:
            clean(exc, allowed)
            return None


# ------------------------------------------------------------------ odd values
HUGE = [10**12, 2**64, 10**400, 1e12, 1e300, -(10**12)]
SMALL_INTS = st.integers(-3, 40)
ODD_SCALARS = st.sampled_from([
    None, True, False, 0, 1, 2, 3, -1, 0.5, -0.5, 1e-300, 1e308, -1e308, float("nan"), float("inf"),
    -float("inf"), "", "abc", "1.5", "1e3", "nan", [], [1, None], [0.5, 0.5, 0.5], ["x"], {}, {"a": 1},
    *HUGE,
])
YAML_VALUES = st.one_of(ODD_SCALARS, SMALL_INTS, st.floats(-10, 10), st.text(max_size=6),
                        st.lists(st.one_of(SMALL_INTS, st.sampled_from([None, "a", 0.5, 10**12])), max_size=3))
# values an optimizer or a config section accepts, so that accepted settings get exercised too ("table" noise
# is left out: its 2**25-entry table takes a second to build)
CHOICES = ["ipop", "bipop", "uniform", "seeds", "dense", "adam", "sgd", "identity", "standardize", "centered_ranks",
           "nes", "cma", "rng", "anisotropic", "isotropic", "partial", "full", "brs", "v1", "v1-t", "v2", "v2-t",
           "exponential", "ess", "constant", "mlp", "linear", "relu", "tanh", "dask", "joblib", "clip"]
PLAUSIBLE = st.one_of(st.integers(1, 20), st.floats(0.01, 2.0), st.booleans(), st.none(), st.sampled_from(CHOICES))
# validate() takes a dict as yaml.safe_load returns it; plus a few Python values a programmatic config may hold
CONFIG_VALUES = st.one_of(YAML_VALUES, st.sampled_from([1 + 2j, object(), (1, 2), b"bytes", Decimal("1.5")]))
API_VALUES = st.one_of(YAML_VALUES, st.sampled_from([
    1 + 2j, np.complex128(1), np.array([1j, 0, 0]), np.array(["a", "b", "c"]), object(), np.float32(2),
    np.int64(4), Decimal("1.5"), Fraction(1, 3), np.zeros(3), np.ones((3, 3)), np.full(3, np.nan), (1, 2),
    torch.tensor(0.5), b"bytes",
]))

OPTIMIZERS = available()
POPULATION = [n for n in OPTIMIZERS if usable(n) and not get(n).needs_grad]
CONFIG_PATHS = [
    "name", "task", "task.function", "task.function.fn", "task.function.dim", "task.function.x0",
    "task.function.vectorized", "task.function.bogus", "budget", "budget.evals", "budget.seconds",
    "budget.env_steps", "threshold", "seeds", "jobs", "workers", "workers.n", "workers.backend",
    "workers.address", "workers.timeout", "workers.retries", "optimizer", "optimizer.name", "methods",
    "methods.a", "methods.a.name", "policy", "evaluation", "bogus", "_meta",
]
ENV_PATHS = [
    "task.env.id", "task.env.kwargs", "task.env.max_episode_steps", "policy", "policy.type",
    "policy.hidden_sizes", "policy.activation", "policy.obs_norm", "policy.box_head", "policy.bias",
    "evaluation.every", "evaluation.episodes", "budget.env_steps", "optimizer.episodes", "optimizer.policy",
]
FNS = ["evograd.core.functions:sphere", "evograd.core.functions:nope", "no_such_module_xyz:f", "evograd.core.functions",
       "", "math:pi", "evograd.core.functions:FUNCTIONS", "evograd.core.functions:rosenbrock"]


def base_config(kind: str, method: str) -> dict:
    if kind == "function":
        return {"name": "fz", "task": {"function": {"fn": "evograd.core.functions:sphere", "dim": 3, "x0": 0.5}},
                "budget": {"evals": 200}, "seeds": 2, "optimizer": {"name": method}}
    return {"name": "fz", "task": {"env": {"id": "CartPole-v1"}}, "budget": {"env_steps": 2000},
            "evaluation": {"every": 500, "episodes": 2}, "optimizer": {"name": method}}


def set_path(cfg: dict, path: str, value) -> None:
    node, parts = cfg, path.split(".")
    for p in parts[:-1]:
        nxt = node.get(p) if isinstance(node, dict) else None
        if not isinstance(nxt, dict):
            nxt = node[p] = {}
        node = nxt
    node[parts[-1]] = copy.deepcopy(value)


@st.composite
def configs(draw, yaml_only: bool = False):
    kind = draw(st.sampled_from(["function", "function", "env"]))
    methods = POPULATION + (["ppo", "reinforce"] if kind == "env" else [])
    method = draw(st.sampled_from(methods))
    cfg = base_config(kind, method)
    hyper = [f"optimizer.{p}" for p in (hyperparameters(get(method)) if method in OPTIMIZERS else
                                        ["n_steps", "n_envs", "batch_size", "n_epochs", "gamma", "learning_rate",
                                         "n_episodes", "hidden_sizes"])]
    paths = CONFIG_PATHS + 3 * hyper + (ENV_PATHS if kind == "env" else [])  # mostly the method's own keys
    values = st.one_of(PLAUSIBLE, YAML_VALUES if yaml_only else CONFIG_VALUES)
    for _ in range(draw(st.integers(0, 3))):  # 0: the valid base config, built and checked as it is
        path = draw(st.sampled_from(paths))
        value = draw(st.sampled_from(FNS)) if path.endswith(".fn") else draw(values)
        set_path(cfg, path, value)
    return cfg


def check_config_error(exc: ConfigError, file: str) -> None:
    clean(exc, (ConfigError,))
    assert str(exc).startswith(file + ": "), str(exc)


# ------------------------------------------------------------------ configs
@settings(FUZZ, max_examples=400)
@given(cfg=configs())
def test_fuzzed_configs_validate_or_name_the_key(cfg, tmp_path_factory, monkeypatch):
    monkeypatch.setattr(sys, "path", list(sys.path))
    with guarded():
        try:
            out = validate(cfg, file="fz.yaml")
        except ConfigError as exc:
            check_config_error(exc, "fz.yaml")
            return
    assert isinstance(out["seeds"], list) and out["seeds"]
    if "function" in out["task"] and out["budget"]["evals"] is not None:
        for block in [out["optimizer"], *out["methods"].values()]:
            if block:  # a budget below one generation is refused at load time
                from evograd.experiments.config import method_kwargs

                x0 = np.full(out["task"]["function"]["dim"], 0.5)
                opt = evograd.make(block["name"], x0=x0, seed=0, **method_kwargs(block))
                assert opt.popsize <= out["budget"]["evals"]


OVERRIDE_TEXT = st.one_of(
    st.sampled_from(["optimizer.popsize=1e12", "task.function.dim=1e12", "seeds=1e12", "budget.evals=1",
                     "optimizer.sigma0=1+2j", "optimizer.x0=[1,2,3]", "task.function.x0=[1, 2]", "=", "a.b",
                     "optimizer=ga", "optimizer.name=", "budget.evals=[", "budget.evals={a: 1}",
                     "methods.x.name=cmaes", "task=3", "budget.evals=3", "optimizer.popsize=2e3",
                     "optimizer.sigma=0.5", "optimizer.sigma0=nan", "seeds=[1, 1]", "policy.type=mlp"]),
    st.builds(lambda k, v: f"{k}={v}", st.sampled_from(CONFIG_PATHS + ["optimizer.popsize", "optimizer.sigma0"]),
              st.text(alphabet="01e+-.[]{}:, abnul", max_size=8)),
)


@settings(FUZZ, max_examples=200)
@given(cfg=configs(yaml_only=True), overrides=st.lists(OVERRIDE_TEXT, max_size=2),
       garbage=st.one_of(st.none(), st.text(max_size=40)))
def test_fuzzed_config_files_and_overrides_through_load_config_and_cli(cfg, overrides, garbage, tmp_path_factory,
                                                                         monkeypatch):
    monkeypatch.setattr(sys, "path", list(sys.path))
    tmp = tmp_path_factory.mktemp("fz")
    path = tmp / "fz.yaml"
    path.write_text(garbage if garbage is not None else yaml.safe_dump(cfg))
    with guarded():
        try:
            load_config(path, overrides)
            return  # a valid config: running it is the other tests' business
        except ConfigError as exc:
            check_config_error(exc, str(path))
            expected = str(exc)
    from evograd.cli import main

    err = io.StringIO()
    argv = ["run", str(path), "--out", str(tmp / "out"), "--quiet"] + [a for o in overrides for a in ("--set", o)]
    with guarded(), contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        rc = main(argv)
    assert rc == 2
    assert err.getvalue() == f"evograd: error: {expected}\n"


# ------------------------------------------------------------------ make(name, ...)
X0 = np.full(3, 0.5)


def one_generation(opt) -> None:
    X = opt.ask()
    assert X.ndim == 2 and X.shape[1] == opt.dim and len(X) >= 1
    values = F.sphere(X)
    opt.tell(values, 2 * X) if opt.needs_grad else opt.tell(values)


@settings(FUZZ, max_examples=600)
@given(name=st.sampled_from(OPTIMIZERS), params=st.data())
def test_make_with_odd_hyperparameters(name, params):
    cls = get(name)
    names = [p for p in hyperparameters(cls) if p != "x0"]
    kwargs = params.draw(st.dictionaries(st.sampled_from(names + ["bogus"]), st.one_of(PLAUSIBLE, API_VALUES),
                                         max_size=3))
    x0 = params.draw(st.one_of(st.just(X0), st.sampled_from([[0.5, 0.5], np.zeros((4, 3)), [1j, 0, 0]])))
    if not usable(name):  # an optional dependency that is not installed: an ImportError naming the extra
        outcome(lambda: evograd.make(name, x0=x0, **kwargs), allowed=(ParameterError, ImportError))
        return
    opt = outcome(lambda: evograd.make(name, x0=x0, **kwargs))
    if opt is not None:  # accepted hyperparameters must also run
        outcome(lambda: (one_generation(opt), one_generation(opt)))


# ------------------------------------------------------------------ minimize
RETURNS = {
    "sphere": lambda x: F.sphere(x), "none": lambda x: None, "str": lambda x: "1.5", "complex": lambda x: 1 + 2j,
    "nan": lambda x: float("nan"), "inf": lambda x: float("inf"), "list1": lambda x: [1.0],
    "list2": lambda x: [1.0, 2.0], "float32": lambda x: np.float32(1.5), "tensor": lambda x: torch.tensor(1.5),
    "bool": lambda x: True, "object": lambda x: object(), "decimal": lambda x: Decimal("1.5"),
    "complex_tensor": lambda x: torch.tensor(1 + 1j), "array2d": lambda x: np.ones((1, 1)),
}
VEC_RETURNS = {
    "sphere": lambda X: F.sphere(X), "nones": lambda X: [None] * len(X), "strs": lambda X: ["1.5"] * len(X),
    "complex": lambda X: np.ones(len(X)) * 1j, "short": lambda X: np.ones(max(len(X) - 1, 0)),
    "scalar": lambda X: 1.0, "nan": lambda X: np.full(len(X), np.nan), "none": lambda X: None,
    "tensor": lambda X: torch.ones(len(X)), "mixed": lambda X: [1.0] * (len(X) - 1) + ["x"],
}
ODD_X0 = [X0, [1.0, 2.0, 3.0], [1 + 1j, 0, 0], np.ones(3) + 0j, ["1", "2", "3"], [None] * 3, [], [[1, 2], [3]],
          5.0, np.full(3, np.nan), "abc", None, np.zeros((2, 3, 4)), [Decimal(1), Fraction(1, 2), 3]]


@settings(FUZZ, max_examples=400)
@given(name=st.sampled_from([n for n in OPTIMIZERS if usable(n)]), vectorized=st.booleans(), data=st.data(),
       max_evals=st.sampled_from([None, -1, 0, 1, 3, 7, 8, 40, 200, 2.5, "10", 10**12, float("nan")]),
       max_generations=st.sampled_from([None, None, 0, 1, 3, -2, 1.0]),
       max_seconds=st.sampled_from([None, None, None, 0.0, -1.0, 0.05, float("nan"), float("inf"), "1"]),
       x0=st.sampled_from(ODD_X0), target=st.sampled_from([None, None, 0.0, float("nan"), 1 + 1j, "0"]),
       n_jobs=st.sampled_from([1, 1, 0, -2, 1.5, "2", None]))
def test_minimize_with_odd_budgets_returns_and_x0(name, vectorized, data, max_evals, max_generations, max_seconds,
                                                  x0, target, n_jobs):
    fn = data.draw(st.sampled_from(sorted(VEC_RETURNS if vectorized else RETURNS)))
    fn = (VEC_RETURNS if vectorized else RETURNS)[fn]
    bounded = any(isinstance(b, (int, float)) and not isinstance(b, bool) and 0 < b < 1000 for b in
                  (max_evals, max_generations)) or (isinstance(max_seconds, float) and 0 < max_seconds < 1)
    if not bounded:  # every run this test starts must end soon
        max_generations = 2
    opt = outcome(lambda: evograd.make(name, x0=x0, seed=0))
    if opt is None:
        return
    res = outcome(lambda: evograd.minimize(fn, opt, max_evals=max_evals, max_generations=max_generations,
                                           max_seconds=max_seconds, vectorized=vectorized, target=target,
                                           n_jobs=n_jobs))
    if res is None:
        return
    assert isinstance(res.value, float)
    if isinstance(max_evals, int) and max_evals > 0:
        assert res.evals <= max_evals
    if max_seconds is None:  # no budget below one generation gets this far
        assert res.generations >= 1
    if res.x is not None:
        assert res.x.shape == (opt.dim,) and math.isfinite(res.value)


@pytest.mark.parametrize("name", POPULATION)
def test_every_population_optimizer_refuses_a_huge_population_before_allocating(name):
    size_param = {"ars": "n_directions", "cbo": "n_particles"}.get(name, "popsize")
    with guarded():
        with pytest.raises(ParameterError, match=rf"'{size_param}' parameter .* must fit in memory: .*iB") as info:
            evograd.make(name, x0=X0, **{size_param: 10**12})
    clean(info.value)


# ------------------------------------------------------------------ what fuzzing found, pinned
FUNCTION_CFG = base_config("function", "cmaes")
ENV_PPO = base_config("env", "ppo")
FOUND = [  # (what was wrong before, the call)
    ("an array value for a choice: numpy's 'truth value is ambiguous' ValueError",
     lambda: evograd.make("openai_es", x0=X0, optimizer=np.array([1j, 0, 0]))),
    ("a 2-d array in a message: a message over several lines",
     lambda: evograd.make("snes", x0=X0, sigma0=np.ones((3, 3)))),
    ("an int past float's range: OverflowError from float()",
     lambda: evograd.make("adam", x0=X0, lr=10**400)),
    ("an int past float's range in x0: OverflowError from numpy's cast",
     lambda: evograd.make("cmaes", x0=[10**400, 0, 0])),
    ("an int past float's range in a config float", lambda: validate(
        {**FUNCTION_CFG, "task": {"function": {"fn": "evograd.core.functions:sphere", "dim": 3, "x0": 10**400}}})),
    ("sigma0 that overflows the samples: a bare AssertionError from inside pycma at the first tell",
     lambda: one_generation(evograd.make("cmaes", x0=X0, sigma0=1e308))),
    ("a gradient optimizer without x0 in minimize: RuntimeError from ask",
     lambda: evograd.minimize(F.sphere, evograd.make("adam"), max_evals=5)),
    ("10**12 evaluation episodes for ppo: a hang building one env per episode",
     lambda: validate({**ENV_PPO, "evaluation": {"every": 500, "episodes": 10**12}})),
    ("10**12 reinforce episodes per update: the same hang",
     lambda: validate({**ENV_PPO, "optimizer": {"name": "reinforce", "n_episodes": 10**12}})),
    ("a cmaes seed of 2**32 or more: ValueError from numpy's RandomState",
     lambda: evograd.make("cmaes", x0=X0, seed=2**32)),
    ("the same seed in a config: accepted there, then the run failed",
     lambda: validate({**FUNCTION_CFG, "seeds": [0, 2**40]})),
    ("a huge cmaes popsize: pycma hangs computing its weights",
     lambda: evograd.make("cmaes", x0=X0, popsize=10**12)),
    ("a huge IPOP growth factor: the first restart hangs",
     lambda: evograd.make("cmaes", x0=X0, restarts="ipop", incpopsize=1e12)),
    ("an MLP too large for memory: torch's allocator error, under the wrong key",
     lambda: validate({**base_config("env", "ars"), "policy": {"type": "mlp", "hidden_sizes": [10**12]}})),
]


@pytest.mark.parametrize("call", [c for _, c in FOUND], ids=[w.split(":")[0] for w, _ in FOUND])
def test_what_fuzzing_found_is_a_documented_one_line_error(call):
    with guarded():
        with pytest.raises(ParameterError) as info:
            call()
    clean(info.value)


def test_tell_takes_an_int_past_float_range_as_inf():
    opt = evograd.make("snes", x0=X0, seed=0)
    n = len(opt.ask())
    with guarded():
        opt.tell([10**400] * (n - 1) + [1])
    assert opt.best.value == 1 and opt.nonfinite == n - 1


def test_a_yaml_control_character_is_one_line(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("task: \x08")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    check_config_error(info.value, str(path))
    assert "unacceptable character #x0008" in str(info.value)
