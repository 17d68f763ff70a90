from typing import ClassVar

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium import spaces

from evograd.core.running_stats import RunningMeanStd
from evograd.core.validation import ParameterError
from evograd.gym.policies import make_policy, set_flat_params
from evograd.gym.rollouts import (
    RolloutError,
    RolloutWorker,
    concat_results,
    episode_seed,
    episode_seeds,
    evaluate_slice,
)
from evograd.gym.vector_cartpole import VectorCartPole, default_rng_uniform, reset_state, seedseq_state

torch.set_num_threads(1)
GOOD = np.array([0, 0, 0, 0, 0, 0, 1, 1, 0, 0], dtype=np.float64)  # logit1 - logit0 = theta + theta_dot


# ------------------------------------------------------------------ CartPole equals Gymnasium's
def test_vector_cartpole_steps_like_gymnasium():
    """Every step of Gymnasium's episodes, replayed from Gymnasium's own state.

    The two implementations round sin/cos independently (numpy over arrays here, gymnasium's scalar calls
    there; libm and SIMD builds differ by an ulp), and CartPole's unstable pole grows a 1e-16 difference
    ~e^40-fold over 500 steps, so whole trajectories cannot be compared. Each step starts instead from the
    reference state (float64) and must land on the reference's next state to 1e-12, with the same
    termination and truncation flags. Checked against mutations: semi-implicit Euler or a state rounded to
    float32 fail at the first step; sin/cos off by an ulp pass (the old whole-trajectory equality did not).
    """
    rng = np.random.default_rng(0)
    seeds = [int(s) for s in rng.integers(0, 2**63 - 1, 24)] + [0, 1, 2**32 - 1, 2**32]
    n = len(seeds)
    env = gym.make("CartPole-v1")
    refs = []
    for s in seeds:  # a noisy balancing controller: long episodes, both terminations and truncations
        o, _ = env.reset(seed=s)
        traj = [(env.unwrapped.state.copy(), o, None, False, False)]
        while True:
            a = int(o[2] + 0.5 * o[3] > 0) ^ int(rng.random() < 0.1)
            o, r, te, tr, _ = env.step(a)
            traj.append((env.unwrapped.state.copy(), o, a, te, tr))
            if te or tr:
                break
        refs.append(traj)
    assert any(len(t) == 501 for t in refs) and any(len(t) < 501 for t in refs)
    vec = VectorCartPole(n, 500)
    vec.reset(np.arange(n), seeds)
    start = np.stack([r[0][0] for r in refs], axis=1)
    np.testing.assert_allclose(vec.state, start, rtol=1e-15, atol=0)  # numpy's seeding, reproduced in bulk
    np.testing.assert_allclose(vec.obs(), np.stack([r[0][1] for r in refs], axis=1), rtol=1e-6, atol=0)
    for t in range(1, max(len(r) for r in refs)):
        live = np.array([i for i, r in enumerate(refs) if t < len(r)])
        vec.state[:, live] = np.stack([refs[i][t - 1][0] for i in live], axis=1)
        acts = np.array([r[t][2] if t < len(r) else 0 for r in refs])
        term, trunc = vec.step(acts)
        want = np.stack([refs[i][t][0] for i in live], axis=1)
        np.testing.assert_allclose(vec.state[:, live], want, rtol=1e-12, atol=1e-12, err_msg=f"step {t}")
        np.testing.assert_allclose(vec.obs()[:, live], np.stack([refs[i][t][1] for i in live], axis=1),
                                   rtol=1e-6, atol=1e-9, err_msg=f"step {t}")
        assert [(bool(term[i]), bool(trunc[i])) for i in live] == [refs[i][t][3:] for i in live], t


