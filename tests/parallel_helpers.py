"""Fitness functions and envs that misbehave on purpose: they kill their own worker process, raise, or
hang. They live in a module (not in the test file) so worker processes can import them by name."""
import os
import signal
import time
from pathlib import Path

import gymnasium as gym
import numpy as np


def sphere(x):
    return float(np.sum(np.asarray(x) ** 2))


def _die():
    os.kill(os.getpid(), signal.SIGKILL)


class KillOnce:
    """sphere, except that the first call on a row with x[0] > limit kills its process (once per marker)."""

    def __init__(self, marker, limit=0.5):
        self.marker, self.limit = str(marker), limit

    def __call__(self, x):
        if x[0] > self.limit:
            try:
                fd = os.open(self.marker, os.O_CREAT | os.O_EXCL)  # exactly one process gets to die
            except FileExistsError:
                pass
            else:
                os.close(fd)
                _die()
        return sphere(x)


class KillAlways:
    """Kills its process on row `row` (identified by x[1] == row) every time."""

    def __init__(self, row):
        self.row = row

    def __call__(self, x):
        if int(round(x[1])) == self.row:
            _die()
        return sphere(x)


def raise_on_row(x):
    if int(round(x[1])) == 7:
        raise ValueError("bad input on purpose")
    return sphere(x)


def sleep_on_row(x):
    if int(round(x[1])) == 2:
        time.sleep(60)
    return sphere(x)


def spin_on_row(x):
    if int(round(x[1])) == 2:
        while True:  # a pure-Python hang: stoppable in any thread
            pass
    return sphere(x)


class Reach(gym.Env):
    """A 1-d reach task (20 steps) with hooks that misbehave: kill the process, hang, count resets."""

    observation_space = gym.spaces.Box(-10, 10, (2,), np.float32)
    action_space = gym.spaces.Box(-10, 10, (1,), np.float32)

    def __init__(self, kill_marker=None, hang_above=None, counter=None, kill_after=None, fixed=None):
        self.kill_marker, self.hang_above = kill_marker, hang_above
        self.counter, self.kill_after, self.fixed = counter, kill_after, fixed

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        if self.counter is not None:  # poisoned once `kill_after` resets happened, until `fixed` exists
            with open(self.counter, "a") as f:
                f.write(".")
            if Path(self.counter).stat().st_size > self.kill_after and not Path(self.fixed).exists():
                _die()
        self.x, self.t = float(self.np_random.uniform(-1, 1)), 0
        return np.array([self.x, 1.0], np.float32), {}

    def step(self, action):
        a = float(np.asarray(action).reshape(-1)[0])
        if self.kill_marker is not None and self.t == 5:
            try:
                fd = os.open(self.kill_marker, os.O_CREAT | os.O_EXCL)
            except FileExistsError:
                pass
            else:
                os.close(fd)
                _die()
        if self.hang_above is not None and a > self.hang_above:
            time.sleep(60)
        self.x += 0.1 * np.clip(a, -1, 1)
        self.t += 1
        return np.array([self.x, 1.0], np.float32), -abs(self.x), False, self.t >= 20, {}
