"""The YAML config layer: every shipped config validates, and every kind of mistake is reported before
anything runs, with the file name and the dotted key."""
import sys
import textwrap
from pathlib import Path

import pytest
import yaml

import evograd
from evograd.experiments.config import ConfigError, dump_resolved, load_config, method_kwargs, resolve_attr

REPO = Path(__file__).resolve().parents[2]
CONFIGS = sorted((REPO / "configs").glob("*.yaml"))
ES = ("openai_es", "cmaes", "ga", "cbo", "snes", "ars")

BASE = """\
task:
  env: {id: CartPole-v1}
budget: {env_steps: 20000}
evaluation: {every: 5000, episodes: 2}
seeds: 2
methods:
  cmaes: {name: cmaes, sigma0: 0.5}
  ppo: {name: ppo, n_envs: 2, n_steps: 32, batch_size: 64}
"""
PPO = "  ppo: {name: ppo, n_envs: 2, n_steps: 32, batch_size: 64}"


@pytest.fixture(autouse=True)
def _isolated(tmp_path, monkeypatch):
    # resolve_attr may put the working directory on sys.path; MuJoCo envs write MUJOCO_LOG.TXT into it
    monkeypatch.setattr(sys, "path", list(sys.path))
    monkeypatch.chdir(tmp_path)


def write(tmp_path, text, name="exp.yaml"):
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def error(path, overrides=()):
    with pytest.raises(ConfigError) as info:
        load_config(path, overrides)
    return str(info.value)


def edit(text, old, new):
    assert old in text
    return text.replace(old, new)


# ------------------------------------------------------------------ shipped configs
def test_configs_exist():
    assert {p.name for p in CONFIGS} >= {"quickstart.yaml", "lunarlander_linear.yaml", "pendulum.yaml",
                                         "halfcheetah_linear.yaml", "lqr.yaml", "custom_fitness.yaml"}


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_shipped_config_validates(path, monkeypatch):
    if "function" in yaml.safe_load(path.read_text())["task"]:
        monkeypatch.chdir(REPO)  # "examples.custom_fitness:..." resolves from the repository root
    cfg = load_config(path)
    assert path.read_text().startswith("#"), "every config opens with a comment saying what it is for"
    assert cfg["name"] == path.stem
    assert cfg["methods"] and cfg["optimizer"] is not None
    for block in [cfg["optimizer"], *cfg["methods"].values()]:
        assert block["name"] in evograd.available() + ["ppo", "reinforce", "sb3"]
        assert "sigma" not in method_kwargs(block) or block["name"] == "cbo"
    yaml.safe_dump(cfg)  # plain data only


def test_quickstart_contract():
    cfg = load_config(REPO / "configs" / "quickstart.yaml")
    assert cfg["task"]["env"]["id"] == "CartPole-v1" and cfg["policy"]["type"] == "linear"
    assert list(cfg["methods"]) == [*ES, "ppo"]
    assert all(b["name"] == label for label, b in cfg["methods"].items())
    assert cfg["budget"]["env_steps"] == 100_000 and cfg["threshold"] == 475
    assert 5000 <= cfg["evaluation"]["every"] <= 10_000 and cfg["evaluation"]["episodes"] == 10
    assert cfg["seeds"] == [0, 1, 2] and cfg["jobs"] == 2
    ppo = cfg["methods"]["ppo"]
    assert ppo["policy"]["type"] == "linear" and ppo["learning_rate"] == "lin_1e-3" and ppo["n_envs"] == 8


def test_long_configs_take_a_sigma_override():
    for name in ("lunarlander_linear.yaml", "halfcheetah_linear.yaml"):
        cfg = load_config(REPO / "configs" / name, ["optimizer.sigma=0.05"])
        assert cfg["optimizer"]["sigma0"] == 0.05 and "sigma" not in cfg["optimizer"]
        assert cfg["optimizer"]["policy"]["obs_norm"] is True


