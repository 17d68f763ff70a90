"""Scale-out behaviour users rely on: the same results serially, on 1/2/4 local workers and on a Dask
cluster; lost workers re-run or named; user errors re-raised with the candidate; hangs stopped."""
import functools
import warnings

import numpy as np
import pytest

import evograd as eg
from evograd.core.validation import ParameterError
from evograd.gym.rollouts import RolloutError
from evograd.parallel.backends import (
    Backend,
    DaskBackend,
    JoblibBackend,
    WorkerLostError,
    WorkerLostWarning,
    make_backend,
)
from evograd.parallel.evaluator import EvaluationError, EvaluationTimeoutWarning, FunctionEvaluator
from tests import parallel_helpers as ph

pytest.importorskip("distributed")


@pytest.fixture(scope="module")
def dask():
    """A real cluster: a scheduler and two single-threaded worker processes on loopback."""
    backend = DaskBackend(None, n_workers=2)
    yield backend
    backend.close()


def _rows(n=12):
    X = np.zeros((n, 3))
    X[:, 0] = np.linspace(-1, 1, n)
    X[:, 1] = np.arange(n)  # the helpers pick their victim by this column
    return X


def _train_gym(backend, n_jobs, optimizer, generations=3):
    """A few generations of an ES on Pendulum (Gymnasium slots, ARS-V2 observation statistics)."""
    problem = eg.GymProblem("Pendulum-v1", policy="linear", obs_norm=True, seed=3, max_episode_steps=40,
                            n_jobs=n_jobs, backend=backend)
    opt = eg.make(optimizer, x0=problem.initial_params(), popsize=12, seed=5, maximize=True)
    returns = []
    for _ in range(generations):
        f = problem.evaluate(opt.ask_candidates())
        opt.tell(f)
        returns.append(f)
    problem.close()
    return np.concatenate(returns), opt.center, problem.obs_rms.mean, problem.env_steps


def test_bit_identical_serially_on_1_2_4_joblib_workers_and_on_dask(dask):
    # ES populations travel as seeds, GA ones as seed lists; each must rebuild the same rows everywhere
    optimizers = ["openai_es", "ga"]
    ref = {o: _train_gym("joblib", 1, o) for o in optimizers}
    for name, backend, n_jobs in [("joblib-1", JoblibBackend(1), 1), ("joblib-2", "joblib", 2),
                                  ("joblib-4", "joblib", 4), ("dask-2", dask, 2)]:
        for o in optimizers:
            run = _train_gym(backend, n_jobs, o)
            for a, b in zip(ref[o], run):
                assert np.array_equal(a, b), (name, o)


def test_minimize_is_identical_on_every_backend(dask):
    def run(**kw):
        opt = eg.make("snes", x0=np.full(5, 2.0), seed=1)
        return eg.minimize(ph.sphere, opt, max_generations=6, **kw).x

    ref = run()
    assert np.array_equal(ref, run(backend=JoblibBackend(4)))  # the pool the test above left running
    assert np.array_equal(ref, run(backend=dask))


def test_a_killed_joblib_worker_has_its_evaluations_rerun(tmp_path):
    X = _rows()
    with FunctionEvaluator(ph.KillOnce(tmp_path / "died"), n_jobs=2) as evaluate:
        with pytest.warns(WorkerLostWarning, match="worker process died"):
            values = evaluate(X)
    assert (tmp_path / "died").exists()  # a worker really was SIGKILLed mid-generation
    assert np.array_equal(values, [ph.sphere(x) for x in X])  # nothing missing, nothing counted twice


def test_a_killed_dask_worker_has_its_evaluations_rerun(tmp_path, dask):
    X = _rows()
    with FunctionEvaluator(ph.KillOnce(tmp_path / "died"), backend=dask) as evaluate:
        values = evaluate(X)
    assert (tmp_path / "died").exists()
    assert np.array_equal(values, [ph.sphere(x) for x in X])


@pytest.mark.parametrize("where", ["joblib", "dask"])
def test_a_killed_rollout_worker_gives_the_same_returns(tmp_path, dask, where):
    backend = dask if where == "dask" else "joblib"
    env = functools.partial(ph.Reach, kill_marker=str(tmp_path / "died"))
    clean = eg.GymProblem(ph.Reach, seed=1)
    killed = eg.GymProblem(env, seed=1, n_jobs=2, backend=backend)
    X = np.random.default_rng(0).normal(size=(10, clean.dim))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", WorkerLostWarning)
        got = killed.evaluate(X)
    assert (tmp_path / "died").exists()
    assert np.array_equal(got, clean.evaluate(X))
    assert killed.env_steps == clean.env_steps
    killed.close()


def test_a_candidate_that_always_kills_its_worker_is_named(tmp_path):
    X = _rows(6)
    with FunctionEvaluator(ph.KillAlways(row=4), n_jobs=2, retries=0) as evaluate:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", WorkerLostWarning)
            with pytest.raises(WorkerLostError, match=r"candidate\(s\) \[4\]") as info:
                evaluate(X)
    assert info.value.candidates == [4]


@pytest.mark.parametrize("where", ["joblib", "dask"])
def test_an_exception_in_the_fitness_is_reraised_with_index_and_traceback(dask, where):
    kw = {"backend": dask} if where == "dask" else {"n_jobs": 2}
    with FunctionEvaluator(ph.raise_on_row, **kw) as evaluate:
        with pytest.raises(EvaluationError) as info:
            evaluate(_rows())
    assert info.value.index == 7
    assert "ValueError: bad input on purpose" in info.value.original and "raise_on_row" in info.value.original