def test_batched_seeding_equals_numpy():
    rng = np.random.default_rng(1)
    seeds = [0, 1, 2**32 - 1, 2**32, 2**63 - 1, 2**64 - 1] + [int(s) for s in rng.integers(0, 2**63, 200)]
    ref = np.array([np.random.default_rng(s).uniform(-0.05, 0.05, 4) for s in seeds])
    assert np.array_equal(default_rng_uniform(seeds, -0.05, 0.05, 4), ref)
    assert np.array_equal(reset_state(123), np.random.default_rng(123).uniform(-0.05, 0.05, 4))
    for entropy in ([5, 1, 2, 3], [7], [1, 2, 3, 4, 5, 6]):
        words = np.array(entropy, dtype=np.uint32)[None]
        assert np.array_equal(seedseq_state(words, 5)[0], np.random.SeedSequence(entropy).generate_state(5))
    cands, eps = np.arange(50), np.arange(50) % 3
    for run_seed, gen in ((0, 0), (2**40 + 3, 7)):
        assert episode_seeds(run_seed, gen, cands, eps) == [
            episode_seed(run_seed, gen, c, e) for c, e in zip(cands.tolist(), eps.tolist())]
    assert len({episode_seed(0, 0, c, 0) for c in range(100)}) == 100


def test_cartpole_backend_equals_real_gymnasium_envs():
    rng = np.random.default_rng(2)
    P = np.vstack([GOOD + 0.05 * rng.standard_normal((6, 10)), rng.standard_normal((26, 10))])
    ids = np.arange(100, 132)
    ours = RolloutWorker("CartPole-v1", {"policy": "linear"}, episodes=2).evaluate(P, ids, 5, 3)
    real = RolloutWorker("CartPole-v1", {"policy": "linear"}, episodes=2, backend="gym").evaluate(P, ids, 5, 3)
    # Same seeds and physics, but sin/cos may round differently on another build (see the test above): in
    # closed loop a 1-ulp difference later flips an action at a near-zero logit. The balancing members then
    # still balance, so lengths stay equal and observation statistics move by ~1e-3 of their spread (at
    # most 1 of 64 lengths changed over 20 populations with sin/cos perturbed by an ulp); a wrong seed,
    # action mapping, time limit or integrator changes most of the 52 short, start-dependent episodes.
    same = ours.lengths == real.lengths
    assert same.sum() >= 60, np.argwhere(~same)
    for res in (ours, real):
        np.testing.assert_array_equal(res.episode_returns, res.lengths)  # reward 1 on every step
        assert res.env_steps == res.lengths.sum() == res.obs_stats.count
    assert (ours.lengths[:6] == 500).sum() >= 3  # the good members often balance (6 of 12 episodes here)
    spread = np.sqrt(real.obs_stats.var)
    np.testing.assert_allclose((ours.obs_stats.mean - real.obs_stats.mean) / spread, 0.0, rtol=0, atol=0.02)
    np.testing.assert_allclose(ours.obs_stats.var, real.obs_stats.var, rtol=0.05)


def test_worker_matches_plain_loop_with_policy_act():
    env = gym.make("CartPole-v1")
    policy = make_policy("linear", env.observation_space, env.action_space)
    P = GOOD + 0.01 * np.random.default_rng(3).standard_normal((4, 10))
    res = RolloutWorker("CartPole-v1", {"policy": "linear"}).evaluate(P, np.arange(4), 11, 2)
    plain = []
    for i, p in enumerate(P):
        set_flat_params(policy, p)
        obs, _ = env.reset(seed=episode_seed(11, 2, i, 0))
        total, done = 0.0, False
        while not done:
            obs, r, te, tr, _ = env.step(int(policy.act(obs)))
            total, done = total + r, te or tr
        plain.append(total)
    # The worker sums float64 logits and steps its own CartPole; the loop here uses torch float32 and
    # Gymnasium. Their rounding differs, so an action may flip where a logit is within rounding of zero; a
    # flip leaves a balancing member's length (182, 500, 500, 500 here) within a few steps (none changed
    # with sin/cos perturbed by an ulp, 40 members). A wrong parameter layout or action mapping makes the
    # members fall within ~10 steps; a wrong episode seed turns the 182 into a 500.
    np.testing.assert_allclose(res.returns, plain, rtol=0.02, atol=0)
    assert np.sum(res.returns == np.array(plain)) >= len(P) - 1, (res.returns, plain)