# ------------------------------------------------------------------ what a resolved config holds
def test_resolution_fills_defaults_and_merges_policies(tmp_path):
    text = edit(BASE, "  cmaes: {name: cmaes, sigma0: 0.5}",
                "  cmaes: {name: cmaes, sigma: 0.5, policy: {type: mlp, hidden_sizes: [8]}}")
    cfg = load_config(write(tmp_path, text + "policy: {obs_norm: true}\n"))
    cma = cfg["methods"]["cmaes"]
    assert cma["sigma0"] == 0.5 and "sigma" not in cma and cma["episodes"] == 1 and cma["popsize"] is None
    assert cma["policy"] == {"type": "mlp", "hidden_sizes": [8], "activation": "tanh", "obs_norm": True,
                             "box_head": "clip", "bias": True}
    ppo = cfg["methods"]["ppo"]
    assert ppo["policy"]["type"] == "linear" and ppo["gamma"] == 0.99 and "episodes" not in ppo
    assert "seed" not in ppo and "max_env_steps" not in ppo and "hidden_sizes" not in ppo
    assert cfg["seeds"] == [0, 1] and cfg["jobs"] == 1 and cfg["threshold"] is None
    assert cfg["optimizer"] is None


def test_scientific_notation_reads_as_numbers(tmp_path):
    text = edit(BASE, "env_steps: 20000", "env_steps: 2e4")
    text = edit(text, "batch_size: 64}", "batch_size: 64, learning_rate: 3e-4}")
    cfg = load_config(write(tmp_path, text))
    assert cfg["budget"]["env_steps"] == 20000 and cfg["methods"]["ppo"]["learning_rate"] == 3e-4


def test_function_task(tmp_path):
    (tmp_path / "fitmod.py").write_text("def f(x):\n    return float((x ** 2).sum())\n")
    path = write(tmp_path, """\
        task:
          function: {fn: "fitmod:f", dim: 3, x0: [1, 2, 3]}
        budget: {evals: 500}
        threshold: 1.0e-3
        optimizer: {name: snes, sigma: 0.3}
        """)
    cfg = load_config(path)
    assert cfg["task"]["function"]["x0"] == [1.0, 2.0, 3.0]
    assert cfg["policy"] is None and cfg["evaluation"] is None
    assert cfg["optimizer"]["sigma0"] == 0.3 and "episodes" not in cfg["optimizer"]
    assert "task.function.x0" in error(path, ["task.function.dim=2"])
    assert "budget.env_steps" in error(path, ["budget.env_steps=100"])
    msg = error(path, ["policy.type=mlp"])
    assert "exp.yaml" in msg and "policy: only for env tasks" in msg
    assert "optimizer.name" in error(path, ["optimizer.name=ppo"])


