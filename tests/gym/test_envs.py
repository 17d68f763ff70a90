"""evograd's Gymnasium environments: packaging, registration, API contract, and the LQR reference costs."""
import os
import subprocess
import sys
import warnings
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

from evograd.core.validation import ParameterError

try:
    import evograd.envs
    from evograd.envs import LQREnv, is_controllable
except ModuleNotFoundError as exc:  # an editable install made before pyproject mapped envs/ -> evograd.envs
    raise ImportError("evograd.envs is not importable; reinstall the package: pip install -e .") from exc

ROOT = Path(__file__).resolve().parents[2]
# check_env's advice for bounded, normalized spaces; LQR is unbounded on purpose (see envs/lqr.py).
EXPECTED_CHECKER_WARNINGS = ("infinity", "symmetric and normalized")


def test_pyproject_installs_envs_dir_as_evograd_envs_and_lists_every_subpackage():
    tomllib = pytest.importorskip("tomllib")
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    assert config["package-dir"] == {"evograd.envs": "envs"}
    on_disk = {".".join(p.parent.relative_to(ROOT).parts) for p in (ROOT / "evograd").rglob("__init__.py")}
    assert set(config["packages"]) == on_disk | {"evograd.envs"}, "update [tool.setuptools] packages"


def test_import_evograd_registers_ids_and_installs_no_top_level_envs(tmp_path):
    """A fresh interpreter outside the repository, as a user of the installed package would have: importing
    evograd after gymnasium registers the ids (and evograd.gym does in any order)."""
    code = (
        "import importlib.util, gymnasium, evograd\n"
        "env = gymnasium.make('evograd/LQR-v0')\n"
        "assert type(env.unwrapped).__module__ == 'evograd.envs.lqr'\n"
        "assert importlib.util.find_spec('envs') is None, 'a top-level envs module is importable'\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    result = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True,
                            text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr


def test_the_wheel_holds_every_subpackage_and_each_imports_from_it(tmp_path):
    """pyproject's explicit package list against the built wheel: install it alone into a folder and import
    every subpackage from there (outside the repository, so nothing comes from the source tree)."""
    build = subprocess.run([sys.executable, "-m", "pip", "wheel", str(ROOT), "--no-deps", "--no-build-isolation",
                            "-q", "-w", str(tmp_path / "dist")], capture_output=True, text=True, timeout=300)
    if build.returncode != 0 and "No module named" in build.stderr:
        pytest.skip(f"cannot build a wheel here without build isolation: {build.stderr.strip()[-200:]}")
    assert build.returncode == 0, build.stderr
    (wheel,) = (tmp_path / "dist").glob("evograd-*.whl")
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(tmp_path / "site"),
                    str(wheel)], check=True, timeout=300)
    packages = sorted(".".join(p.parent.relative_to(ROOT).parts) for p in (ROOT / "evograd").rglob("__init__.py"))
    site = str(tmp_path / "site")
    code = ("import importlib, sys; site, mods = sys.argv[1], sys.argv[2:] + ['evograd.envs']\n"
            "for m in mods: assert importlib.import_module(m).__file__.startswith(site), (m, site)\n")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    result = subprocess.run([sys.executable, "-c", code, site, *packages], cwd=tmp_path, capture_output=True,
                            text=True, timeout=120, env={**env, "PYTHONPATH": site})
    assert result.returncode == 0, result.stderr


def test_registration_by_id_and_module_syntax():
    assert gym.spec("evograd/LQR-v0").entry_point == "evograd.envs.lqr:LQREnv"
    env = gym.make("evograd.envs:evograd/LQR-v0", state_dim=3, action_dim=1, horizon=10)
    assert isinstance(env.unwrapped, LQREnv) and env.unwrapped.A.shape == (3, 3)
    evograd.envs.register_envs()  # idempotent: no "Overriding environment" warning
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        evograd.envs.register_envs()


@pytest.mark.parametrize("kwargs", [{}, {"noise_std": 0.5, "state_dim": 3, "action_dim": 3}])
def test_gymnasium_env_checker(kwargs):
    env = gym.make("evograd/LQR-v0", **kwargs)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        check_env(env.unwrapped)
    unexpected = [str(w.message) for w in caught
                  if not any(s in str(w.message) for s in EXPECTED_CHECKER_WARNINGS)]
    assert not unexpected


