"""Environment slots for batched rollouts of envs that are not vectorized: one Gymnasium env per slot.

Only live slots are stepped (a SyncVectorEnv would step idle ones). With a `timeout`, each reset and
step call runs under a wall-clock limit: a call that hangs is stopped, its slot's episode counts as
failed (NaN, like a non-finite observation) and the slot gets a freshly built env, since an env
interrupted mid-step may be left in any state.
"""
from __future__ import annotations

import traceback
from collections.abc import Callable

import numpy as np

from ..parallel.deadline import EvaluationTimeout, time_limit


class SlotError(Exception):
    """An env raised in one slot; the rollout loop turns it into a RolloutError naming the candidate."""

    def __init__(self, slot: int, exc: BaseException):
        self.slot, self.exc, self.tb = slot, exc, traceback.format_exc()


class GymSlots:
    """One Gymnasium env per slot, observations as an (obs_dim, n) view for the batched policy kernels.

    share_model: Gymnasium's MuJoCo envs each load their own MjModel (~0.5 MB for HalfCheetah); stepping
    64 of them in turn thrashes the cache and made each step ~1.4x slower than one env alone. Their
    models are read-only, so all slots can step with the first env's model (identical trajectories).
    """

    reward_is_one = False

    def __init__(self, make_env: Callable, obs_dim: int, discrete: bool, act_start: int, share_model: bool):
        self.make_env, self.obs_dim, self.discrete, self.act_start = make_env, obs_dim, discrete, act_start
        self.share_model = share_model
        self.envs: list = []
        self.timeout: float | None = None
        self.timed_out: list[int] = []  # slots whose call was stopped since the last `take_timeouts`

    def _new_env(self):
        env = self.make_env()
        if self.share_model and self.envs:
            env.unwrapped.model = self.envs[0].unwrapped.model
        return env

    def prepare(self, n: int) -> None:
        while len(self.envs) < n:
            self.envs.append(self._new_env())
        self._obs = np.zeros((n, self.obs_dim))  # row per slot: each env writes one contiguous row
        self._rew, self._done = np.zeros(n), np.zeros(n, dtype=bool)
        self.timed_out = []

    def _stopped(self, s: int) -> None:
        self.timed_out.append(s)
        self._obs[s] = np.nan  # reported as a failed episode through the non-finite check
        old, self.envs[s] = self.envs[s], self._new_env()
        try:
            old.close()
        except Exception:  # an env stopped mid-call may not close cleanly; it is discarded either way
            pass

    def reset(self, slots, seeds) -> np.ndarray:
        obs = self._obs
        for s, seed in zip(np.asarray(slots).tolist(), seeds):
            try:
                with time_limit(self.timeout):
                    obs[s] = np.ravel(self.envs[s].reset(seed=int(seed))[0])
            except EvaluationTimeout:
                self._stopped(s)
            except Exception as e:
                raise SlotError(s, e) from e
        return np.asarray(slots)[~np.isfinite(obs[slots]).all(axis=1)]

    def obs(self) -> np.ndarray:
        return self._obs.T

    def step(self, actions, live):
        acts = (actions + self.act_start).tolist() if self.discrete else actions
        obs, rew, done = self._obs, self._rew, self._done
        timeout = self.timeout
        for s in np.flatnonzero(live).tolist():
            try:
                if timeout is None:
                    o, r, te, tr, _ = self.envs[s].step(acts[s])
                else:
                    with time_limit(timeout):
                        o, r, te, tr, _ = self.envs[s].step(acts[s])
            except EvaluationTimeout:
                self._stopped(s)
                continue
            except Exception as e:
                raise SlotError(s, e) from e
            obs[s] = np.ravel(o)
            rew[s] = r
            done[s] = te or tr
        bad = ~(np.isfinite(obs).all(axis=1) & np.isfinite(rew))  # NaN/inf observation or reward
        return rew, done, bad

    def close(self) -> None:
        for env in self.envs:
            env.close()
        self.envs = []


def is_gymnasium_mujoco(env_spec, env) -> bool:
    import gymnasium as gym

    entry = gym.spec(env_spec).entry_point if isinstance(env_spec, str) else None
    return isinstance(entry, str) and entry.startswith("gymnasium.envs.mujoco") and hasattr(env.unwrapped, "model")