# ------------------------------------------------------------------ mistakes
@pytest.mark.parametrize("old,new,key,words", [
    ("seeds: 2", "seeds: 2\npolcy: {type: mlp}", "polcy", "did you mean 'policy'"),
    ("seeds: 2", "seeds: 2\npolicy: {hiden_sizes: [8]}", "policy.hiden_sizes", "did you mean 'hidden_sizes'"),
    ("sigma0: 0.5}", "sigma0: 0.5, popsiz: 8}", "methods.cmaes.popsiz", "did you mean 'popsize'"),
    ("env_steps: 20000}", "env_steps: 20000, evalz: 3}", "budget.evalz", "did you mean 'evals'"),
    ("env_steps: 20000", "env_steps: many", "budget.env_steps", "must be an int >= 1"),
    ("episodes: 2}", "episodes: 0}", "evaluation.episodes", "must be an int >= 1, got 0"),
    ("seeds: 2", "seeds: 2\njobs: 1.5", "jobs", "must be an int >= 1"),
    ("seeds: 2", "seeds: 2\npolicy: {type: cnn}", "policy.type", "must be one of 'linear', 'mlp'"),
    ("seeds: 2", "seeds: 2\nthreshold: high", "threshold", "must be a float"),
    ("name: cmaes", "name: cmaess", "methods.cmaes.name", "did you mean 'cmaes'"),
    ("sigma0: 0.5}", "sigma0: 0.5, popsize: 1}", "methods.cmaes.popsize", "must be an int >= 2, got 1"),
    ("sigma0: 0.5}", "sigma0: -0.5}", "methods.cmaes.sigma0", "must be a float > 0"),
    ("sigma0: 0.5}", "sigma: -0.5}", "methods.cmaes.sigma", "must be a float > 0"),
    ("sigma0: 0.5}", "sigma0: 0.5, sigma: 0.4}", "methods.cmaes.sigma", "not both"),
    ("sigma0: 0.5}", "sigma0: 0.5, seed: 3}", "methods.cmaes.seed", "runner"),
    ("sigma0: 0.5}", "sigma0: 0.5, episodes: 0}", "methods.cmaes.episodes", "must be an int >= 1"),
    ("{name: cmaes,", "{name: adam,", "methods.cmaes.name", "needs gradients"),
    ("n_steps: 32", "n_steps: 0", "methods.ppo.n_steps", "must be an int >= 1, got 0"),
    ("n_steps: 32", "n_steps: many", "methods.ppo.n_steps", "must be an int"),
    ("n_steps: 32", "n_steps: 32, learning_rate: fast", "methods.ppo.learning_rate", "schedule"),
    ("n_steps: 32", "n_steps: 32, seed: 1", "methods.ppo.seed", "seeds"),
    ("n_steps: 32", "n_steps: 32, hidden_sizes: [8]", "methods.ppo.hidden_sizes", "ppo.policy.hidden_sizes"),
    ("n_steps: 32", "n_steps: 32, normalize_obs: true", "methods.ppo.normalize_obs", "ppo.policy.obs_norm"),
    (PPO, "  ppo: {name: reinforce, n_episodes: 0}", "methods.ppo.n_episodes", "must be an int >= 1, got 0"),
    (PPO, "  ppo: {name: reinforce}\npolicy: {obs_norm: true}", "methods.ppo.policy.obs_norm", "top-level"),
    ("  cmaes:", "  my run:", "methods.my run", "labels name run directories"),
    ("n_steps: 32", "n_steps: 32, episodes: 2", "methods.ppo.episodes", "population methods"),
    ("n_steps: 32", "n_steps: 32, n_epoch: 2", "methods.ppo.n_epoch", "did you mean 'n_epochs'"),
    ("n_steps: 32", "n_steps: 32, policy: {box_head: tanh}", "methods.ppo.policy.box_head", "clip"),
    ("n_steps: 32", "n_steps: 32, init_params: none.npz", "methods.ppo.init_params", "numpy cannot read"),
    ("n_steps: 32", "n_steps: 32, norm_init_count: -1", "methods.ppo.norm_init_count", "must be a float >= 0"),
    ("id: CartPole-v1", "id: CartPol-v1", "task.env.id", "CartPole"),
    ("budget: {env_steps: 20000}", "budget: {}", "budget", "needs at least one of env_steps, evals, seconds"),
    ("budget: {env_steps: 20000}", "", "budget", "needs at least one of env_steps, evals, seconds"),
    ("budget: {env_steps: 20000}", "budget: {env_steps: 20000, evals: 5}", "budget.evals", "env steps"),
    ("seeds: 2", "seeds: [0, 0]", "seeds", "distinct"),
])
def test_mistakes_name_file_and_key(tmp_path, old, new, key, words):
    msg = error(write(tmp_path, edit(BASE, old, new)))
    assert msg.startswith(f"{tmp_path / 'exp.yaml'}: {key}: "), msg
    assert words in msg


def test_bad_yaml_syntax_names_file_and_line(tmp_path):
    msg = error(write(tmp_path, "task:\n  env: {id: CartPole-v1\nbudget: {env_steps: 10}\n", "broken.yaml"))
    assert "broken.yaml" in msg and "line 3" in msg and "invalid YAML" in msg
    msg = error(write(tmp_path, BASE + "seeds: 3\n", "dup.yaml"))
    assert "dup.yaml" in msg and "duplicate key 'seeds'" in msg and "line 9" in msg
    assert "must be a mapping" in error(write(tmp_path, "- 1\n- 2\n", "list.yaml"))
    assert "cannot read" in error(tmp_path / "missing.yaml")


def test_yaml_is_loaded_safely(tmp_path):
    marker = tmp_path / "pwned"
    text = edit(BASE, "seeds: 2", f"seeds: !!python/object/apply:os.system ['touch {marker}']")
    msg = error(write(tmp_path, text))
    assert "exp.yaml" in msg and "python/object" in msg and not marker.exists()
    msg = error(write(tmp_path, "task: !!python/object:collections.OrderedDict {}\n"))
    assert "python/object" in msg


