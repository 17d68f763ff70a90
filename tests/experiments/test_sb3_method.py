"""`name: sb3` methods: Stable-Baselines3's algorithms in a compare, on the budget, seeds and evaluation of every
other method, with their config mistakes reported when the config loads."""
import json
import sys
import textwrap

import numpy as np
import pytest

from evograd.gym.rollouts import evaluation_seeds

pytest.importorskip("stable_baselines3", reason="sb3 methods need the sb3 extra (stable-baselines3)")

from evograd.experiments.config import ConfigError, load_config, validate  # noqa: E402
from evograd.experiments.experiment import run_job  # noqa: E402
from evograd.experiments.jobfiles import ENV_COLUMNS  # noqa: E402

CARTPOLE = """\
task:
  env: {id: CartPole-v1}
budget: {env_steps: 1024}
evaluation: {every: 512, episodes: 3}
seeds: 1
policy: {type: mlp, hidden_sizes: [16, 16]}
methods:
  cmaes: {name: cmaes, sigma0: 0.5, popsize: 8}
  sb3_ppo: {name: sb3, algo: PPO, hyperparams: zoo}
"""
PENDULUM = """\
task:
  env: {id: Pendulum-v1}
budget: {env_steps: 300}
evaluation: {every: 150, episodes: 2}
policy: {type: mlp, hidden_sizes: [16, 16], activation: relu, box_head: tanh}
methods:
  sac: {name: sb3, algo: SAC, hyperparams: {learning_starts: 100, batch_size: 32}}
  td3: {name: sb3, algo: TD3, hyperparams: zoo, policy: {obs_norm: true}}
"""


@pytest.fixture(autouse=True)
def _isolated(tmp_path, monkeypatch):
    monkeypatch.setattr(sys, "path", list(sys.path))
    monkeypatch.chdir(tmp_path)


def write(tmp_path, text, name="exp.yaml"):
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def error(tmp_path, text, overrides=()):
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, text), overrides)
    return str(info.value)


# ------------------------------------------------------------------ config
def test_zoo_is_resolved_and_the_resolved_block_loads_again(tmp_path):
    cfg = load_config(write(tmp_path, CARTPOLE))
    block = cfg["methods"]["sb3_ppo"]
    assert block["algo"] == "PPO" and block["policy"]["hidden_sizes"] == [16, 16]
    assert block["hyperparams"] == dict(n_envs=8, n_steps=32, batch_size=256, gae_lambda=0.8, gamma=0.98,
                                        n_epochs=20, ent_coef=0.0, learning_rate="lin_0.001", clip_range="lin_0.2")
    assert validate(json.loads(json.dumps(cfg)))["methods"]["sb3_ppo"] == block  # config.json/resolved round trip


@pytest.mark.parametrize("old, new, key, words", [
    ("algo: PPO", "algo: PPO2", "methods.sb3_ppo.algo", "one of 'PPO', 'A2C', 'SAC', 'TD3', 'DQN'"),
    ("algo: PPO", "algo: SAC", "methods.sb3_ppo.algo", "SAC needs a Box action space"),
    ("hyperparams: zoo", "hyperparams: {learning_rat: 0.001}", "methods.sb3_ppo.hyperparams.learning_rat",
     "did you mean 'learning_rate'"),
    ("hyperparams: zoo", "hyperparams: {seed: 3}", "methods.sb3_ppo.hyperparams.seed", "from seeds"),
    ("hyperparams: zoo", "hyperparams: {policy_kwargs: {net_arch: [8]}}",
     "methods.sb3_ppo.hyperparams.policy_kwargs.net_arch", "set methods.sb3_ppo.policy.hidden_sizes instead"),
    ("hyperparams: zoo", "hyperparams: {learning_rate: lin_fast}", "methods.sb3_ppo.hyperparams.learning_rate",
     "'lin_<number>'"),
    ("hyperparams: zoo", "hyperparams: {batch_size: 1}", "methods.sb3_ppo.hyperparams",
     "SB3's PPO cannot be built with these hyperparameters"),
    ("hyperparams: zoo", "learning_rate: 0.001", "methods.sb3_ppo.learning_rate",
     "SB3's own settings go under methods.sb3_ppo.hyperparams"),
    ("hyperparams: zoo}", "hyperparams: zoo, policy: {bias: false}}", "methods.sb3_ppo.policy.bias",
     "SB3's layers always have biases"),
    ("budget: {env_steps: 1024}", "budget: {seconds: 5}", "methods.sb3_ppo.name", "needs budget.env_steps"),
    ("id: CartPole-v1", "id: Acrobot-v1", None, None),  # the zoo has it: no error
    ("id: CartPole-v1}", "id: CartPole-v1, max_episode_steps: 50}", None, None),
])
def test_sb3_mistakes_name_the_key(tmp_path, old, new, key, words):
    text = CARTPOLE.replace("  cmaes: {name: cmaes, sigma0: 0.5, popsize: 8}\n", "")
    assert old in text
    if key is None:
        load_config(write(tmp_path, text.replace(old, new)))
        return
    msg = error(tmp_path, text.replace(old, new))
    assert msg.startswith(f"{tmp_path / 'exp.yaml'}: {key}: "), msg
    assert words in msg and "\n" not in msg, msg


