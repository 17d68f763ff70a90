"""GymProblem and train: the population side of the Gymnasium layer."""
import functools

import gymnasium as gym
import numpy as np
import pytest
import torch

import evograd as eg
from evograd.gym.policies import load_policy
from evograd.gym.rollouts import RolloutError


@pytest.mark.parametrize("env,policy,obs_norm", [("CartPole-v1", "linear", False),
                                                 ("LunarLander-v3", "linear", True),
                                                 ("Pendulum-v1", "mlp", True)])
def test_identical_returns_and_statistics_for_1_and_2_workers(env, policy, obs_norm):
    X = np.random.default_rng(0).normal(size=(9, eg.GymProblem(env, policy=policy).dim)) * 0.5
    runs = []
    for n_jobs in (1, 2):
        p = eg.GymProblem(env, policy=policy, episodes=2, seed=3, n_jobs=n_jobs, obs_norm=obs_norm,
                          max_episode_steps=120)
        runs.append((p.evaluate(X), p.evaluate(X), p.env_steps, p.obs_rms.mean.copy(), p.obs_rms.var.copy()))
    (a1, a2, sa, ma, va), (b1, b2, sb, mb, vb) = runs
    assert np.array_equal(a1, b1) and np.array_equal(a2, b2) and sa == sb
    assert np.array_equal(ma, mb) and np.array_equal(va, vb)
    if obs_norm:
        assert not np.array_equal(a1, a2) or policy == "mlp"  # second generation: new seeds, normalized obs


@pytest.mark.parametrize("name", ["openai_es", "cmaes", "ga", "cbo", "snes", "ars"])
def test_population_methods_solve_cartpole_with_a_linear_policy(name):
    # A success rate, not one seed's luck: over seeds 0-59, ars missed the 150k-step budget once, cmaes
    # twice and openai_es once (its runs take 38k-154k steps). Each run stops at the target (0.1-1 s).
    # At least 4 of 6 seeds must solve it (at a 3% failure rate, 3 misses in 6 have a 5e-4 chance); a
    # method that stops learning solves none.
    solved = []
    for seed in range(6):
        problem = eg.GymProblem("CartPole-v1", policy="linear", seed=seed)
        kwargs = {"sigma0": 0.2, "lr": 0.05, "popsize": 20} if name == "openai_es" else {}
        opt = eg.make(name, x0=problem.initial_params(), seed=seed, **kwargs)
        res = eg.train(problem, opt, max_env_steps=150_000, target_return=475, eval_episodes=10)
        solved.append(res.best_eval_return >= 475)
        assert res.stop_reason == ("target_return" if solved[-1] else "max_env_steps"), res
        # evaluation episodes are counted apart from the training budget
        assert res.eval_env_steps > 0 and res.env_steps == problem.env_steps
    assert sum(solved) >= 4, solved


def test_cmaes_gets_near_the_optimal_lqr_cost():
    make_env = functools.partial(gym.make, "evograd/LQR-v0", state_dim=2, action_dim=1, horizon=40)
    lqr = make_env().unwrapped
    problem = eg.GymProblem(make_env, policy="linear", bias=False, episodes=20, seed=0)
    opt = eg.make("cmaes", x0=problem.initial_params(), sigma0=0.5, seed=0)
    res = eg.train(problem, opt, max_generations=80, eval_episodes=20)
    gain = -res.best_x.reshape(1, 2)  # the linear policy u = W x is the feedback u = -K x with K = -W
    gap = lqr.expected_cost(gain) / lqr.optimal_cost() - 1
    # 20-episode Monte Carlo costs leave a noise floor: over seeds 0-39 the gap had mean 2.0%, median 1.6%,
    # three above 5% (max 6.9%; seed 0: 2.7%), so a 5% bound failed one seed in 13. The start (K = 0) is
    # at +12,300%; the optimal gain scaled by 0.62 or 1.51 is at +20%. In exact arithmetic the gap is >= 0
    # (here the finite-horizon optimum equals the stationary one to rounding).
    assert -1e-9 <= gap < 0.2, gap


def test_train_history_schedule_and_best_by_reevaluation(tmp_path):
    problem = eg.GymProblem("CartPole-v1", policy="linear", seed=1)
    opt = eg.make("snes", x0=problem.initial_params(), seed=1)
    res = eg.train(problem, opt, max_env_steps=20_000, eval_every=5_000, eval_episodes=5)
    rows = res.history
    assert {"generation", "env_steps", "wall_s", "return_mean", "return_max", "eval_return"} <= set(rows[0])
    evaluated = [r for r in rows if np.isfinite(r["eval_return"])]
    assert len(evaluated) >= 3 and np.isfinite(rows[-1]["eval_return"])
    assert res.env_steps >= 20_000 and rows[-1]["env_steps"] == res.env_steps
    # the reported best is the best *evaluation* over several episodes, not the luckiest training episode
    assert res.best_eval_return == max([r["eval_return"] for r in evaluated] + [res.best_eval_return])
    again = problem.evaluate_policy(res.best_x, 5)
    assert np.mean(again) == res.best_eval_return  # fixed evaluation seeds: re-running gives the same figure
    problem.save_policy(tmp_path / "best.pt", res.best_x, {"method": "snes"})
    policy, meta = load_policy(tmp_path / "best.pt")
    assert meta["method"] == "snes" and meta["env"] == "CartPole-v1"
    obs = np.array([0.01, -0.2, 0.03, 0.1], dtype=np.float32)
    assert policy.act(obs) == res.policy().act(obs)


