"""CartPole dynamics for many independent episodes at once, bit-identical to Gymnasium's single env.

Why not `gym.make_vec("CartPole-v1", vectorization_mode="vector_entry_point")`: it draws every slot's
start state from one shared generator and has no per-slot reset, so an episode's start state depends on
which slot ran it and on what the other slots did. Population evaluation needs each (candidate, episode)
to start from the state `gym.make("CartPole-v1").reset(seed=s)` gives, whatever the batch. This module
copies the semantics of gymnasium/envs/classic_control/cartpole.py (Euler integrator, same float64
operation order, float32 observations, reward 1 on every step including the terminal one) and the
TimeLimit wrapper (truncated once `max_episode_steps` steps were taken).

State is stored transposed, (4, n), so each physical quantity is one contiguous row and every
operation below is one numpy call over all slots.
"""
from __future__ import annotations

import math

import numpy as np

# Constants spelled exactly as in gymnasium's CartPoleEnv.__init__, so derived values round identically.
GRAVITY = 9.8
MASSCART = 1.0
MASSPOLE = 0.1
TOTAL_MASS = MASSPOLE + MASSCART
LENGTH = 0.5
POLEMASS_LENGTH = MASSPOLE * LENGTH
FORCE_MAG = 10.0
TAU = 0.02
THETA_THRESHOLD = 12 * 2 * math.pi / 360
X_THRESHOLD = 2.4
MAX_EPISODE_STEPS = {"CartPole-v0": 200, "CartPole-v1": 500}


def reset_state(seed: int) -> np.ndarray:
    """The start state `CartPoleEnv.reset(seed=seed)` draws (its np_random is default_rng(seed))."""
    return np.random.default_rng(seed).uniform(low=-0.05, high=0.05, size=(4,))


class VectorCartPole:
    """n CartPole slots stepped together; each slot is reset on its own with its own seed.

    Every slot is stepped on every call (idle ones too: one numpy call over all rows costs the same as
    over the live ones); the caller decides which results count.
    """

    def __init__(self, n: int, max_episode_steps: int = 500):
        self.n = int(n)
        self.max_episode_steps = int(max_episode_steps)
        self.state = np.zeros((4, self.n), dtype=np.float64)
        self.elapsed = np.zeros(self.n, dtype=np.int64)
        self._force = np.empty(self.n)

    def reset(self, slots: np.ndarray, seeds) -> None:
        for s, seed in zip(np.asarray(slots).tolist(), seeds):
            self.state[:, s] = reset_state(int(seed))
        self.elapsed[slots] = 0

    def obs(self) -> np.ndarray:
        """Observations as (4, n) float32, what the single env returns per slot."""
        return self.state.astype(np.float32)

    def step(self, action: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Advance every slot by one step with actions in {0, 1}; returns (terminated, truncated)."""
        x, x_dot, theta, theta_dot = self.state
        force = self._force
        np.copyto(force, -FORCE_MAG)
        force[action == 1] = FORCE_MAG
        costheta = np.cos(theta)
        sintheta = np.sin(theta)
        temp = (force + POLEMASS_LENGTH * np.square(theta_dot) * sintheta) / TOTAL_MASS
        thetaacc = (GRAVITY * sintheta - costheta * temp) / (
            LENGTH * (4.0 / 3.0 - MASSPOLE * np.square(costheta) / TOTAL_MASS)
        )
        xacc = temp - POLEMASS_LENGTH * thetaacc * costheta / TOTAL_MASS
        # Euler, in place: each row is updated from the previous values of the rows it reads.
        x += TAU * x_dot
        x_dot += TAU * xacc
        theta += TAU * theta_dot
        theta_dot += TAU * thetaacc
        # |x| > t is the same test as (x < -t or x > t) for finite x, in fewer numpy calls.
        terminated = (np.abs(x) > X_THRESHOLD) | (np.abs(theta) > THETA_THRESHOLD)
        self.elapsed += 1
        truncated = self.elapsed >= self.max_episode_steps
        return terminated, truncated