def test_an_exception_in_an_env_on_dask_names_the_candidate(dask):
    from tests.cli_envs import TouchyEnv

    problem = eg.GymProblem(TouchyEnv, backend=dask)
    X = np.zeros((6, problem.dim))
    X[4, :] = 50.0  # a huge action: TouchyEnv raises
    with pytest.raises(RolloutError, match=r"actuator limit exceeded.*candidate 4 "):
        problem.evaluate(X)


@pytest.mark.parametrize("n_jobs", [1, 2])
def test_a_hanging_fitness_call_is_stopped_and_fails(n_jobs):
    with FunctionEvaluator(ph.sleep_on_row, n_jobs=n_jobs, timeout=0.5) as evaluate:
        with pytest.warns(EvaluationTimeoutWarning, match=r"candidates \[2\]"):
            values = evaluate(_rows(5))
    assert np.isnan(values[2]) and np.isfinite(np.delete(values, 2)).all()
    assert evaluate.timeouts == 1


def test_a_spinning_fitness_call_is_stopped_in_a_dask_worker_thread(dask):
    with FunctionEvaluator(ph.spin_on_row, backend=dask, timeout=0.5) as evaluate:
        with pytest.warns(EvaluationTimeoutWarning):
            values = evaluate(_rows(5))
    assert np.isnan(values[2]) and np.isfinite(np.delete(values, 2)).all()


def test_a_hanging_env_fails_its_candidate_and_the_run_goes_on():
    env = functools.partial(ph.Reach, hang_above=5.0)
    problem = eg.GymProblem(env, seed=0, n_jobs=2, timeout=0.5)
    X = np.zeros((6, problem.dim))
    X[3, -1] = 8.0  # bias of the action: always above 5, so its first step hangs
    with pytest.warns(EvaluationTimeoutWarning, match=r"candidates \[3\]"):
        f = problem.evaluate(X)
    assert np.isnan(f[3]) and np.isfinite(np.delete(f, 3)).all()
    assert problem.timed_out == [(0, 3)]
    X[3] = 0.0  # the slot that hung got a fresh env: the next generation is normal
    assert np.isfinite(problem.evaluate(X)).all()
    problem.close()


def test_a_run_that_lost_its_workers_resumes_to_the_same_result(tmp_path):
    from evograd.experiments.config import validate
    from evograd.experiments.experiment import run_job

    def config(counter):
        env = {"id": "tests.parallel_helpers:Reach",
               "kwargs": {"counter": str(counter), "kill_after": 40, "fixed": str(tmp_path / "fixed")}}
        return validate({"name": "reach", "task": {"env": env}, "budget": {"env_steps": 3000},
                         "evaluation": {"every": 1000, "episodes": 2}, "optimizer": {"name": "snes", "popsize": 2},
                         "workers": {"n": 2, "retries": 0}})

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", WorkerLostWarning)
        broken = run_job(config(tmp_path / "count1"), "snes", 0, tmp_path / "run", checkpoint_seconds=0)
    assert broken["status"] == "failed" and "WorkerLostError" in broken["error"]
    (tmp_path / "fixed").touch()
    resumed = run_job(config(tmp_path / "count1"), "snes", 0, tmp_path / "run", resume=True, checkpoint_seconds=0)
    full = run_job(config(tmp_path / "count2"), "snes", 0, tmp_path / "full", checkpoint_seconds=0)
    assert resumed["status"] == "ok"
    for key in ("best_eval_return", "final_eval_return", "env_steps"):
        assert resumed[key] == full[key], key


def test_bad_backend_arguments_are_named():
    with pytest.raises(ParameterError, match="'backend'"):
        make_backend("ray")
    with pytest.raises(ParameterError, match="'address'.*backend='dask'"):
        eg.GymProblem("CartPole-v1", address="tcp://127.0.0.1:8786")
    with pytest.raises(ParameterError, match="'timeout'"):
        FunctionEvaluator(ph.sphere, timeout=0)
    assert type(make_backend("joblib", 1)) is Backend


def test_cli_trains_through_a_local_dask_cluster_with_the_same_result(tmp_path):
    import json

    from tests.test_cli import evograd

    cfg = tmp_path / "pend.yaml"
    cfg.write_text("""
name: pend
task: {env: {id: Pendulum-v1, max_episode_steps: 50}}
policy: {type: linear, obs_norm: true}
budget: {env_steps: 4000}
evaluation: {every: 2000, episodes: 2}
optimizer: {name: openai_es, popsize: 8}
workers: {n: 2}
""")
    evograd("run", str(cfg), "--out", str(tmp_path / "serial"), "--workers", "1", "--quiet")
    evograd("run", str(cfg), "--out", str(tmp_path / "dask"), "--dask", "local", "--quiet")
    a, b = (json.loads((tmp_path / d / "openai_es" / "seed0" / "result.json").read_text()) for d in ("serial", "dask"))
    assert a["status"] == b["status"] == "ok"
    for key in ("best_eval_return", "final_eval_return", "env_steps"):
        assert a[key] == b[key], key


def test_workers_config_errors_name_the_key(tmp_path):
    from evograd.experiments.config import ConfigError, validate

    base = {"task": {"env": {"id": "CartPole-v1"}}, "budget": {"env_steps": 1000}, "optimizer": {"name": "snes"}}
    with pytest.raises(ConfigError, match=r"workers\.address.*workers\.backend: dask"):
        validate({**base, "workers": {"address": "tcp://127.0.0.1:8786"}})
    with pytest.raises(ConfigError, match=r"workers\.backend"):
        validate({**base, "workers": {"backend": "ray"}})
    with pytest.raises(ConfigError, match=r"workers\.timeout"):
        validate({**base, "workers": {"timeout": -1}})
    assert validate({**base, "workers": {"backend": "dask", "n": 2}})["workers"]["address"] is None
