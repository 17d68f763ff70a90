"""Gradient methods on an env task: the LQR env's differentiable rollout (the same episodes as the env plays),
L-BFGS reaching the Riccati optimum on random instances, train_gradient's accounting and exact resume, the config
checks, and `compare` on a reduced configs/lqr.yaml."""
import math
import sys
import warnings
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch

import evograd as eg
import evograd.gym  # noqa: F401 (registers evograd/LQR-v0)
from evograd.core.validation import ParameterError
from evograd.experiments.config import load_config
from evograd.experiments.config_errors import ConfigError
from evograd.experiments.gradient import train_gradient
from evograd.experiments.references import EnvMaker
from evograd.gym.problem import GymProblem
from evograd.gym.rollouts import episode_seeds

REPO = Path(__file__).resolve().parents[2]
torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _isolated(tmp_path, monkeypatch):
    monkeypatch.setattr(sys, "path", list(sys.path))
    monkeypatch.chdir(tmp_path)


def lqr(**kw):
    return gym.make("evograd/LQR-v0", **{"horizon": 100, **kw}).unwrapped


@pytest.mark.parametrize("kw", [{}, {"state_dim": 3, "horizon": 30, "noise_std": 0.3, "dynamics_seed": 4}])
def test_rollout_is_the_envs_own_episodes_differentiable(kw):
    env = lqr(**kw)
    n, m = env.state_dim, env.action_dim
    W = -env.optimal_gain().reshape(-1) + 0.05 * np.random.default_rng(0).standard_normal(m * n)
    seeds = episode_seeds(7, 0, [0] * 5, range(5))  # what a GymProblem of seed 7 plays for its first candidate
    x = torch.tensor(W, requires_grad=True)
    ret, steps = env.differentiable_rollout(x, seeds)
    problem = GymProblem(EnvMaker("evograd/LQR-v0", {"horizon": 100, **kw}), policy="linear", bias=False,
                         episodes=5, seed=7)
    assert ret.item() == pytest.approx(problem.evaluate(W[None])[0], rel=1e-12)
    assert steps == problem.env_steps == 5 * env.horizon
    (grad,) = torch.autograd.grad(ret, x)
    e = np.zeros(m * n)
    e[3] = 1e-6
    fd = (env.differentiable_rollout(torch.tensor(W + e), seeds)[0] -
          env.differentiable_rollout(torch.tensor(W - e), seeds)[0]).item() / 2e-6
    assert grad[3].item() == pytest.approx(fd, rel=1e-5)
    short, short_steps = env.differentiable_rollout(torch.tensor(W), seeds, max_steps=10)
    assert short_steps == 50 and short.item() > ret.item()  # fewer steps, less cost
    with pytest.raises(ParameterError, match="'params'.*must have"):
        env.differentiable_rollout(torch.zeros(m * n + 1), seeds)
    with pytest.raises(ParameterError, match="'seeds'"):
        env.differentiable_rollout(torch.zeros(m * n), [])


def lbfgs_on_lqr(env, episodes=4, max_evals=3000):
    seeds = episode_seeds(0, 0, [0] * episodes, range(episodes))
    opt = eg.make("lbfgs", x0=np.zeros(env.state_dim * env.action_dim))
    while not opt.stopped and opt.evals < max_evals:
        x = torch.tensor(opt.ask()[0], requires_grad=True)
        ret, _ = env.differentiable_rollout(x, seeds)
        (grad,) = torch.autograd.grad(-ret, x)
        opt.tell([-ret.item()], grad.numpy()[None, :])
    gain = -opt.center.reshape(env.action_dim, env.state_dim)
    return opt, env.expected_cost(gain) / env.optimal_cost() - 1.0


@pytest.mark.parametrize("dynamics_seed", range(6))
def test_lbfgs_with_its_defaults_reaches_the_riccati_optimum(dynamics_seed):
    # measured: converged in 23-36 evaluations on dynamics seeds 0-7, gaps 4e-12 to 1e-10
    opt, gap = lbfgs_on_lqr(lqr(state_dim=4, action_dim=2, dynamics_seed=dynamics_seed))
    assert opt.stopped and opt.evals <= 3000
    assert 0 <= gap <= 0.01, gap


def make_problem(episodes=4, **kw):
    return GymProblem(EnvMaker("evograd/LQR-v0", {"horizon": 50}), policy="linear", bias=False,
                      episodes=episodes, seed=3, **kw)


