"""Our PPO against Stable-Baselines3's, piece by piece, on the same numbers: one update (same weights, same
rollout buffer, same minibatch permutations), one rollout's advantages (SB3's actions replayed through our
collection, with a time-limit truncation and a termination), the logged statistics of an update, VecNormalize
from its first step, and a run started from an SB3 model's initial weights."""

import copy

import gymnasium as gym
import numpy as np
import pytest
import torch

pytest.importorskip("stable_baselines3")
from stable_baselines3 import PPO  # noqa: E402
from stable_baselines3.common.logger import Logger  # noqa: E402
from stable_baselines3.common.vec_env import DummyVecEnv  # noqa: E402
from stable_baselines3.common.vec_env import VecNormalize as SB3VecNormalize  # noqa: E402

import evograd.rl.loop as loop_mod  # noqa: E402
import evograd.rl.ppo as ppo_mod  # noqa: E402
from evograd.optim.registry import make as make_optimizer  # noqa: E402
from evograd.rl.common import ActorCritic, VecNormalize, make_vec_env  # noqa: E402
from evograd.rl.ppo import train_ppo  # noqa: E402
from evograd.rl.sb3_weights import sb3_policy_params  # noqa: E402

torch.set_num_threads(1)


def _cartpole(max_episode_steps=None):
    return lambda: gym.make("CartPole-v1", max_episode_steps=max_episode_steps)


def _pendulum(max_episode_steps=None):
    return lambda: gym.make("Pendulum-v1", max_episode_steps=max_episode_steps)


def _sb3(make, n_envs, seed, normalize=False, policy_kwargs=None, **kwargs):
    """An SB3 PPO on a DummyVecEnv (VecNormalize over it with PPO's gamma when normalize), logging to memory."""
    venv = DummyVecEnv([make] * n_envs)
    if normalize:
        venv = SB3VecNormalize(venv, gamma=kwargs.get("gamma", 0.99))
    model = PPO("MlpPolicy", venv, seed=seed, device="cpu", policy_kwargs=policy_kwargs or {}, **kwargs)
    model.set_logger(Logger(None, []))
    return model


def _sb3_rollout(model):
    """SB3's collect_rollouts for n_steps (its env reset by _setup_learn, as learn() does); returns copies of the
    buffer's arrays, (n_steps, n_envs, ...) as collected."""
    _, callback = model._setup_learn(model.n_steps * model.n_envs)
    model.collect_rollouts(model.env, callback, model.rollout_buffer, model.n_steps)
    buf = model.rollout_buffer
    names = ("observations", "actions", "log_probs", "values", "rewards", "episode_starts", "advantages", "returns")
    return {k: getattr(buf, k).copy() for k in names}


def _ours(model, ortho_init=True, log_std_init=0.0):
    """Our actor-critic with the SB3 policy's weights (through init_params' converter), flattened, and the
    protocol Adam bound to it as train_ppo binds it."""
    ac = ActorCritic("test", (model.observation_space, model.action_space), "mlp", 0, (64, 64), "tanh", None,
                     log_std_init, ortho_init)
    ac.load_params(sb3_policy_params(model.policy), "test")
    opt = make_optimizer("adam", lr=model.lr_schedule(1.0), eps=1e-5)
    opt.bind([ac.flatten_parameters()])
    return ac, opt


def _actions(model, data):
    act = data["actions"]
    return act[..., 0].astype(np.int64) if isinstance(model.action_space, gym.spaces.Discrete) else act


# ---------------------------------------------------------------- (a, c) one update, its logged statistics
UPDATE_CASES = {  # make, n_envs, SB3/PPOConfig settings, policy_kwargs
    "cartpole": (_cartpole(), 4, dict(n_steps=64, batch_size=64, n_epochs=4, learning_rate=1e-3, ent_coef=0.01),
                 {}),
    "pendulum-ortho": (_pendulum(), 2, dict(n_steps=96, batch_size=48, n_epochs=3, learning_rate=1e-3,
                                            ent_coef=0.01, gae_lambda=0.9), {}),
    "pendulum-default-init": (_pendulum(), 2, dict(n_steps=96, batch_size=64, n_epochs=3, learning_rate=1e-3,
                                                   clip_range=0.1), dict(ortho_init=False, log_std_init=-0.5)),
    "cartpole-target-kl": (_cartpole(), 4, dict(n_steps=64, batch_size=32, n_epochs=10, learning_rate=2e-3,
                                                target_kl=0.01), {}),
}


