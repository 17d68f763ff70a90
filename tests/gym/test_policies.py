import os

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium import spaces

from evograd.core.validation import ParameterError
from evograd.gym.policies import (
    Policy,
    RunningMeanStd,
    get_flat_params,
    load_policy,
    make_policy,
    num_params,
    save_policy,
    set_flat_params,
)

torch.set_num_threads(1)

CARTPOLE_OBS = spaces.Box(-np.inf, np.inf, (4,), np.float32)
PENDULUM_OBS = spaces.Box(-8.0, 8.0, (3,), np.float32)
PENDULUM_ACT = spaces.Box(-2.0, 2.0, (1,), np.float32)


def test_linear_policy_layout_and_zero_init():
    p = make_policy("linear", CARTPOLE_OBS, spaces.Discrete(2))
    assert isinstance(p, Policy) and p.kind == "linear" and p.discrete
    assert (p.obs_dim, p.act_dim, num_params(p)) == (4, 2, 10)
    assert np.array_equal(get_flat_params(p), np.zeros(10))
    # flat layout: W row-major (act_dim x obs_dim), then b
    vec = np.arange(10, dtype=np.float64)
    set_flat_params(p, vec)
    assert np.array_equal(p.net.weight.detach().numpy(), vec[:8].reshape(2, 4).astype(np.float32))
    assert np.array_equal(p.net.bias.detach().numpy(), vec[8:].astype(np.float32))
    assert get_flat_params(p).dtype == np.float64


def test_discrete_act_is_argmax_with_start_offset():
    p = make_policy("linear", CARTPOLE_OBS, spaces.Discrete(3, start=5), bias=False)
    w = np.zeros((3, 4))
    w[2, 0] = 1.0  # obs[0] > 0 -> action index 2, else index 0 (ties go to the first)
    set_flat_params(p, w.ravel())
    assert p.act(np.array([1.0, 0, 0, 0], np.float32)) == 7
    assert np.array_equal(p.act(np.array([[1.0, 0, 0, 0], [-1.0, 0, 0, 0]])), [7, 5])
    torch.manual_seed(0)
    sampled = p.act(np.zeros((200, 4)), deterministic=False)
    assert set(np.unique(sampled)) == {5, 6, 7}


@pytest.mark.parametrize("head", ["clip", "tanh"])
def test_box_heads_stay_in_bounds(head):
    p = make_policy("mlp", PENDULUM_OBS, PENDULUM_ACT, hidden_sizes=(8,), box_head=head)
    set_flat_params(p, 50.0 * np.random.default_rng(0).standard_normal(num_params(p)))
    obs = np.random.default_rng(1).uniform(-8, 8, (100, 3))
    a = p.act(obs)
    assert a.shape == (100, 1) and a.dtype == np.float32
    assert np.all(a >= -2.0) and np.all(a <= 2.0)
    assert p.act(obs[0]).shape == (1,)
    if head == "clip":
        raw = p(torch.as_tensor(obs, dtype=torch.float32)).detach().numpy()
        np.testing.assert_array_equal(a, np.clip(raw, -2, 2))
    with pytest.raises(ValueError, match="log_std"):
        p.act(obs[0], deterministic=False)


def test_mlp_orthogonal_init():
    p = make_policy("mlp", CARTPOLE_OBS, spaces.Discrete(2), hidden_sizes=(16, 16))
    w0 = p.net[0].weight.detach()
    # orthogonal rows scaled by sqrt(2): W W^T = 2 I (16 x 4 has orthonormal columns -> W^T W = 2 I)
    np.testing.assert_allclose((w0.T @ w0).numpy(), 2 * np.eye(4), atol=1e-5)
    assert torch.all(p.net[0].bias == 0)
    assert float(p.net[-1].weight.detach().abs().max()) < 0.05  # output gain 0.01