# ------------------------------------------------------------------ split invariance
def test_results_identical_for_any_split_and_slot_count():
    rng = np.random.default_rng(4)
    P = np.vstack([GOOD + 0.2 * rng.standard_normal((128, 10)), rng.standard_normal((128, 10))])
    ids = np.arange(256)
    worker = RolloutWorker("CartPole-v1", {"policy": "linear", "obs_norm": True}, episodes=2)
    stats = RunningMeanStd(4)
    stats.update(rng.normal(0.0, [0.5, 0.5, 0.05, 0.5], (100, 4)))
    full = worker.evaluate(P, ids, 9, 4, obs_norm_state=stats)
    halves = [worker.evaluate(P[s], ids[s], 9, 4, obs_norm_state=stats.state_dict()) for s in (slice(0, 100),
                                                                                       slice(100, 256))]
    joined = concat_results(halves)
    assert np.array_equal(joined.episode_returns, full.episode_returns)
    assert np.array_equal(joined.obs_sum, full.obs_sum)
    assert joined.obs_stats.count == full.obs_stats.count == full.env_steps
    assert np.array_equal(joined.obs_stats.mean, full.obs_stats.mean)
    assert np.array_equal(joined.obs_stats.var, full.obs_stats.var)
    few_slots = RolloutWorker("CartPole-v1", {"policy": "linear", "obs_norm": True}, episodes=2, n_slots=16)
    assert np.array_equal(few_slots.evaluate(P, ids, 9, 4, obs_norm_state=stats).episode_returns,
                          full.episode_returns)
    for i in (0, 77, 130, 255):
        alone = worker.evaluate(P[i:i + 1], ids[i:i + 1], 9, 4, obs_norm_state=stats)
        assert np.array_equal(alone.episode_returns[0], full.episode_returns[i])
    assert 0 < full.slot_utilization <= 1


def test_mlp_member_return_same_alone_or_in_batch_of_256():
    worker = RolloutWorker("CartPole-v1", {"policy": "mlp", "hidden_sizes": (16, 16)})
    P = 0.7 * np.random.default_rng(5).standard_normal((256, worker.dim))
    full = worker.evaluate(P, np.arange(256), 0, 0)
    for i in (0, 31, 200):  # exact by design, one process: any split into workers rests on it
        assert worker.evaluate(P[i:i + 1], [i], 0, 0).returns[0] == full.returns[i]
    assert full.returns.max() > full.returns.min()  # the population is not degenerate