def _one_update(case):
    """SB3's train() and our _optimize on the same weights, rollout and permutations. Returns (the SB3 model,
    its parameters before, our actor-critic, our Adam, our logged statistics, our update row)."""
    make, n_envs, kw, policy_kwargs = UPDATE_CASES[case]
    model = _sb3(make, n_envs, seed=1, policy_kwargs=policy_kwargs, **kw)
    data = _sb3_rollout(model)
    ac, opt = _ours(model, policy_kwargs.get("ortho_init", True), policy_kwargs.get("log_std_init", 0.0))
    before = sb3_policy_params(model.policy)
    np.random.seed(7)  # RolloutBuffer.get draws np.random.permutation once per epoch
    model.train()
    T, N = data["rewards"].shape
    zeros = np.zeros((T, N))
    roll = ppo_mod._Rollout(data["observations"], _actions(model, data), data["log_probs"], data["values"],
                            data["rewards"], zeros, zeros, [])
    settings = ppo_mod._UpdateSettings(model.batch_size, model.n_epochs, True, model.target_kl, model.vf_coef,
                                       model.ent_coef, model.max_grad_norm)
    clip = model.clip_range(1.0)
    stats = ppo_mod._optimize(ac, opt, np.random.RandomState(7), roll, data["advantages"], data["returns"], clip,
                              settings)
    row = ppo_mod._update_row(ac, stats, model.lr_schedule(1.0), clip, data["returns"], roll)
    return model, before, ac, opt, stats, row


def _relative_mismatch(model, before, ac):
    """Per parameter: ||ours - SB3's|| / ||SB3's update||, after one update from the same weights."""
    after = sb3_policy_params(model.policy)
    ours = {name: p.detach().double().numpy() for name, p in ac.named_parameters()}
    assert set(ours) == set(after)
    return {name: np.linalg.norm(ours[name] - after[name]) / np.linalg.norm(after[name] - before[name])
            for name in ours}