def test_obs_norm_is_frozen_and_in_state_dict():
    p = make_policy("linear", CARTPOLE_OBS, spaces.Discrete(2), obs_norm=True)
    set_flat_params(p, np.r_[np.eye(2, 4).ravel(), 0, 0])
    rms = RunningMeanStd(4)
    rms.update(np.random.default_rng(0).normal(3.0, 2.0, (500, 4)))
    p.set_obs_stats(rms)
    obs = torch.ones(1, 4)
    expected = ((1.0 - rms.mean) / np.sqrt(rms.var))[:2]
    np.testing.assert_allclose(p(obs).detach().numpy()[0], expected, rtol=1e-5)
    before = p.get_obs_stats().state_dict()
    p(torch.randn(50, 4))  # forward never updates the statistics
    after = p.get_obs_stats().state_dict()
    assert before["count"] == after["count"] and np.array_equal(before["mean"], after["mean"])
    sd = p.state_dict()
    assert {"obs_mean", "obs_var", "obs_count", "obs_norm_enabled"} <= set(sd)
    assert num_params(p) == 10  # statistics are buffers, not searched parameters


def test_make_policy_errors():
    with pytest.raises(ParameterError, match="Box observation space"):
        make_policy("linear", spaces.Discrete(5), spaces.Discrete(2))
    with pytest.raises(ParameterError, match="Discrete and Box action"):
        make_policy("linear", CARTPOLE_OBS, spaces.MultiDiscrete([2, 2]))
    with pytest.raises(ParameterError, match="'box_head' parameter"):
        make_policy("linear", PENDULUM_OBS, PENDULUM_ACT, box_head="sigmoid")
    with pytest.raises(ParameterError, match="finite action bounds"):
        make_policy("linear", PENDULUM_OBS, spaces.Box(-np.inf, np.inf, (1,)), box_head="tanh")
    with pytest.raises(ParameterError, match="'policy' parameter"):
        make_policy("cnn", CARTPOLE_OBS, spaces.Discrete(2))
    with pytest.raises(ParameterError, match="'activation' parameter"):
        make_policy("mlp", CARTPOLE_OBS, spaces.Discrete(2), activation="swish")
    with pytest.raises(ParameterError, match=r"needs \(batch, 2\)"):
        make_policy(torch.nn.Linear(4, 3), CARTPOLE_OBS, spaces.Discrete(2))
    with pytest.raises(ParameterError, match=r"cannot take a \(batch, 4\)"):
        make_policy(torch.nn.Linear(5, 2), CARTPOLE_OBS, spaces.Discrete(2))


def test_custom_module_policy():
    net = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.ReLU(), torch.nn.Linear(3, 2))
    p = make_policy(net, CARTPOLE_OBS, spaces.Discrete(2))
    assert p.kind == "custom" and num_params(p) == 4 * 3 + 3 + 3 * 2 + 2


def test_set_flat_params_length_error_names_expected_length():
    p = make_policy("mlp", CARTPOLE_OBS, spaces.Discrete(2), hidden_sizes=(8,))
    n = num_params(p)
    with pytest.raises(ValueError, match=f"length {n}"):
        set_flat_params(p, np.zeros(n + 1))
    vec = np.random.default_rng(0).standard_normal(n).astype(np.float32).astype(np.float64)
    set_flat_params(p, vec)
    assert np.array_equal(get_flat_params(p), vec)


def test_running_mean_std_merge_equals_concatenation():
    rng = np.random.default_rng(0)
    data = rng.normal([1.0, -5.0, 100.0], [0.1, 3.0, 20.0], (1000, 3))
    whole = RunningMeanStd(3)
    whole.update(data)
    np.testing.assert_allclose(whole.mean, data.mean(0), rtol=1e-12)
    np.testing.assert_allclose(whole.var, data.var(0), rtol=1e-12)
    parts = [RunningMeanStd(3) for _ in range(3)]
    for part, chunk in zip(parts, np.split(data, [137, 600])):
        part.update(chunk[:50])
        part.update(chunk[50:])
    merged = RunningMeanStd(3)
    merged.merge(parts[0])
    merged.merge(parts[1].state_dict())  # dict form
    merged.merge((parts[2].count, parts[2].mean, parts[2].var))  # tuple form
    merged.merge(RunningMeanStd(3))  # empty: no effect
    assert merged.count == 1000
    np.testing.assert_allclose(merged.mean, data.mean(0), rtol=1e-12)
    np.testing.assert_allclose(merged.var, data.var(0), rtol=1e-10)
    back = RunningMeanStd.from_state_dict(merged.state_dict())
    assert back.count == merged.count and np.array_equal(back.var, merged.var)