def test_obs_stats_are_the_observations_acted_on():
    worker = RolloutWorker("CartPole-v1", {"policy": "linear"}, backend="gym", n_slots=1)
    P = np.random.default_rng(6).standard_normal((3, 10))
    res = worker.evaluate(P, [0, 1, 2], 1, 1)
    env = gym.make("CartPole-v1")
    policy = make_policy("linear", env.observation_space, env.action_space)
    seen = []
    for i, p in enumerate(P):
        set_flat_params(policy, p)
        obs, _ = env.reset(seed=episode_seed(1, 1, i, 0))
        done = False
        while not done:
            seen.append(obs)
            obs, _, te, tr, _ = env.step(int(policy.act(obs)))
            done = te or tr
    seen = np.asarray(seen, dtype=np.float64)
    assert res.obs_stats.count == len(seen) == res.env_steps
    np.testing.assert_allclose(res.obs_stats.mean, seen.mean(0), rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(res.obs_stats.var, seen.var(0), rtol=1e-7)
    assert worker.evaluate(P, [0, 1, 2], 1, 1, collect_obs_stats=False).obs_stats.count == 0


def test_obs_norm_state_is_applied():
    # Weights on cart position only: action 1 iff (x - mean) / std > 0.
    p = np.zeros(10)
    p[4] = 1.0
    worker = RolloutWorker("CartPole-v1", {"policy": "linear", "obs_norm": True})
    plain = worker.evaluate(p[None], [0], 0, 0)
    identity = RunningMeanStd(4)
    identity.merge((10.0, np.zeros(4), np.ones(4)))
    assert worker.evaluate(p[None], [0], 0, 0, obs_norm_state=identity).returns[0] == plain.returns[0]
    shifted = RunningMeanStd(4)
    shifted.merge((10.0, np.full(4, 10.0), np.ones(4)))  # normalized x always < 0: always push left
    short = worker.evaluate(p[None], [0], 0, 0, obs_norm_state=shifted).returns[0]
    ref = RolloutWorker("CartPole-v1", {"policy": "linear"}).evaluate(np.r_[np.zeros(8), 1.0, 0.0][None], [0], 0, 0)
    assert short == ref.returns[0]  # identical to a policy whose only logit is "action 0"


# ------------------------------------------------------------------ failures and errors
class SpikeEnv(gym.Env):
    """1-d task: reward 1 per step for 20 steps; action 1 at step `bad_step` gives a NaN obs or raises."""

    mode = "nan"
    steps_taken = 0

    def __init__(self, bad_step=3):
        self.observation_space = spaces.Box(-1.0, 1.0, (1,), np.float32)
        self.action_space = spaces.Discrete(2)
        self.bad_step = bad_step

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return np.zeros(1, np.float32), {}

    def step(self, action):
        SpikeEnv.steps_taken += 1
        self.t += 1
        if self.t == self.bad_step and action == 1:
            if SpikeEnv.mode == "raise":
                self._explode()
            return np.full(1, np.nan, np.float32), 1.0, False, False, {}
        return np.zeros(1, np.float32), 1.0, False, self.t >= 20, {}

    def _explode(self):
        raise RuntimeError("spike env exploded")


def make_spike():
    return SpikeEnv()


def test_nan_observation_marks_member_failed_and_counts_steps():
    SpikeEnv.mode = "nan"
    worker = RolloutWorker(make_spike, {"policy": "linear"}, episodes=2, n_slots=3)
    # linear on a zero observation: the action is argmax of the bias
    P = np.array([[0, 0, 0, 1.0], [0, 0, 1.0, 0], [0, 0, 0, 2.0], [0, 0, np.nan, 0]])
    res = worker.evaluate(P, [0, 1, 2, 3], 0, 0)
    assert res.failed.tolist() == [True, False, True, True]
    assert np.isnan(res.returns[[0, 2, 3]]).all() and res.returns[1] == 20.0
    assert res.lengths[1].tolist() == [20, 20]
    assert res.lengths[3].tolist() == [0, 0]  # non-finite parameters are never run
    assert res.lengths[0, 0] == 3 and res.env_steps == res.lengths.sum()


def test_env_exception_is_reraised_with_candidate_and_traceback():
    SpikeEnv.mode = "raise"
    try:
        worker = RolloutWorker(make_spike, {"policy": "linear"})
        P = np.array([[0, 0, 1.0, 0], [0, 0, 0, 1.0]])
        with pytest.raises(RolloutError) as info:
            worker.evaluate(P, [40, 41], 0, 0)
        msg = str(info.value)
        assert "make_spike" in msg and "candidate 41" in msg and "spike env exploded" in msg
        assert "_explode" in msg  # the original traceback text
        assert isinstance(info.value.__cause__, RuntimeError)
    finally:
        SpikeEnv.mode = "nan"


def test_wrong_parameter_length_fails_before_stepping():
    worker = RolloutWorker(make_spike, {"policy": "linear"})
    before = SpikeEnv.steps_taken
    with pytest.raises(ValueError, match=r"\(k, 4\)"):
        worker.evaluate(np.zeros((2, 5)), [0, 1], 0, 0)
    with pytest.raises(ValueError, match="candidate_ids"):
        worker.evaluate(np.zeros((2, 4)), [0], 0, 0)
    assert SpikeEnv.steps_taken == before


def test_policy_space_mismatch_and_bad_env_spec():
    with pytest.raises(ParameterError, match=r"needs \(batch, 2\)"):
        RolloutWorker("CartPole-v1", {"policy": torch.nn.Linear(4, 3)})
    with pytest.raises(ValueError, match="does not match"):
        RolloutWorker("CartPole-v1", {"policy": "linear", "observation_space": spaces.Box(-1, 1, (3,))})
    with pytest.raises(TypeError, match="not an env instance"):
        RolloutWorker(gym.make("CartPole-v1"), {"policy": "linear"})
    with pytest.raises(ValueError, match="backend='cartpole'"):
        RolloutWorker("Pendulum-v1", {"policy": "linear"}, backend="cartpole")


# ------------------------------------------------------------------ Box envs
class RecordActions(gym.Wrapper):
    seen: ClassVar[list] = []

    def step(self, action):
        RecordActions.seen.append(np.array(action, copy=True))
        return super().step(action)


def make_recorded_pendulum():
    return RecordActions(gym.make("Pendulum-v1", max_episode_steps=50))


@pytest.mark.parametrize("head", ["clip", "tanh"])
def test_pendulum_box_heads(head):
    RecordActions.seen = []
    worker = RolloutWorker(make_recorded_pendulum, {"policy": "linear", "box_head": head}, n_slots=4)
    P = 3.0 * np.random.default_rng(7).standard_normal((6, 4))
    res = worker.evaluate(P, np.arange(6), 3, 0)
    acts = np.array(RecordActions.seen)
    assert len(acts) == res.env_steps == 6 * 50 and acts.dtype == np.float32
    assert acts.min() >= -2.0 and acts.max() <= 2.0 and np.abs(acts).max() > 1.0
    env = gym.make("Pendulum-v1", max_episode_steps=50)
    for i, p in enumerate(P):  # same returns as a plain loop (the sum order differs: allclose)
        W, b = p[:3].reshape(1, 3), p[3:]
        obs, _ = env.reset(seed=episode_seed(3, 0, i, 0))
        total, done = 0.0, False
        while not done:
            pre = W @ obs.astype(np.float64) + b
            a = np.clip(pre, -2, 2) if head == "clip" else -2 + (np.tanh(pre) + 1) * 0.5 * 4
            obs, r, te, tr, _ = env.step(a.astype(np.float32))
            total, done = total + r, te or tr
        np.testing.assert_allclose(res.returns[i], total, rtol=1e-6)


def test_halfcheetah_shared_model_gives_plain_loop_returns(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # MuJoCo writes MUJOCO_LOG.TXT into the working directory
    worker = RolloutWorker("HalfCheetah-v5", {"policy": "linear"}, max_episode_steps=30, n_slots=3)
    P = 0.3 * np.random.default_rng(8).standard_normal((4, worker.dim))
    res = worker.evaluate(P, np.arange(4), 0, 0)
    models = {id(e.unwrapped.model) for e in worker.backend.envs}
    assert len(worker.backend.envs) == 3 and len(models) == 1
    env = gym.make("HalfCheetah-v5", max_episode_steps=30)
    for i, p in enumerate(P):
        W, b = p[:102].reshape(6, 17), p[102:]
        obs, _ = env.reset(seed=episode_seed(0, 0, i, 0))
        total, done = 0.0, False
        while not done:
            obs, r, te, tr, _ = env.step(np.clip(W @ obs + b, -1, 1).astype(np.float32))
            total, done = total + r, te or tr
        np.testing.assert_allclose(res.returns[i], total, rtol=1e-6)
    worker.close()


def test_evaluate_slice_uses_a_cached_worker():
    P = GOOD + 0.1 * np.random.default_rng(9).standard_normal((8, 10))
    a = evaluate_slice("CartPole-v1", {"policy": "linear"}, P, np.arange(8), 0, 0)
    b = RolloutWorker("CartPole-v1", {"policy": "linear"}).evaluate(P, np.arange(8), 0, 0)
    assert np.array_equal(a.returns, b.returns)