def test_optimizer_and_problem_must_agree():
    problem = eg.GymProblem("CartPole-v1")
    with pytest.raises(eg.ParameterError, match="initial_params"):
        eg.train(problem, eg.make("snes", x0=np.zeros(3)), max_generations=1)
    with pytest.raises(eg.ParameterError, match="train_ppo"):
        eg.train(problem, eg.make("adam", x0=np.zeros(problem.dim)), max_generations=1)
    with pytest.raises(eg.ParameterError, match="budget"):
        eg.train(problem, eg.make("snes", x0=problem.initial_params()))


def test_bad_input_is_named():
    with pytest.raises(eg.ParameterError, match="Did you mean"):
        eg.GymProblem("CartPol-v1")
    with pytest.raises(eg.ParameterError, match="length 10"):
        eg.GymProblem("CartPole-v1").evaluate(np.zeros((2, 5)))
    with pytest.raises(eg.ParameterError, match="custom policy module"):
        eg.GymProblem("CartPole-v1", policy=torch.nn.Linear(3, 2))
    with pytest.raises(eg.ParameterError, match="'episodes'"):
        eg.GymProblem("CartPole-v1", episodes=0)
    with pytest.raises(eg.ParameterError, match="not an env instance"):
        eg.GymProblem(gym.make("CartPole-v1"))


class _Exploding(gym.Env):
    """Raises after a few steps for candidates whose first weight is large."""

    observation_space = gym.spaces.Box(-1, 1, (2,), np.float32)
    action_space = gym.spaces.Box(-1, 1, (1,), np.float32)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return np.zeros(2, np.float32), {}

    def step(self, action):
        self.t += 1
        if action[0] > 0.5 and self.t > 3:
            raise RuntimeError("simulator exploded")
        obs = np.full(2, np.nan if action[0] < -0.5 else 0.1, np.float32)
        return obs, 1.0, False, self.t >= 10, {}


@pytest.mark.parametrize("n_jobs", [1, 2])
def test_env_errors_name_the_candidate_and_nan_episodes_fail(n_jobs):
    problem = eg.GymProblem(_Exploding, policy="linear", n_jobs=n_jobs)
    X = np.zeros((4, problem.dim))
    X[2, -1] = 1.0  # bias -> action 1.0 -> raises
    with pytest.raises(RolloutError, match="candidate 2") as info:
        problem.evaluate(X)
    assert "simulator exploded" in str(info.value) and "Traceback" in str(info.value)
    X[2, -1], X[1, -1] = 0.0, -1.0  # action -1 -> NaN observation -> failed, ranked worst
    returns = problem.evaluate(X)
    assert np.isnan(returns[1]) and np.all(np.isfinite(returns[[0, 2, 3]]))
    assert problem.failed_evaluations == 1
    opt = eg.make("ga", x0=X, seed=0)
    opt.ask()
    with pytest.warns(eg.NonFiniteWarning):
        opt.tell(returns)


@pytest.mark.parametrize("name", ["snes", "cmaes", "ga"])
def test_resume_from_a_checkpoint_ends_with_the_same_result(name):
    from evograd.core import serialization

    def fresh():
        p = eg.GymProblem("LunarLander-v3", policy="linear", seed=0, obs_norm=True, max_episode_steps=200)
        return p, eg.make(name, x0=p.initial_params(), seed=0)

    saved = {}

    def keep_generation_2(state):
        if state["loop"]["history"][-1]["generation"] == 2:  # through bytes, as a checkpoint file would
            saved["state"] = serialization.loads(serialization.dumps(state))

    kw = dict(max_env_steps=15_000, eval_every=3_000, eval_episodes=2)
    if name == "ga":
        kw["max_env_steps"] = 40_000
    full = eg.train(*fresh(), checkpoint=keep_generation_2, **kw)
    resumed = eg.train(*fresh(), resume=saved["state"], **kw)
    assert np.array_equal(full.best_x, resumed.best_x)
    assert full.best_eval_return == resumed.best_eval_return and full.env_steps == resumed.env_steps
    strip = lambda rows: [{k: v for k, v in r.items() if k != "wall_s"} for r in rows]  # noqa: E731
    assert np.array_equal(np.array([list(r.values()) for r in strip(full.history)], dtype=float),
                          np.array([list(r.values()) for r in strip(resumed.history)], dtype=float), equal_nan=True)