def test_running_mean_std_constant_dimension_is_not_divided_by_zero():
    rms = RunningMeanStd(2)
    rms.update(np.array([[1.0, 5.0], [2.0, 5.0]]))
    assert rms.std[1] == 1.0 and rms.std[0] == pytest.approx(0.5)


@pytest.mark.parametrize("kind", ["linear", "mlp"])
def test_save_load_round_trip(tmp_path, kind):
    env = gym.make("Pendulum-v1")
    p = make_policy(kind, env.observation_space, env.action_space, hidden_sizes=(8, 8), obs_norm=True,
                    box_head="tanh")
    set_flat_params(p, np.random.default_rng(0).standard_normal(num_params(p)))
    rms = RunningMeanStd(3)
    rms.update(np.random.default_rng(1).standard_normal((20, 3)))
    p.set_obs_stats(rms)
    path = tmp_path / "sub" / "policy.pt"
    save_policy(path, p, {"env_id": "Pendulum-v1", "generation": np.int64(7), "returns": np.arange(3.0)})
    assert os.listdir(path.parent) == ["policy.pt"]  # atomic write leaves no temp file
    torch.load(path, weights_only=True)  # loadable without unpickling code
    q, meta = load_policy(path)
    assert meta == {"env_id": "Pendulum-v1", "generation": 7, "returns": [0.0, 1.0, 2.0]}
    assert q.kind == kind and q.box_head == "tanh" and q.obs_norm
    assert q.action_space == p.action_space and q.observation_space == p.observation_space
    assert np.array_equal(get_flat_params(q), get_flat_params(p))
    obs = np.random.default_rng(2).standard_normal((10, 3))
    assert np.array_equal(q.act(obs), p.act(obs))
    assert q.get_obs_stats().count == 20


def test_save_load_custom_module_needs_module(tmp_path):
    net = torch.nn.Sequential(torch.nn.Linear(4, 2))
    p = make_policy(net, CARTPOLE_OBS, spaces.Discrete(2))
    set_flat_params(p, np.arange(10.0))
    save_policy(tmp_path / "c.pt", p, {})
    with pytest.raises(ValueError, match="module="):
        load_policy(tmp_path / "c.pt")
    q, _ = load_policy(tmp_path / "c.pt", module=torch.nn.Sequential(torch.nn.Linear(4, 2)))
    assert np.array_equal(get_flat_params(q), np.arange(10.0))


def test_save_rejects_non_plain_metadata(tmp_path):
    p = make_policy("linear", CARTPOLE_OBS, spaces.Discrete(2))
    with pytest.raises(ValueError, match="plain data"):
        save_policy(tmp_path / "p.pt", p, {"env": object()})
    assert not (tmp_path / "p.pt").exists()


def test_normalized_observations_are_clipped_only_when_asked():
    import gymnasium as gym

    from evograd.core.running_stats import RunningMeanStd
    from evograd.gym.policies import make_policy

    obs_space = gym.spaces.Box(-np.inf, np.inf, (2,), np.float64)
    pol = make_policy("linear", obs_space, gym.spaces.Discrete(2), obs_norm=True)
    rms = RunningMeanStd((2,))
    rms.merge((100.0, np.zeros(2), np.ones(2)))
    pol.set_obs_stats(rms)
    far = torch.tensor([[50.0, -3.0]], dtype=torch.float64)
    assert torch.allclose(pol.normalize(far), far, atol=1e-6)  # ARS style: no clip by default
    pol.set_obs_stats(rms, clip=10.0)  # PPO's VecNormalize clips at 10
    assert torch.allclose(pol.normalize(far), torch.tensor([[10.0, -3.0]], dtype=torch.float64), atol=1e-6)
    state = pol.state_dict()
    again = make_policy("linear", obs_space, gym.spaces.Discrete(2), obs_norm=True)
    again.load_state_dict(state)
    assert float(again.obs_clip) == 10.0