def test_what_sb3_cannot_express_or_train_is_refused(tmp_path):
    msg = error(tmp_path, PENDULUM.replace(", box_head: tanh}", "}"))  # SAC/TD3 squash with tanh
    assert "methods.sac.policy.box_head: must be 'tanh' for sb3 SAC" in msg and "inherited" in msg
    msg = error(tmp_path, PENDULUM.replace("algo: SAC", "algo: PPO"))  # PPO clips its Gaussian
    assert "methods.sac.policy.box_head: must be 'clip' for sb3 PPO" in msg
    msg = error(tmp_path, PENDULUM.replace("algo: SAC", "algo: DQN"))
    assert "methods.sac.algo: DQN needs a Discrete action space; Pendulum-v1 has Box" in msg
    text = PENDULUM.replace("{id: Pendulum-v1}", "{id: LunarLander-v3, kwargs: {continuous: true}}")
    assert "methods.td3.hyperparams: rl-baselines3-zoo has no TD3 entry for LunarLander-v3" in error(tmp_path, text)
    assert "sb3 trains a policy: it needs task.env" in error(tmp_path, """\
        task: {function: {fn: "evograd.core.functions:sphere", dim: 2}}
        budget: {evals: 100}
        optimizer: {name: sb3, algo: PPO}
        """)


def test_a_linear_policy_is_an_actor_without_hidden_layers(tmp_path):
    from evograd.experiments.sb3_model import build_model

    cfg = load_config(write(tmp_path, CARTPOLE.replace("policy: {type: mlp, hidden_sizes: [16, 16]}",
                                                       "policy: linear")))
    block = cfg["methods"]["sb3_ppo"]
    model, norm = build_model(block["algo"], block["hyperparams"], block["policy"], cfg["task"]["env"], seed=0)
    net = model.policy
    assert norm is None and len(net.mlp_extractor.policy_net) == 0  # the actor: one Linear(obs, actions)
    assert (net.action_net.in_features, net.action_net.out_features) == (4, 2)
    assert [m.out_features for m in net.mlp_extractor.value_net if hasattr(m, "out_features")] == [64, 64]
    model.get_env().close()