def rollout(env, gains, seed):
    """Return of one episode under u[t] = -gains[t] x[t]."""
    x, _ = env.reset(seed=seed)
    total, t = 0.0, 0
    while True:
        x, reward, terminated, truncated, _ = env.step(-gains[min(t, len(gains) - 1)] @ x)
        total += reward
        t += 1
        assert not terminated
        if truncated:
            assert t == env.horizon
            return total


def test_seeding_reward_and_truncation():
    env = LQREnv(horizon=7, noise_std=0.1, Q=2.0, R=np.diag([0.5, 3.0]))
    actions = np.random.default_rng(0).standard_normal((7, 2))
    trajectories = []
    for seed in (3, 3, 4):
        x, _ = env.reset(seed=seed)
        states, rewards = [x], []
        for t, u in enumerate(actions):
            x_prev = states[-1]
            x, reward, terminated, truncated, _ = env.step(u)
            assert reward == pytest.approx(-(2.0 * x_prev @ x_prev + u @ env.R @ u), rel=1e-12)
            assert not terminated and truncated == (t == 6)
            states.append(x)
            rewards.append(reward)
        trajectories.append((np.array(states), rewards))
    np.testing.assert_array_equal(trajectories[0][0], trajectories[1][0])
    assert trajectories[0][1] == trajectories[1][1]
    assert not np.allclose(trajectories[0][0], trajectories[2][0])
    # the dynamics depend on dynamics_seed only
    assert np.array_equal(LQREnv().A, LQREnv().A) and np.array_equal(LQREnv().B, LQREnv().B)
    assert not np.allclose(LQREnv(dynamics_seed=1).A, LQREnv().A)


def test_dynamics_unstable_and_controllable():
    for seed in range(5):
        env = LQREnv(state_dim=6, action_dim=1, dynamics_seed=seed)
        assert np.abs(np.linalg.eigvals(env.A)).max() == pytest.approx(1.05)
        assert is_controllable(env.A, env.B)
        assert np.abs(np.linalg.eigvals(env.A - env.B @ env.optimal_gain())).max() < 1
    assert not is_controllable(np.diag([0.5, 2.0]), np.array([[1.0], [0.0]]))
    assert is_controllable(np.array([[1.0, 1.0], [0.0, 1.0]]), np.array([[0.0], [1.0]]))


@pytest.mark.parametrize("kwargs", [{}, {"state_dim": 7, "action_dim": 3, "dynamics_seed": 2, "spectral_radius": 1.3,
                                         "Q": np.diag(np.arange(1.0, 8.0)), "R": 0.1}])
def test_optimal_gain_solves_the_dare(kwargs):
    linalg = pytest.importorskip("scipy.linalg")
    env = LQREnv(**kwargs)
    A, B, Q, R = env.A, env.B, env.Q, env.R
    P = linalg.solve_discrete_are(A, B, Q, R)
    np.testing.assert_allclose(env.optimal_gain(), np.linalg.solve(R + B.T @ P @ B, B.T @ P @ A),
                               rtol=1e-9, atol=1e-11)


def test_finite_horizon_optimum_matches_batch_least_squares():
    """Noise-free H-step optimum, solved as one least-squares problem over the whole control sequence."""
    env = LQREnv(state_dim=4, action_dim=2, horizon=6, Q=np.diag([1.0, 2.0, 0.5, 1.0]), R=0.3, init_std=1.5)
    n, m, H, A, B = 4, 2, 6, env.A, env.B
    Phi = np.vstack([np.linalg.matrix_power(A, t) for t in range(H)])  # x[t] = A^t x0 + sum_s A^(t-1-s) B u[s]
    Gamma = np.zeros((H * n, H * m))
    for t in range(H):
        for s in range(t):
            Gamma[t * n:(t + 1) * n, s * m:(s + 1) * m] = np.linalg.matrix_power(A, t - 1 - s) @ B
    Qb, Rb = np.kron(np.eye(H), env.Q), np.kron(np.eye(H), env.R)
    cross = Phi.T @ Qb @ Gamma
    P0 = Phi.T @ Qb @ Phi - cross @ np.linalg.solve(Gamma.T @ Qb @ Gamma + Rb, cross.T)
    assert env.finite_horizon_optimal_cost() == pytest.approx(1.5**2 * np.trace(P0), rel=1e-10)
    assert env.finite_horizon_optimal_cost() < env.optimal_cost()  # short horizon: stationary K is not optimal


