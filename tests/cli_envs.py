"""Tiny envs for the CLI tests, referenced from configs as "tests.cli_envs:<name>"."""
import gymnasium as gym
import numpy as np


class TouchyEnv(gym.Env):
    """A 1-d reach task that raises when an action leaves [-5, 5]: a large-mutation method crashes on it."""

    observation_space = gym.spaces.Box(-10, 10, (2,), np.float32)
    action_space = gym.spaces.Box(-10, 10, (1,), np.float32)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.x, self.t = float(self.np_random.uniform(-1, 1)), 0
        return np.array([self.x, 1.0], np.float32), {}

    def step(self, action):
        a = float(np.asarray(action).reshape(-1)[0])
        if abs(a) > 5:
            raise RuntimeError(f"actuator limit exceeded: {a:.2f}")
        self.x += 0.1 * a
        self.t += 1
        return np.array([self.x, 1.0], np.float32), -abs(self.x), False, self.t >= 20, {}