# ------------------------------------------------------------------ state_dict / load_state_dict everywhere
def test_running_mean_std_state_dict_round_trip_and_old_names():
    rms = RunningMeanStd(3)
    rms.update(np.random.default_rng(1).normal(2.0, 3.0, (40, 3)))
    state = rms.state_dict()
    other = RunningMeanStd(3)
    other.load_state_dict(state)
    back = RunningMeanStd.from_state_dict(state)
    for r in (other, back):
        assert r.count == rms.count and np.array_equal(r.mean, rms.mean) and np.array_equal(r.var, rms.var)
    state["mean"][0] = 99.0  # the loaded copy is its own
    assert other.mean[0] != 99.0
    with pytest.raises(ValueError, match="shape"):
        RunningMeanStd(4).load_state_dict(rms.state_dict())
    with pytest.deprecated_call(match=r"RunningMeanStd.state\(\) is deprecated.*state_dict\(\)"):
        old = rms.state()
    with pytest.deprecated_call(match=r"RunningMeanStd.from_state\(\) is deprecated.*from_state_dict\(\)"):
        again = RunningMeanStd.from_state(old)
    assert np.array_equal(again.var, rms.var) and again.count == rms.count


def test_policy_state_dict_round_trip_carries_weights_and_obs_statistics():
    p = make_policy("mlp", PENDULUM_OBS, PENDULUM_ACT, hidden_sizes=(8,), obs_norm=True)
    rms = RunningMeanStd(3)
    rms.update(np.random.default_rng(2).normal(size=(30, 3)))
    p.set_obs_stats(rms, clip=5.0)
    q = make_policy("mlp", PENDULUM_OBS, PENDULUM_ACT, hidden_sizes=(8,), obs_norm=True)
    q.load_state_dict(p.state_dict())
    np.testing.assert_array_equal(get_flat_params(q), get_flat_params(p))
    got = q.get_obs_stats()
    assert got.count == rms.count and np.array_equal(got.mean, rms.mean) and float(q.obs_clip) == 5.0
    obs = np.random.default_rng(3).normal(size=(5, 3)).astype(np.float32)
    np.testing.assert_array_equal(q.act(obs), p.act(obs))


def test_gym_problem_state_dict_round_trip_and_old_names():
    from evograd.gym.problem import GymProblem

    a = GymProblem("CartPole-v1", policy="linear", obs_norm=True, seed=0)
    b = GymProblem("CartPole-v1", policy="linear", obs_norm=True, seed=0)
    X = np.random.default_rng(0).normal(size=(4, a.dim))
    a.evaluate(X)
    a.evaluate_policy(X[0], episodes=2)
    b.load_state_dict(a.state_dict())
    for key in ("generation", "env_steps", "eval_env_steps", "failed_evaluations"):
        assert getattr(b, key) == getattr(a, key), key
    assert b.obs_rms.count == a.obs_rms.count and np.array_equal(b.obs_rms.var, a.obs_rms.var)
    np.testing.assert_array_equal(b.evaluate(X), a.evaluate(X))  # the same frozen statistics, seeds, counters
    assert GymProblem.maximize is True and "maximized" in GymProblem.__doc__
    with pytest.deprecated_call(match=r"GymProblem.state\(\) is deprecated.*state_dict\(\)"):
        old = a.state()
    c = GymProblem("CartPole-v1", policy="linear", obs_norm=True, seed=0)
    with pytest.deprecated_call(match=r"GymProblem.load_state\(\) is deprecated.*load_state_dict\(\)"):
        c.load_state(old)
    assert c.env_steps == a.env_steps