# ------------------------------------------------------------------ overrides
def test_overrides_apply_and_are_validated(tmp_path):
    path = write(tmp_path, BASE)
    cfg = load_config(path, ["methods.cmaes.popsize=20", "budget.env_steps=50000", "seeds=[3, 5]",
                             "methods.cmaes.sigma=0.2", "methods.snes.name=snes",
                             "policy.hidden_sizes=[8, 8]"])
    assert cfg["methods"]["cmaes"]["popsize"] == 20 and cfg["methods"]["cmaes"]["sigma0"] == 0.2
    assert cfg["budget"]["env_steps"] == 50000 and cfg["seeds"] == [3, 5] and "snes" in cfg["methods"]
    assert cfg["policy"]["hidden_sizes"] == [8, 8]
    msg = error(path, ["budget.env_steps=-5"])
    assert "exp.yaml: budget.env_steps: must be an int >= 1" in msg and "--set budget.env_steps=-5" in msg
    assert "methods.cmaes.popsize: must be an int >= 2, got 1" in error(path, ["methods.cmaes.popsize=1"])
    assert "did you mean 'policy'" in error(path, ["polcy.type=mlp"])
    assert "methods.cmaes.popsiz" in error(path, ["methods.cmaes.popsiz=4"])
    assert "not a mapping" in error(path, ["seeds.first=1"])
    assert "key.path=value" in error(path, ["budget"])
    msg = error(path, ["methods.ppo.n_steps=0"])
    assert "exp.yaml: methods.ppo.n_steps: must be an int >= 1, got 0" in msg
    assert msg.endswith("(from --set methods.ppo.n_steps=0)")
    assert "invalid YAML" in error(path, ["seeds=[1, 2"])
    cfg = load_config(path, ["optimizer=ars", "optimizer.sigma=0.1"])  # the shorthand, then one key of it
    assert cfg["optimizer"]["name"] == "ars" and cfg["optimizer"]["sigma0"] == 0.1


# ------------------------------------------------------------------ resolve_attr
def test_resolve_attr(tmp_path):
    (tmp_path / "good_mod.py").write_text("import math\ndef fitness(x):\n    return 0.0\n"
                                          "class K:\n    c = math.pi\n")
    (tmp_path / "bad_mod.py").write_text("raise RuntimeError('boom')\n")
    assert resolve_attr("good_mod:fitness")([1.0]) == 0.0  # the working directory is on the path
    assert resolve_attr("good_mod:K.c") > 3.14
    with pytest.raises(ConfigError, match="expected 'module:attribute'"):
        resolve_attr("good_mod.fitness")
    with pytest.raises(ConfigError, match="no module named 'no_such_mod'"):
        resolve_attr("no_such_mod:f")
    with pytest.raises(ConfigError, match="has no attribute 'fitnes' \\(did you mean 'fitness'\\?\\)"):
        resolve_attr("good_mod:fitnes")
    with pytest.raises(ConfigError, match="RuntimeError: boom"):
        resolve_attr("bad_mod:f")


def test_examples_resolve_from_repo_root(monkeypatch):
    monkeypatch.chdir(REPO)
    fn = resolve_attr("examples.custom_fitness:styblinski_tang")
    assert fn.__name__ == "styblinski_tang"


def test_env_constructor_by_module_attribute(tmp_path):
    (tmp_path / "envmod.py").write_text("import gymnasium as gym\n"
                                        "def make():\n    return gym.make('CartPole-v1')\n")
    cfg = load_config(write(tmp_path, edit(BASE, "id: CartPole-v1", 'id: "envmod:make"')))
    assert cfg["task"]["env"]["id"] == "envmod:make"
    assert "task.env.id" in error(write(tmp_path, edit(BASE, "id: CartPole-v1", 'id: "envmod:mak"')))


# ------------------------------------------------------------------ the resolved record
def test_dump_resolved_round_trips(tmp_path):
    cfg = load_config(write(tmp_path, BASE))
    out = tmp_path / "run"
    out.mkdir()
    path = dump_resolved(cfg, out, {"command": "compare"})
    assert path == out / "config.resolved.yaml"
    doc = yaml.safe_load(path.read_text())
    meta = doc["_meta"]
    assert set(meta["versions"]) == {"python", "numpy", "torch", "gymnasium", "cma", "evograd"}
    assert meta["versions"]["evograd"] == evograd.__version__ and meta["command"] == "compare"
    assert meta["git_revision"] == "unknown" or len(meta["git_revision"]) == 40
    assert meta["date"] and isinstance(meta["argv"], list)
    assert load_config(path) == cfg