@pytest.mark.parametrize("case", list(UPDATE_CASES))
def test_one_update_matches_sb3(case):
    model, before, ac, opt, stats, row = _one_update(case)
    mismatch = _relative_mismatch(model, before, ac)
    worst = max(mismatch, key=mismatch.get)
    assert mismatch[worst] <= 1e-4, (worst, mismatch)
    # as many Adam steps as SB3's (target_kl: both stopped on the same minibatch, before stepping on it)
    sb3_steps = int(next(iter(model.policy.optimizer.state.values()))["step"])
    assert opt.state_dict()["algorithm"]["state"][0]["step"] == sb3_steps
    epochs, minibatches = model.n_epochs, -(-model.n_steps * model.n_envs // model.batch_size)
    if model.target_kl is None:
        assert sb3_steps == epochs * minibatches
    else:  # the case is set up so that the early stop happens, after the first epoch
        assert minibatches < sb3_steps < epochs * minibatches - 1, sb3_steps


@pytest.mark.parametrize("case", list(UPDATE_CASES))
def test_logged_statistics_match_sb3(case):
    """SB3 logs the losses, entropy and clip fraction as means over every minibatch of every epoch, approx_kl
    over the last epoch's minibatches (the one target_kl stopped included); our update row the same."""
    model, _, ac, _, stats, row = _one_update(case)
    logged = model.logger.name_to_value
    pairs = {"policy_loss": "train/policy_gradient_loss", "value_loss": "train/value_loss",
             "approx_kl": "train/approx_kl", "clip_fraction": "train/clip_fraction",
             "explained_variance": "train/explained_variance", "clip_range": "train/clip_range"}
    for ours, theirs in pairs.items():
        assert row[ours] == pytest.approx(logged[theirs], rel=1e-4, abs=1e-7), (ours, row[ours], logged[theirs])
    assert row["entropy"] == pytest.approx(-logged["train/entropy_loss"], rel=1e-5)
    if not ac.discrete:
        assert row["std"] == pytest.approx(logged["train/std"], rel=1e-6)
    assert 0 < row["clip_fraction"] < 1 and row["approx_kl"] > 0  # the comparison is not between zeros


# ---------------------------------------------------------------- (b) one rollout, SB3's actions replayed
ROLLOUT_CASES = {  # make, n_envs, n_steps, VecNormalize
    "cartpole": (_cartpole(16), 3, 64, False),
    "cartpole-vecnormalize": (_cartpole(16), 3, 64, True),
    "pendulum-vecnormalize": (_pendulum(20), 2, 48, True),
}


def _replay(monkeypatch, model, data, make, n_envs, normalize, seed):
    """Our collection (`_rollout`: VecNormalize, the truncation bootstrap, compute_gae) stepping our vector
    env with the actions SB3 sampled, from the same weights and env seeds."""
    ac, _ = _ours(model)
    stored, steps = _actions(model, data), iter(range(len(data["actions"])))

    def sample(out, rng):
        t = next(steps)
        a = stored[t]
        if ac.discrete:
            return a, a.tolist(), data["log_probs"][t]
        space = model.action_space
        return a, np.clip(a, space.low, space.high), data["log_probs"][t]

    monkeypatch.setattr(ac, "sample", sample)
    venv = make_vec_env(make, n_envs)
    vn = VecNormalize(ac.obs_dim, n_envs, normalize, normalize, model.gamma)
    obs = vn.obs(venv.reset(seed=seed)[0], update=True)
    ep_ret, ep_len = np.zeros(n_envs), np.zeros(n_envs, dtype=np.int64)
    roll, adv, ret, _ = ppo_mod._rollout(ac, venv, vn, None, obs, model.n_steps, n_envs, ep_ret, ep_len,
                                         model.gamma, model.gae_lambda)
    venv.close()
    return roll, adv, ret


@pytest.mark.parametrize("case", list(ROLLOUT_CASES))
def test_rollout_advantages_match_sb3(monkeypatch, case):
    make, n_envs, n_steps, normalize = ROLLOUT_CASES[case]
    model = _sb3(make, n_envs, seed=4, normalize=normalize, n_steps=n_steps, batch_size=n_steps, gamma=0.97,
                 gae_lambda=0.9)
    data = _sb3_rollout(model)
    roll, adv, ret = _replay(monkeypatch, model, data, make, n_envs, normalize, seed=4)
    truncated = (roll.done > 0) & (roll.term != 0)
    terminated = (roll.done > 0) & (roll.term == 0)
    assert truncated.sum() >= 2 and (terminated.sum() >= 2 or case.startswith("pendulum")), roll.done
    np.testing.assert_array_equal(roll.done[:-1], data["episode_starts"][1:])
    np.testing.assert_allclose(roll.obs, data["observations"], rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(roll.val, data["values"], rtol=1e-6, atol=1e-6)
    # SB3 folds the truncation bootstrap into the reward: r + gamma * V(final observation)
    np.testing.assert_allclose(roll.rew + model.gamma * roll.term, data["rewards"], rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(adv, data["advantages"], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(ret, data["returns"], rtol=1e-5, atol=1e-6)


# ---------------------------------------------------------------- (d) VecNormalize from the first step
def test_vecnormalize_matches_sb3_from_the_first_step():
    n_envs, gamma = 3, 0.95
    theirs = SB3VecNormalize(DummyVecEnv([_pendulum(25)] * n_envs), gamma=gamma)
    theirs.seed(0)
    ours = VecNormalize(3, n_envs, True, True, gamma)  # the default init_count: SB3's 1e-4
    no_prior = VecNormalize(3, n_envs, True, True, gamma, init_count=0.0)
    obs = theirs.reset()
    raw = theirs.get_original_obs()
    np.testing.assert_allclose(ours.obs(raw, update=True), obs, rtol=1e-6, atol=1e-7)
    assert not np.allclose(no_prior.obs(raw, update=True), obs, rtol=1e-6, atol=1e-7)
    rng = np.random.default_rng(0)
    dones_seen = 0
    for _ in range(60):
        obs, reward, dones, _ = theirs.step(rng.uniform(-2, 2, (n_envs, 1)).astype(np.float32))
        raw, raw_reward = theirs.get_original_obs(), theirs.get_original_reward()
        np.testing.assert_allclose(ours.obs(raw, update=True), obs, rtol=1e-6, atol=1e-7)
        np.testing.assert_allclose(ours.reward(raw_reward.astype(np.float64), dones), reward, rtol=1e-6)
        dones_seen += int(dones.sum())
    assert dones_seen == 2 * n_envs  # the discounted returns restart after each time limit, on both sides
    for name, updates in (("obs_rms", 61), ("ret_rms", 60)):  # the reset's observations, then every step
        a, b = getattr(ours, name), getattr(theirs, name)
        assert a.count == pytest.approx(b.count, rel=1e-12) == 1e-4 + updates * n_envs
        # SB3 takes a float32 batch's mean and variance in float32, we in float64: ~1e-8 apart
        np.testing.assert_allclose(a.mean, b.mean, rtol=1e-7)
        np.testing.assert_allclose(a.var, b.var, rtol=1e-7)
    assert no_prior.obs_rms.count == n_envs  # count 0: the first batch alone sets the statistics


# ---------------------------------------------------------------- (e) a run from SB3's initial weights
@pytest.mark.parametrize("env_id", ["CartPole-v1", "Pendulum-v1"])
def test_run_from_sb3_initial_weights_acts_as_sb3(monkeypatch, env_id):
    model = PPO("MlpPolicy", env_id, seed=3, device="cpu")
    evaluated = []
    real = loop_mod.RunLoop.evaluate

    def spy(self, actor):
        evaluated.append(copy.deepcopy(actor))
        return real(self, actor)

    monkeypatch.setattr(loop_mod.RunLoop, "evaluate", spy)
    train_ppo(env_id, seed=0, max_env_steps=64, n_steps=64, batch_size=64, n_epochs=1, eval_episodes=1,
              init_params=sb3_policy_params(model))
    initial = evaluated[0]  # row 0: the initial policy's evaluation
    rng = np.random.default_rng(1)
    obs = (rng.normal(size=(256,) + model.observation_space.shape) * 2).astype(np.float32)
    expected, _ = model.predict(obs, deterministic=True)
    np.testing.assert_array_equal(initial.act(obs), expected)
    assert len(np.unique(expected)) > 1  # not a constant policy


def test_sb3_weight_converter_reads_policies_models_and_state_dicts_and_refuses_other_networks():
    import subprocess
    import sys

    from evograd import ParameterError

    model = PPO("MlpPolicy", "Pendulum-v1", seed=0, device="cpu", policy_kwargs=dict(net_arch=[16]))
    sd = model.policy.state_dict()
    from_model, from_policy, from_sd = (sb3_policy_params(x) for x in (model, model.policy, sd))
    assert sorted(from_model) == ["actor.net.0.bias", "actor.net.0.weight", "actor.net.2.bias",
                                  "actor.net.2.weight", "critic.0.bias", "critic.0.weight", "critic.2.bias",
                                  "critic.2.weight", "log_std"]
    for k, v in from_model.items():
        np.testing.assert_array_equal(v, from_policy[k])
        np.testing.assert_array_equal(v, from_sd[k])
    np.testing.assert_array_equal(from_sd["critic.2.weight"], sd["value_net.weight"].numpy())
    with pytest.raises(ParameterError, match="'features_extractor.cnn.0.weight'"):
        sb3_policy_params({**sd, "features_extractor.cnn.0.weight": torch.zeros(2)})
    with pytest.raises(ParameterError, match="'shared_net.0.weight'"):
        sb3_policy_params({**sd, "shared_net.0.weight": torch.zeros(2)})
    with pytest.raises(ParameterError, match=r"indices \[0, 3\]"):
        sb3_policy_params({**sd, "mlp_extractor.policy_net.3.weight": torch.zeros(2)})
    code = ("import sys, evograd.rl.sb3_weights; "
            "assert not {'torch', 'stable_baselines3'} & set(sys.modules), sorted(sys.modules)")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