def test_a_missing_sb3_names_the_extra(tmp_path, monkeypatch, capsys):
    from evograd.cli import main
    from evograd.experiments.sb3_model import algo_class

    monkeypatch.setitem(sys.modules, "stable_baselines3", None)  # import stable_baselines3 now fails
    path = write(tmp_path, CARTPOLE)
    msg = error(tmp_path, CARTPOLE)
    assert msg.endswith("methods.sb3_ppo.name: sb3 methods need stable-baselines3, which is not installed: "
                        "pip install 'evograd[sb3]'"), msg
    assert main(["compare", str(path), "--out", str(tmp_path / "r"), "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "pip install 'evograd[sb3]'" in err
    with pytest.raises(ModuleNotFoundError, match=r"evograd\[sb3\]") as info:
        algo_class("PPO")  # what a job reports when the package went missing after the config was checked
    assert info.value.name == "stable_baselines3"


def test_schema_describes_the_sb3_block(capsys):
    from evograd.cli import main

    assert main(["schema"]) == 0
    sb3 = json.loads(capsys.readouterr().out)["$defs"]["sb3"]
    assert sb3["properties"]["algo"]["enum"] == ["PPO", "A2C", "SAC", "TD3", "DQN"]
    assert sb3["properties"]["hyperparams"]["default"] == "zoo" and sb3["additionalProperties"] is False


# ------------------------------------------------------------------ runs
def test_compare_gives_one_table_with_sb3_beside_cmaes(tmp_path):
    from evograd.experiments import report
    from evograd.experiments.compare import run_compare
    from evograd.experiments.html_report import write_html

    cfg = load_config(write(tmp_path, CARTPOLE))
    results = run_compare(cfg, tmp_path / "run", jobs=2, quiet=True)
    assert [r["status"] for r in results] == ["ok", "ok"], results
    sb3 = next(r for r in results if r["method"] == "sb3_ppo")
    rollout = 8 * 32  # the zoo's n_envs x n_steps: training stops after the rollout that reaches the budget
    assert 1024 <= sb3["env_steps"] < 1024 + rollout and sb3["extra"]["stop_reason"] == "max_env_steps"
    assert sb3["extra"]["eval_seeds"] == evaluation_seeds(0, 3)  # the seeds every method is evaluated on
    d = tmp_path / "run" / "sb3_ppo" / "seed0"
    rows = (d / "progress.csv").read_text().splitlines()
    assert rows[0].split(",") == ENV_COLUMNS
    first, last = rows[1].split(","), rows[-1].split(",")
    assert first[3] == "0" and first[8] != ""  # the initial policy is evaluated at env step 0
    assert int(last[3]) == sb3["env_steps"] and float(last[8]) == sb3["final_eval_return"]
    assert (d / "best_policy.npz").exists()
    made = report.report(tmp_path / "run", None)
    assert [r["method"] for r in made["rows"]] == ["cmaes", "sb3_ppo"]
    md = (tmp_path / "run" / "summary.md").read_text()
    assert "| cmaes | sb3_ppo |" in md and "IQM" in md  # probability of improvement, statistics
    html = write_html(tmp_path / "run", made["rows"]).read_text()
    assert "sb3_ppo" in html


def test_evaluations_use_the_shared_seeds_with_frozen_observation_statistics(tmp_path, monkeypatch):
    from stable_baselines3.common.vec_env import VecNormalize

    import evograd.rl.loop as loop

    calls, counts = [], []  # per evaluation: its seeds; the statistics' sample count at each normalize_obs
    real_run, real_norm = loop.run_episodes, VecNormalize.normalize_obs

    def run_episodes(envs, seeds, act, record=False):
        calls.append(list(seeds))
        counts.append([])
        try:
            return real_run(envs, seeds, act, record)
        finally:
            counts.append(None)  # training's own normalize_obs calls are not recorded

    def normalize_obs(self, obs):
        if counts and counts[-1] is not None:
            counts[-1].append(float(self.obs_rms.count))
        return real_norm(self, obs)

    monkeypatch.setattr(loop, "run_episodes", run_episodes)
    monkeypatch.setattr(VecNormalize, "normalize_obs", normalize_obs)
    text = CARTPOLE.replace("  cmaes: {name: cmaes, sigma0: 0.5, popsize: 8}\n",
                            "  ppo: {name: ppo, n_envs: 2, n_steps: 64, batch_size: 64}\n").replace(
        "hyperparams: zoo}", "hyperparams: {n_envs: 2, n_steps: 64, batch_size: 64}, policy: {obs_norm: true}}")
    cfg = load_config(write(tmp_path, text), ["seeds=[3]", "budget.env_steps=640", "evaluation.every=256"])
    for label in ("sb3_ppo", "ppo"):
        calls.clear()
        counts.clear()
        res = run_job(cfg, label, 3, tmp_path / "out")
        assert res["status"] == "ok", res.get("traceback")
        assert len(calls) >= 3 and all(c == evaluation_seeds(3, 3) for c in calls), (label, calls)
        if label == "sb3_ppo":  # normalized with statistics that do not move during an evaluation
            seen = [c for c in counts if c]  # evaluations (an empty one would mean no normalization)
            assert len(seen) == len(calls) and all(len(set(c)) == 1 for c in seen)
            assert seen[0][0] < seen[-1][0]  # ...and that training did move between evaluations


@pytest.mark.parametrize("label", ["sac", "td3"])
def test_pendulum_smoke(tmp_path, label):
    cfg = load_config(write(tmp_path, PENDULUM))
    res = run_job(cfg, label, 0, tmp_path / "out")
    assert res["status"] == "ok", res.get("traceback")
    assert res["env_steps"] == 300 and res["extra"]["stop_reason"] == "max_env_steps"  # train_freq 1: exact
    d = tmp_path / "out" / label / "seed0"
    steps = [int(r.split(",")[3]) for r in (d / "progress.csv").read_text().splitlines()[1:] if r.split(",")[8]]
    assert steps == [0, 150, 300]
    with np.load(d / "best_policy.npz", allow_pickle=False) as best:
        assert float(best["eval_return"]) == res["best_eval_return"]
        assert any(k.startswith("actor.") for k in best.files)
        assert ("obs_rms.mean" in best.files) == (label == "td3")


def test_seconds_budget_and_restart_without_checkpoint(tmp_path):
    text = CARTPOLE.replace("  cmaes: {name: cmaes, sigma0: 0.5, popsize: 8}\n", "").replace(
        "budget: {env_steps: 1024}", "budget: {env_steps: 10000000, seconds: 1.5}")
    cfg = load_config(write(tmp_path, text))
    res = run_job(cfg, "sb3_ppo", 0, tmp_path / "out")
    assert res["status"] == "ok" and res["extra"]["stop_reason"] == "max_seconds", res
    assert 0 < res["env_steps"] < 10_000_000 and res["wall_s"] < 10
    d = tmp_path / "out" / "sb3_ppo" / "seed0"
    assert run_job(cfg, "sb3_ppo", 0, tmp_path / "out", resume=True) == res  # finished: kept as it is
    (d / "result.json").unlink()  # as a job killed before its end (and before any checkpoint) leaves it
    (d / "checkpoint.state").unlink(missing_ok=True)
    cfg["budget"] = {"env_steps": 512, "seconds": None, "evals": None}
    again = run_job(cfg, "sb3_ppo", 0, tmp_path / "out", resume=True)  # no checkpoint: it starts again
    assert again["extra"]["restarted"] is True and again["extra"]["resumed"] == 0 and again["env_steps"] == 512
    assert again["extra"]["stop_reason"] == "max_env_steps"
    rows = (d / "progress.csv").read_text().splitlines()
    assert int(rows[1].split(",")[3]) == 0 and int(rows[-1].split(",")[3]) == 512


DQN_CARTPOLE = """\
task:
  env: {id: CartPole-v1}
budget: {env_steps: 3000}
evaluation: {every: 1000, episodes: 3}
policy: {type: mlp, hidden_sizes: [16, 16]}
methods:
  dqn: {name: sb3, algo: DQN, hyperparams: {learning_starts: 200, buffer_size: 2000, train_freq: 4,
        target_update_interval: 100, exploration_fraction: 0.5}}
  ppo: {name: sb3, algo: PPO, hyperparams: {n_steps: 128, batch_size: 64, normalize: true}}
"""


class _Killed(Exception):
    pass


def _kill_at(monkeypatch, steps):
    """The job dies (an exception out of SB3's callback) at the first update boundary at or past `steps`."""
    import evograd.experiments.sb3_method as sm

    real = sm._Run.boundary

    def boundary(self, n):
        real(self, n)
        if n >= steps:
            raise _Killed(f"killed at {n}")

    monkeypatch.setattr(sm._Run, "boundary", boundary)
    return lambda: monkeypatch.setattr(sm._Run, "boundary", real)


def _rows(d):
    lines = (d / "progress.csv").read_text().splitlines()
    head = lines[0].split(",")
    return [dict(zip(head, r.split(","))) for r in lines[1:]]


@pytest.mark.parametrize("label", ["dqn", "ppo"])
def test_a_killed_sb3_job_resumes_from_its_checkpoint(tmp_path, monkeypatch, label):
    from evograd.core import serialization

    cfg = load_config(write(tmp_path, DQN_CARTPOLE))
    out, d = tmp_path / "out", tmp_path / "out" / label / "seed0"
    import evograd.experiments.sb3_method as sm

    # checkpoints at every boundary from 1,000 steps on, not by the clock (a slow write on a loaded machine would
    # space them past the kill)
    monkeypatch.setattr(sm._Run, "_checkpoint_due", lambda self: self.model.num_timesteps >= 1000)
    restore = _kill_at(monkeypatch, 1700)
    dead = run_job(cfg, label, 0, out, checkpoint_seconds=0.0)
    assert dead["status"] == "failed" and "killed at" in dead["error"]
    saved = serialization.load_state(d / "checkpoint.state")
    at = saved["model"]["counters"]["num_timesteps"]
    assert 1000 <= at < 3000 and saved["loop"]["history"][-1]["env_steps"] <= at
    before = _rows(d)
    restore()
    res = run_job(cfg, label, 0, out, resume=True, checkpoint_seconds=0.0)
    assert res["status"] == "ok", res.get("traceback")
    assert res["extra"]["resumed"] == 1 and res["extra"]["restarted"] is False
    assert res["env_steps"] >= 3000 and res["extra"]["stop_reason"] == "max_env_steps"
    assert res["extra"]["n_updates"] > saved["model"]["counters"]["_n_updates"]  # training went on from there
    rows = _rows(d)
    kept = [r for r in before if int(r["env_steps"]) <= saved["loop"]["history"][-1]["env_steps"]]
    assert rows[:len(kept)] == kept  # the rows up to the checkpoint are the killed run's, unchanged
    steps = [int(r["env_steps"]) for r in rows]
    assert steps == sorted(set(steps)) and steps[0] == 0 and steps[-1] == res["env_steps"]
    evals = [int(r["env_steps"]) for r in rows if r["eval_return"]]
    assert evals[0] == 0 and evals[-1] == res["env_steps"] and len(evals) >= 4  # 0, ~1000, ~2000, final
    wall = [float(r["wall_s"]) for r in rows]
    assert wall == sorted(wall)  # the clock goes on from the checkpoint's


def test_sb3_model_state_round_trips_exactly(tmp_path):
    import torch

    from evograd.core import serialization
    from evograd.experiments import sb3_state
    from evograd.experiments.sb3_model import build_model

    pol = {"type": "mlp", "hidden_sizes": [16, 16], "activation": "relu", "obs_norm": False}
    for algo, env, hp in [("DQN", "CartPole-v1", {"learning_starts": 100, "buffer_size": 500}),
                          ("SAC", "Pendulum-v1", {"learning_starts": 100, "batch_size": 32}),
                          ("PPO", "Pendulum-v1", {"n_steps": 64, "batch_size": 32, "normalize": True})]:
        m, norm = build_model(algo, hp, pol, {"id": env}, seed=3)
        m.learn(700)  # DQN's buffer of 500 has wrapped around
        state = serialization.loads(serialization.dumps(sb3_state.model_state(m, norm)))
        m2, norm2 = build_model(algo, hp, pol, {"id": env}, seed=4)
        sb3_state.load_model_state(m2, norm2, state)
        for name, sd in m.get_parameters().items():
            sd2 = m2.get_parameters()[name]
            if "optimizer" in name:
                assert sd["param_groups"] == sd2["param_groups"]
                sd, sd2 = ({f"{k}.{n}": v for k, s in x["state"].items() for n, v in s.items()} for x in (sd, sd2))
            assert sd.keys() == sd2.keys() and all(torch.equal(sd[k], sd2[k]) for k in sd), (algo, name)
        for k in sb3_state.COUNTERS:
            assert getattr(m, k, None) == getattr(m2, k, None), (algo, k)
        if algo == "SAC":
            assert torch.equal(m.log_ent_coef, m2.log_ent_coef)
        if algo == "DQN":
            b, b2 = m.replay_buffer, m2.replay_buffer
            assert b.full and b.pos == b2.pos and b2.full
            assert all(np.array_equal(getattr(b, k), getattr(b2, k)) for k in ("observations", "actions", "rewards"))
        if norm is not None:
            assert np.array_equal(norm.obs_rms.mean, norm2.obs_rms.mean) and norm.ret_rms.count == norm2.ret_rms.count
        assert torch.equal(torch.get_rng_state(), torch.from_numpy(np.asarray(state["rng"]["torch"])))
        m.get_env().close()
        m2.get_env().close()
        wrong, _ = build_model("DQN" if algo != "DQN" else "PPO", {}, pol, {"id": "CartPole-v1"}, seed=0)
        with pytest.raises(serialization.StateError, match="model"):
            sb3_state.load_model_state(wrong, None, state)
        wrong.get_env().close()


def test_a_damaged_or_foreign_sb3_checkpoint_is_refused_and_left(tmp_path):
    from evograd.core import serialization

    cfg = load_config(write(tmp_path, DQN_CARTPOLE.replace("env_steps: 3000", "env_steps: 600")))
    out, d = tmp_path / "out", tmp_path / "out" / "dqn" / "seed0"
    d.mkdir(parents=True)
    serialization.save_state(d / "checkpoint.state", {"version": 1, "kind": "population", "loop": {}})
    files = {p.name: p.read_bytes() for p in d.iterdir()}
    with pytest.raises(serialization.StateError, match="not a checkpoint of an sb3 job"):
        run_job(cfg, "dqn", 0, out, resume=True)
    assert {p.name: p.read_bytes() for p in d.iterdir()} == files
    (d / "checkpoint.state").write_bytes(b"PK\x03\x04garbage")
    with pytest.raises(serialization.StateError):
        run_job(cfg, "dqn", 0, out, resume=True)


@pytest.mark.parametrize("where, bad", [
    (("model", "counters", "num_timesteps"), float("nan")), (("model", "counters", "_n_updates"), -3),
    (("model", "counters", "exploration_rate"), 7.0), (("model", "algo"), "SAC"),
    (("model", "replay_buffer", "pos"), 10**9), (("loop", "history"), []), (("loop", "stop_reason"), "max_seconds"),
    (("loop", "next_eval"), "soon"), (("loop", "resumed"), -1), (("loop", "wall_s"), float("inf")),
])
def test_a_tampered_sb3_checkpoint_is_refused_and_left(tmp_path, monkeypatch, where, bad):
    from evograd.core import serialization

    cfg = load_config(write(tmp_path, DQN_CARTPOLE.replace("env_steps: 3000", "env_steps: 1200")))
    out, d = tmp_path / "out", tmp_path / "out" / "dqn" / "seed0"
    restore = _kill_at(monkeypatch, 600)
    assert run_job(cfg, "dqn", 0, out, checkpoint_seconds=0.0)["status"] == "failed"
    restore()
    state = serialization.load_state(d / "checkpoint.state")
    node = state
    for k in where[:-1]:
        node = node[k]
    node[where[-1]] = bad
    serialization.save_state(d / "checkpoint.state", state)
    files = {p.name: p.read_bytes() for p in d.iterdir()}
    with pytest.raises(serialization.StateError):
        run_job(cfg, "dqn", 0, out, resume=True)
    assert {p.name: p.read_bytes() for p in d.iterdir()} == files