def test_env_kwargs_and_missing_methods(tmp_path):
    import pickle

    from evograd.experiments.config import env_constructor

    cfg = load_config(REPO / "configs" / "lqr.yaml")
    make = pickle.loads(pickle.dumps(env_constructor(cfg["task"]["env"])))
    assert make.__name__ == "evograd/LQR-v0" and make().unwrapped.state_dim == 4
    msg = error(REPO / "configs" / "lqr.yaml", ["task.env.kwargs.state_dim=0"])
    assert "lqr.yaml: task.env.kwargs.state_dim: must be an int >= 1, got 0" in msg
    text = BASE.split("methods:")[0]
    assert "needs an optimizer block" in error(write(tmp_path, text))


# ------------------------------------------------------------------ hostile values (issue 12, item 4)
FUNCTION_TASK = """\
task:
  function: {fn: "evograd.core.functions:sphere", dim: 4}
budget: {evals: 200}
optimizer: {name: cmaes, sigma0: 1.0}
"""


@pytest.mark.parametrize("override, key, what", [
    ("task.function.dim=1e12", "task.function.dim", "dim = 1e+12 float64 values = 7.28 TiB"),
    ("optimizer.popsize=1e12", "optimizer.popsize", "popsize x dim = 1000000000000 x 4 = 4e+12 float64 values"),
    ("optimizer.popsize=1000000000000", "optimizer.popsize", "popsize x dim = 1000000000000 x 4"),
    ("seeds=1e12", "seeds", "seeds 0..999999999999 = 1e+12 Python ints of 36 bytes"),
    ("optimizer={name: cbo, n_particles: 1e12}", "optimizer.n_particles", "n_particles x dim"),
    ("optimizer={name: cmaes, restarts: ipop, incpopsize: 1e12}", "optimizer.incpopsize",
     "popsize x incpopsize x dim (after one restart) = 8 x 1e+12 x 4"),
])
def test_memory_infeasible_sizes_are_refused_with_the_key_and_the_size(tmp_path, override, key, what):
    msg = error(write(tmp_path, FUNCTION_TASK), [override])
    assert msg.startswith(f"{tmp_path / 'exp.yaml'}: {key}: must fit in memory: {what}")
    assert "more than half of this machine's" in msg and "\n" not in msg


def test_memory_infeasible_env_sizes_name_their_key(tmp_path):
    path = write(tmp_path, BASE)
    assert "policy.hidden_sizes: must fit in memory: the MLP's parameters" in error(
        path, ["policy.type=mlp", "policy.hidden_sizes=[1e12]"])
    assert "evaluation.episodes: must fit in memory" in error(path, ["evaluation.episodes=1e12"])
    assert "methods.cmaes.episodes: must fit in memory: popsize x episodes" in error(
        path, ["methods.cmaes.episodes=1e12"])
    assert "methods.ppo.n_envs: must fit in memory: n_steps x n_envs" in error(path, ["methods.ppo.n_envs=1e12"])


def test_budget_below_one_generation_is_refused(tmp_path):
    msg = error(write(tmp_path, FUNCTION_TASK), ["budget.evals=3"])
    assert msg.endswith("budget.evals: must be an int >= 8 (one generation of optimizer: cmaes asks for 8 "
                        "candidates at a time), got 3 (from --set budget.evals=3)")
    assert load_config(write(tmp_path, FUNCTION_TASK), ["budget.evals=8"])["budget"]["evals"] == 8


def test_integral_float_hyperparameters_are_read_as_ints(tmp_path):
    # YAML reads 1e1 as a float; int hyperparameters take it as the top-level int fields do (`evals: 2e6`)
    cfg = load_config(write(tmp_path, FUNCTION_TASK), ["optimizer.popsize=1e1"])
    assert cfg["optimizer"]["popsize"] == 10 and isinstance(cfg["optimizer"]["popsize"], int)
    assert "optimizer.popsize: must be an int >= 2, got 1.5" in error(write(tmp_path, FUNCTION_TASK),
                                                                      ["optimizer.popsize=1.5"])
    cfg = load_config(write(tmp_path, BASE), ["methods.ppo.n_steps=3.2e1"])
    assert cfg["methods"]["ppo"]["n_steps"] == 32


