"""The DQN divergence check (experiments/sb3_qcheck.py): the returns that followed each transition in a replay
buffer, and the Q-values of a job's latest and best networks beside them."""
import json

import numpy as np
import pytest

pytest.importorskip("stable_baselines3", reason="sb3 methods need the sb3 extra (stable-baselines3)")

from evograd.experiments.config import load_config  # noqa: E402
from evograd.experiments.experiment import run_job  # noqa: E402
from evograd.experiments.sb3_qcheck import buffer_returns, check_job, q_taken  # noqa: E402

DQN_CARTPOLE = """\
task:
  env: {id: CartPole-v1}
budget: {env_steps: 2000}
evaluation: {every: 1000, episodes: 2}
policy: {type: mlp, hidden_sizes: [16, 16]}
methods:
  dqn: {name: sb3, algo: DQN, hyperparams: {learning_starts: 200, buffer_size: 1500, train_freq: 4,
        target_update_interval: 100, exploration_fraction: 0.5, gamma: 0.9}}
  ppo: {name: sb3, algo: PPO, hyperparams: {n_steps: 128, batch_size: 64}}
"""


def _buffer(rewards, dones, timeouts, pos, full):
    col = lambda v: np.asarray(v, dtype=np.float32)[:, None]  # noqa: E731 (rows x one env)
    return {"pos": pos, "full": full, "buffer_size": 6,
            "arrays": {"rewards": col(rewards), "dones": col(dones), "timeouts": col(timeouts)}}


def test_returns_that_followed_in_a_wrapped_buffer():
    """Oldest row at `pos` once the buffer wrapped; an episode that terminated inside the buffer has known
    returns, a truncated one (timeout) and the unfinished newest one do not."""
    r = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]
    # buffer order from pos 2: rows 2, 3 (terminated), 4, 5, 0 (truncated), 1 (unfinished)
    idx, g = buffer_returns(_buffer(r, [1, 0, 0, 1, 0, 0], [1, 0, 0, 0, 0, 0], pos=2, full=True), 0.5)
    assert idx.tolist() == [2, 3] and g == pytest.approx([3.0 + 0.5 * 4.0, 4.0])
    # not wrapped: rows 0..pos-1 only, rows 0-1 an episode that terminated, row 2 a one-step one
    idx, g = buffer_returns(_buffer(r, [0, 1, 1, 9, 9, 9], [0] * 6, pos=3, full=False), 0.5)
    assert idx.tolist() == [0, 1, 2] and g == pytest.approx([1.0 + 0.5 * 2.0, 2.0, 3.0])


def test_a_buffer_of_several_envs_is_refused_by_name():
    buf = _buffer([1.0] * 6, [0] * 6, [0] * 6, pos=0, full=True)
    buf["arrays"] = {k: np.repeat(v, 2, axis=1) for k, v in buf["arrays"].items()}  # two envs side by side
    with pytest.raises(ValueError, match="2 envs.*n_envs: 1"):
        buffer_returns(buf, 0.9)


def _dqn_job(tmp_path, monkeypatch):
    import evograd.experiments.sb3_method as sm

    # checkpoints at the last boundaries, not by the clock (which depends on the machine's load)
    monkeypatch.setattr(sm._Run, "_checkpoint_due", lambda self: self.model.num_timesteps >= 1990)
    cfg = load_config(_write(tmp_path, DQN_CARTPOLE))
    out = tmp_path / "out"
    res = run_job(cfg, "dqn", 0, out, checkpoint_seconds=0.0)
    assert res["status"] == "ok", res.get("traceback")
    (out / "config.json").write_text(json.dumps(cfg))  # as compare writes it
    return cfg, out, res


def _write(tmp_path, text):
    path = tmp_path / "c.yaml"
    path.write_text(text)
    return path


def test_check_job_sets_q_values_beside_the_returns(tmp_path, monkeypatch):
    cfg, out, res = _dqn_job(tmp_path, monkeypatch)
    r = check_job(out / "dqn" / "seed0")
    assert res["env_steps"] - 10 <= r["env_steps"] <= res["env_steps"] and r["gamma"] == pytest.approx(0.9)
    assert r["best_eval_return"] == pytest.approx(res["best_eval_return"])
    assert r["transitions"] > 1000  # CartPole episodes terminate: most rows have a known return
    for key in ("returns", "q_latest", "q_best"):
        p1, p50, p99 = r[key]
        assert np.isfinite([p1, p50, p99]).all() and p1 <= p50 <= p99
    # CartPole pays 1 per step: with gamma 0.9 a return that followed lies in [1, 10]
    assert 1.0 - 1e-6 <= r["returns"][0] and r["returns"][2] <= 10.0 + 1e-6


def test_check_job_refuses_other_methods_and_missing_checkpoints(tmp_path, monkeypatch):
    cfg, out, _ = _dqn_job(tmp_path, monkeypatch)
    (out / "ppo" / "seed0").mkdir(parents=True)
    with pytest.raises(ValueError, match="methods.ppo"):
        check_job(out / "ppo" / "seed0")
    normalized = json.loads((out / "config.json").read_text())
    normalized["methods"]["dqn"]["hyperparams"]["normalize"] = True  # rewards normalized: Q on another scale
    (out / "config.json").write_text(json.dumps(normalized))
    with pytest.raises(ValueError, match="norm_reward"):
        check_job(out / "dqn" / "seed0")
    (out / "config.json").write_text(json.dumps(cfg))
    (out / "dqn" / "seed0" / "checkpoint.state").unlink()
    with pytest.raises(ValueError, match="no checkpoint.state"):
        check_job(out / "dqn" / "seed0")


def test_q_taken_normalizes_observations_as_vecnormalize_does(tmp_path):
    from evograd.experiments.sb3_model import build_model

    cfg = load_config(_write(tmp_path, DQN_CARTPOLE))
    block = cfg["methods"]["dqn"]
    model, _ = build_model("DQN", block["hyperparams"], block["policy"], cfg["task"]["env"], 0, max_buffer=1)
    model.get_env().close()
    rng = np.random.default_rng(0)
    obs, actions = rng.normal(size=(20, 4)), rng.integers(0, 2, size=20)
    mean, var = rng.normal(size=4), rng.uniform(0.5, 2.0, size=4)
    rms = {"obs_rms.mean": mean, "obs_rms.var": var, "obs_rms.epsilon": 1e-8, "obs_rms.clip_obs": 1.0}
    expected = q_taken(model, np.clip((obs - mean) / np.sqrt(var + 1e-8), -1.0, 1.0), actions)
    assert q_taken(model, obs, actions, rms) == pytest.approx(expected)
    assert not np.allclose(q_taken(model, obs, actions), expected)