def test_optimal_gain_beats_perturbed_gains():
    env = LQREnv()
    K = env.optimal_gain()
    best = env.optimal_cost()
    assert best == env.expected_cost(K) == env.expected_cost(K.ravel())
    # Over 200 steps the stationary gain is optimal up to rounding: the two costs agree to ~1e-15, and the
    # finite-horizon optimum may not exceed it by more than rounding (exact arithmetic: fh <= best).
    fh = env.finite_horizon_optimal_cost()
    np.testing.assert_allclose(best, fh, rtol=1e-9, atol=0)
    assert fh <= best * (1 + 1e-12), (fh, best)
    rng = np.random.default_rng(0)
    for scale in (1e-3, 1e-2, 1e-1, 1.0):
        for _ in range(4):
            assert env.expected_cost(K + scale * rng.standard_normal(K.shape)) > best
    assert env.expected_cost(np.zeros_like(K)) > 1e6 * best  # the open loop diverges
    assert env.expected_cost(np.full_like(K, -1e6)) == np.inf  # overflow reads as inf, not nan


def relative_error_and_resolution(returns, exact_cost):
    """|MC mean - exact| and 4 standard errors, both relative to the exact cost."""
    error = abs(-returns.mean() - exact_cost) / exact_cost
    return error, 4 * returns.std(ddof=1) / np.sqrt(len(returns)) / exact_cost


def test_monte_carlo_return_of_optimal_gain_matches_optimal_cost():
    env = LQREnv(state_dim=8, action_dim=3, horizon=15)
    K = env.optimal_gain()
    returns = np.array([rollout(env, [K], seed) for seed in range(4000)])
    error, four_sem = relative_error_and_resolution(returns, env.optimal_cost())
    assert four_sem < 0.04 and error < four_sem


def test_monte_carlo_with_noise_matches_expected_and_finite_horizon_costs():
    env = LQREnv(state_dim=6, action_dim=2, horizon=40, noise_std=0.5)
    K = env.optimal_gain()
    W = -K + 0.3 * np.random.default_rng(1).standard_normal(K.shape)  # a linear policy u = W x, so K = -W
    assert env.expected_cost(-W) > 1.2 * env.optimal_cost()
    returns = np.array([rollout(env, [-W], seed) for seed in range(1000)])
    error, four_sem = relative_error_and_resolution(returns, env.expected_cost(-W))
    assert four_sem < 0.04 and error < four_sem
    optimum = env.finite_horizon_optimal_cost()
    assert optimum < env.optimal_cost() < 1.05 * optimum
    returns = np.array([rollout(env, env.finite_horizon_gains(), seed) for seed in range(600)])
    error, four_sem = relative_error_and_resolution(returns, optimum)
    assert four_sem < 0.04 and error < four_sem


@pytest.mark.parametrize("kwargs, match", [
    ({"state_dim": 0}, "'state_dim' parameter of LQREnv must be an int >= 1"),
    ({"horizon": 2.5}, "'horizon' parameter"),
    ({"spectral_radius": 0.0}, "'spectral_radius' parameter"),
    ({"R": 0.0}, "'R' parameter"),
    ({"R": -np.eye(2)}, "'R' parameter of LQREnv must be positive definite"),
    ({"Q": np.ones((3, 3))}, r"'Q' parameter of LQREnv must be a symmetric \(4, 4\) matrix"),
    ({"Q": np.diag([1.0, 1.0, 1.0, -1.0])}, "positive semidefinite"),
    ({"noise_std": -0.1}, "'noise_std' parameter"),
])
def test_invalid_parameters(kwargs, match):
    with pytest.raises(ParameterError, match=match):
        LQREnv(**kwargs)


def test_expected_cost_rejects_wrong_shapes():
    env = LQREnv()
    with pytest.raises(ParameterError, match=r"shape \(2, 4\) or \(8,\)"):
        env.expected_cost(np.zeros((4, 2)))