@pytest.mark.parametrize("text", [FUNCTION_TASK.replace("dim: 4", "dim: 1e12"), "task: \x08"])
def test_cli_prints_hostile_config_errors_as_one_line(tmp_path, capsys, text):
    from evograd.cli import main

    path = write(tmp_path, text)
    assert main(["run", str(path), "--out", str(tmp_path / "out"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"evograd: error: {path}: ") and err.count("\n") == 1
    assert not (tmp_path / "out").exists()


# ------------------------------------------------------------------ typed models (pydantic), the schema
def test_import_evograd_leaves_pydantic_for_the_first_config(tmp_path):
    import subprocess

    code = ("import sys, evograd, evograd.cli; assert 'pydantic' not in sys.modules; "
            "from evograd.experiments.config import validate; assert 'pydantic' in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


@pytest.mark.parametrize("old,new,key,words", [
    ("seeds: 2", "seeds: 2\nworkers: {n: true}", "workers.n", "must be an int >= 1, got True"),
    ("seeds: 2", "seeds: 2\nworkers: {timeout: 0}", "workers.timeout", "must be a float > 0 or null, got 0"),
    ("seeds: 2", "seeds: [0, x]", "seeds", "must be an int >= 1 or a non-empty list of ints >= 0, got [0, 'x']"),
    ("seeds: 2", "seeds: 2\npolicy: {hidden_sizes: [8, 0]}", "policy.hidden_sizes[1]", "must be an int >= 1, got 0"),
    ("seeds: 2", "seeds: 2\npolicy: {obs_norm: yes please}", "policy.obs_norm", "must be a bool, got 'yes please'"),
    ("id: CartPole-v1}", "id: CartPole-v1, kwargs: {1: 2}}", "task.env.kwargs", "string keys, got the key 1"),
    ("id: CartPole-v1}", "id: CartPole-v1, max_episode_steps: 2.5}", "task.env.max_episode_steps",
     "must be an int >= 1 or null, got 2.5"),
    ("sigma0: 0.5}", "sigma0: 0.5, separable: maybe}", "methods.cmaes.separable", "must be a bool, got 'maybe'"),
    ("sigma0: 0.5}", "sigma0: 0.5, max_restarts: [1]}", "methods.cmaes.max_restarts", "got [1]"),
    ("n_steps: 32", "n_steps: 32, gamma: high", "methods.ppo.gamma", "must be a float in the range [0.0, 1.0]"),
    ("n_steps: 32", "n_steps: 32, target_kl: [1]", "methods.ppo.target_kl", "got [1]"),
    ("n_steps: 32", "n_steps: 32, policy: {type: cnn}", "methods.ppo.policy.type", "must be one of 'linear', 'mlp'"),
    ("n_steps: 32", "n_steps: 32, resume: true", "methods.ppo.resume", "the runner sets it from --resume"),
])
def test_wrong_types_name_the_key_the_value_and_what_is_expected(tmp_path, old, new, key, words):
    msg = error(write(tmp_path, edit(BASE, old, new)))
    assert msg.startswith(f"{tmp_path / 'exp.yaml'}: {key}: "), msg
    assert words in msg and "\n" not in msg


def test_method_blocks_are_generated_from_the_constructors_and_trainer_configs():
    import dataclasses
    import inspect

    from evograd.experiments.config_models import OPT_RUNNER_SET, RL_POLICY_OWNED, RL_RUNNER_SET, method_model
    from evograd.optim.registry import get, hyperparameters
    from evograd.rl.settings import PPOConfig, ReinforceConfig

    for name in ES:
        cls, model = get(name), method_model(name, False)
        params = inspect.signature(cls.__init__).parameters
        expected = [p for p in hyperparameters(cls) if p not in OPT_RUNNER_SET]
        assert list(model.model_fields) == ["name", *expected], name
        for p in expected:  # one source of defaults: the constructor's
            default = params[p].default
            assert model.model_fields[p].default == (list(default) if isinstance(default, tuple) else default)
        assert list(method_model(name, True).model_fields)[:3] == ["name", "policy", "episodes"]
    for name, settings in (("ppo", PPOConfig), ("reinforce", ReinforceConfig)):
        fields = {f.name: f.default for f in dataclasses.fields(settings)
                  if f.name not in RL_RUNNER_SET and f.name not in RL_POLICY_OWNED}
        model = method_model(name, True)
        assert list(model.model_fields) == ["name", "policy", *fields]
        assert all(model.model_fields[k].default == (list(v) if isinstance(v, tuple) else v)
                   for k, v in fields.items())


def test_ppo_init_params_is_a_weights_file_in_a_config(tmp_path):
    import numpy as np

    np.savez(tmp_path / "w.npz", log_std=np.zeros(1))  # read (and its type checked) when the config loads
    cfg = load_config(write(tmp_path, BASE), ["methods.ppo.init_params=w.npz"])
    assert cfg["methods"]["ppo"]["init_params"] == "w.npz" and cfg["methods"]["ppo"]["norm_init_count"] == 1e-4


def test_resolved_blocks_hold_every_hyperparameter_with_the_types_the_constructor_takes(tmp_path):
    cfg = load_config(write(tmp_path, BASE), ["methods.cmaes.popsize=2e1", "methods.ppo.gamma=1"])
    cma, ppo = cfg["methods"]["cmaes"], cfg["methods"]["ppo"]
    assert cma["popsize"] == 20 and isinstance(cma["popsize"], int) and cma["max_restarts"] == 9
    assert ppo["gamma"] == 1.0 and isinstance(ppo["gamma"], float) and ppo["n_epochs"] == 10
    assert ppo["critic_hidden_sizes"] is None and ppo["clip_range"] == 0.2


def test_schema_command_prints_the_json_schema(capsys):
    import json

    from evograd.cli import main

    assert main(["schema"]) == 0
    schema = json.loads(capsys.readouterr().out)
    assert schema["required"] == ["task"] and schema["additionalProperties"] is False
    defs = schema["$defs"]
    assert {"Task", "EnvTask", "FunctionTask", "Policy", "Budget", "Evaluation", "Workers"} <= set(defs)
    assert set(ES) | {"ppo", "reinforce", "adam", "lbfgs"} <= set(defs)  # gradient methods: envs with a rollout
    assert defs["Evaluation"]["properties"]["episodes"] == {"default": 10, "minimum": 1, "title": "Episodes",
                                                            "type": "integer"}
    assert defs["Policy"]["properties"]["type"]["enum"] == ["linear", "mlp"]
    assert defs["ppo"]["properties"]["n_steps"]["default"] == 2048 and "seed" not in defs["ppo"]["properties"]
    assert defs["cmaes"]["properties"]["sigma0"]["default"] == 0.5
    for path in CONFIGS:  # every key of every shipped config is one the schema describes
        raw = yaml.safe_load(path.read_text())
        assert set(raw) <= set(schema["properties"]), path.name
        for block in [raw.get("optimizer"), *(raw.get("methods") or {}).values()]:
            keys = set(block) - {"sigma"} if isinstance(block, dict) else set()
            assert keys <= set(defs[block["name"]]["properties"]), (path.name, block["name"])


def test_logging_section_turns_tensorboard_scalars_on(tmp_path):
    cfg = load_config(write(tmp_path, BASE))
    from evograd.experiments.config_models import method_names

    assert cfg["logging"] == {"tensorboard": False} and "sb3" in method_names()
    for value, words in (("3", "logging.tensorboard: must be a bool or a non-empty string, got 3"),
                         ("''", "logging.tensorboard: must be a bool or a non-empty string, got ''")):
        assert words in error(write(tmp_path, BASE + f"logging: {{tensorboard: {value}}}\n"))
    assert "did you mean 'tensorboard'" in error(write(tmp_path, BASE + "logging: {tensorbord: true}\n"))


def test_train_ppo_takes_one_config_object_and_keywords_over_it():
    from evograd import ParameterError
    from evograd.rl.ppo import PPOConfig, train_ppo
    from evograd.rl.reinforce import ReinforceConfig, train_reinforce

    class Asked(Exception):
        pass

    def env():  # the trainers check every setting before they first build an env
        raise Asked

    with pytest.raises(ParameterError, match="'n_steps' parameter of train_ppo"):
        train_ppo(env, PPOConfig(n_steps=0, max_env_steps=1000))
    with pytest.raises(Asked):  # the keyword replaces the config's value
        train_ppo(env, PPOConfig(n_steps=0, max_env_steps=1000), n_steps=8)
    with pytest.raises(ParameterError, match="unknown parameter 'n_step'. Did you mean 'n_steps'"):
        train_ppo(env, n_step=8)
    with pytest.raises(ParameterError, match="'config' parameter of train_reinforce must be a ReinforceConfig"):
        train_reinforce(env, PPOConfig())
    with pytest.raises(ParameterError, match="'n_episodes' parameter of train_reinforce"):
        train_reinforce(env, ReinforceConfig(n_episodes=0, max_env_steps=1000))
    assert PPOConfig().learning_rate == 3e-4 and ReinforceConfig().learning_rate == 1e-3