def test_train_gradient_counts_env_steps_evaluates_like_train_and_resumes_exactly():
    problem = make_problem()
    snaps = []  # as a job writes them: serialized at once
    res = train_gradient(problem, eg.make("lbfgs", x0=problem.initial_params()), max_env_steps=100_000,
                         eval_every=1000, eval_episodes=3,
                         checkpoint=lambda st: snaps.append(eg.serialization.dumps(st)))
    assert res.stop_reason == "converged" and res.env_steps == res.generations * 4 * 50
    assert res.history[-1]["env_steps"] == res.env_steps and not math.isnan(res.history[-1]["eval_return"])
    fresh = make_problem()
    assert res.best_eval_return == pytest.approx(fresh.evaluate_policy(res.best_x, 3).mean(), rel=1e-12)
    evals = [r for r in res.history if not math.isnan(r["eval_return"])]
    assert res.eval_env_steps == len(evals) * 3 * 50
    # resumed from a checkpoint taken in the middle of a line search: the same run, row for row
    states = [eg.serialization.loads(s) for s in snaps]
    mid = next(s for s in states[5:] if s["optimizer"]["algorithm"]["trials"])
    assert len(mid["loop"]["history"]) < len(res.history)
    again = make_problem()
    res2 = train_gradient(again, eg.make("lbfgs", x0=again.initial_params()), max_env_steps=100_000,
                          eval_every=1000, eval_episodes=3, resume=mid)

    def rows(history):
        return [repr({k: v for k, v in r.items() if k != "wall_s"}) for r in history]

    assert rows(res2.history) == rows(res.history)
    assert np.array_equal(res2.best_x, res.best_x) and res2.env_steps == res.env_steps


def test_train_gradient_refuses_what_has_no_rollout():
    with pytest.raises(ParameterError, match="drives gradient optimizers"):
        train_gradient(make_problem(), eg.make("snes", x0=np.zeros(8)), max_env_steps=1000)
    cartpole = GymProblem("CartPole-v1", policy="linear", bias=False)
    with pytest.raises(ParameterError, match="'adam' needs gradients, and CartPole-v1 offers no differentiable"):
        train_gradient(cartpole, eg.make("adam", x0=cartpole.initial_params()), max_env_steps=1000)
    biased = GymProblem(EnvMaker("evograd/LQR-v0", {}), policy="linear")
    with pytest.raises(ParameterError, match="bias must be false"):
        train_gradient(biased, eg.make("adam", x0=biased.initial_params()), max_env_steps=1000)


LQR = REPO / "configs" / "lqr.yaml"


@pytest.mark.parametrize("overrides, key, words", [
    (["task.env.id=CartPole-v1", "task.env.kwargs={}"], "methods.lbfgs.name",
     "'lbfgs' needs gradients, and CartPole-v1 offers no differentiable rollout"),
    (["policy.bias=true"], "methods.lbfgs.policy.bias", "must be false for a gradient method"),
    (["methods.adam.policy={obs_norm: true}"], "methods.adam.policy.obs_norm", "must be false"),
    (["methods.lbfgs.history=0"], "methods.lbfgs.history", "must be an int >= 1, got 0"),
])
def test_config_errors_name_the_method_and_the_env(overrides, key, words):
    with pytest.raises(ConfigError) as info:
        load_config(LQR, overrides)
    msg = str(info.value)
    assert f"lqr.yaml: {key}: " in msg and words in msg, msg


def test_a_function_task_runs_lbfgs_through_minimize(tmp_path):
    from evograd.experiments.experiment import run_job

    path = tmp_path / "fn.yaml"
    path.write_text('task: {function: {fn: "evograd.core.functions:rosenbrock", dim: 4}}\n'
                    "budget: {evals: 300}\noptimizer: {name: lbfgs}\n")
    result = run_job(load_config(path), "lbfgs", 0, tmp_path / "out")
    assert result["status"] == "ok" and result["best_value"] < 1e-8


def test_compare_on_a_reduced_lqr_config_reports_the_gradient_methods(tmp_path):
    from evograd.experiments.compare import run_compare
    from evograd.experiments.report import summarize

    cfg = load_config(LQR, ["seeds=[0]", "budget.env_steps=24000", "evaluation.every=8000",
                            "methods={lbfgs: {name: lbfgs, episodes: 4}, adam: {name: adam, lr: 0.05, episodes: 4}}"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        run_compare(cfg, tmp_path / "run", quiet=True)
    rows = {r["method"]: r for r in summarize(tmp_path / "run")}
    assert set(rows) == {"lbfgs", "adam"} and all(r["failed_jobs"] == 0 for r in rows.values())
    assert rows["lbfgs"]["gap_to_optimal_mean"] <= 0.01
    assert rows["lbfgs"]["runs_short_of_budget"] == 0  # converged counts as done
    assert 0 < rows["adam"]["gap_to_optimal_mean"] < 5