@pytest.mark.parametrize("name,n_jobs", [("openai_es", 1), ("openai_es", 2), ("snes", 2), ("ars", 2)])
def test_seeded_candidates_are_evaluated_bit_for_bit_like_their_dense_rows(name, n_jobs):
    """Odd pairs per slice (popsize 10 on 2 workers: 5 + 5) make a mirrored pair straddle two tasks."""
    import pickle

    from evograd.core.candidates import Candidates, SeededCandidates

    def fresh():
        return eg.GymProblem("Pendulum-v1", policy="mlp", hidden_sizes=(16,), episodes=2, seed=4, n_jobs=n_jobs,
                             obs_norm=True, max_episode_steps=30)

    compact, dense = fresh(), fresh()
    size = {"n_directions": 5} if name == "ars" else {"popsize": 10}
    opt = eg.make(name, x0=compact.initial_params(), seed=1, maximize=True, **size)
    for _ in range(2):  # the second generation runs with merged observation statistics
        cands = opt.ask_candidates()
        assert isinstance(cands, SeededCandidates)
        rows = cands.materialize()
        r_compact, r_dense = compact.evaluate(cands), dense.evaluate(rows)
        assert np.array_equal(r_compact, r_dense) and np.all(np.isfinite(r_compact))
        assert np.array_equal(compact.last_result.episode_returns, dense.last_result.episode_returns)
        assert np.array_equal(compact.last_result.obs_sum, dense.last_result.obs_sum)
        opt.tell(r_compact)
    assert compact.env_steps == dense.env_steps
    assert np.array_equal(compact.obs_rms.mean, dense.obs_rms.mean)
    assert np.array_equal(compact.obs_rms.var, dense.obs_rms.var)
    # a population rebuilt from plain state (no noise cache: rows regenerated from seeds) agrees too
    cands = opt.ask_candidates()
    again = Candidates.from_state(pickle.loads(pickle.dumps(cands.to_state())))
    assert np.array_equal(compact.evaluate(again), dense.evaluate(cands.materialize()))


def test_a_compact_task_ships_the_center_once_and_its_slice_of_seeds():
    import pickle

    from evograd.gym.problem import evaluate_compact_slice
    from evograd.gym.rollouts import evaluate_slice

    problem = eg.GymProblem("Pendulum-v1", policy="mlp", hidden_sizes=(64, 64), n_jobs=2, max_episode_steps=5)
    opt = eg.make("openai_es", x0=problem.initial_params(), popsize=40, seed=0)
    cands = opt.ask_candidates()
    ids = np.arange(len(cands))
    compact = problem._tasks(cands, ids, 0, 0, 1, False)
    dense = problem._tasks(cands.materialize(), ids, 0, 0, 1, False)
    assert [t[0] for t in compact] == [evaluate_compact_slice] * 2 and [t[0] for t in dense] == [evaluate_slice] * 2
    for _fn, args, _kw in compact:
        state = args[2]
        assert len(state["sign"]) == 20 and len(state["seeds"]) == 10  # its own 10 mirrored pairs only
        assert np.array_equal(state["center"], cands.center)
    size = lambda tasks: sum(len(pickle.dumps((args, kw))) for _, args, kw in tasks)  # noqa: E731
    per_center = problem.dim * 8
    assert size(compact) < 2 * per_center + 20_000  # one center per task, plus a few integers per row
    assert size(dense) > 40 * per_center  # every row's parameters
    state = cands.slice_state(3, 8)  # rows 3..7: pairs 1, 2, 3, with local direction numbers
    assert np.array_equal(state["seeds"], cands.seeds[1:4]) and state["direction"].tolist() == [0, 1, 1, 2, 2]
    from evograd.core.candidates import Candidates

    assert np.array_equal(Candidates.from_state(state).materialize(), cands.take(np.arange(3, 8)))


def test_evaluation_episodes_are_the_seeds_every_method_shares():
    """Population methods are scored on the episodes PPO, REINFORCE and SB3 jobs are scored on
    (`evaluation_seeds`), so the rows of a comparison are evaluated alike."""
    from evograd.gym.rollouts import evaluation_seeds
    from evograd.rl.loop import run_episodes

    problem = eg.GymProblem("Pendulum-v1", policy="linear", seed=7, n_jobs=1)
    x = np.random.default_rng(0).normal(size=problem.dim)
    ours = problem.evaluate_policy(x, 4)
    policy = problem.policy(x)
    envs = [gym.make("Pendulum-v1") for _ in range(4)]
    same, _, _ = run_episodes(envs, evaluation_seeds(7, 4), lambda o: policy.act(o, deterministic=True))
    other, _, _ = run_episodes(envs, evaluation_seeds(8, 4), lambda o: policy.act(o, deterministic=True))
    problem.close()
    np.testing.assert_allclose(ours, same, rtol=1e-4)
    assert np.abs(np.asarray(other) - np.asarray(same)).max() > 1.0  # other seeds, other episodes
