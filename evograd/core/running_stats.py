"""Running mean and variance of observations (ARS V2's state normalization, PPO's VecNormalize), in numpy."""
from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np

from .validation import check_float

STD_FLOOR = 1e-8  # ARS V2: dimensions that never moved are left unscaled instead of divided by ~0


class RunningMeanStd:
    """Mean and variance of a stream of observations, mergeable across workers without the raw data.

    Starts at count 0 by default (no fake prior observation) so that merging the statistics of two batches
    gives exactly the statistics of their concatenation, whatever the split across workers was (the ES code
    relies on this). count > 0 starts from that many pseudo-observations of mean 0 and variance 1, which is
    Stable-Baselines3's RunningMeanStd (its epsilon, 1e-4): PPO's VecNormalize uses it to match SB3 from the
    first step. Such a prior is counted once per object, so merged workers would each bring their own.
    """

    def __init__(self, shape: Sequence[int] | int = (), count: float = 0.0):
        shape = (int(shape),) if np.isscalar(shape) else tuple(int(s) for s in shape)
        self.count = check_float(count, "count", "RunningMeanStd", low=0.0)
        self.mean = np.zeros(shape, dtype=np.float64)
        self.var = np.ones(shape, dtype=np.float64)

    @property
    def shape(self) -> tuple[int, ...]:
        return self.mean.shape

    @property
    def std(self) -> np.ndarray:
        std = np.sqrt(self.var)
        return np.where(std < STD_FLOOR, 1.0, std)

    def update(self, batch: np.ndarray) -> None:
        batch = np.asarray(batch, dtype=np.float64).reshape((-1,) + self.shape)
        if len(batch) == 0:
            return
        self._merge(float(len(batch)), batch.mean(axis=0), batch.var(axis=0))

    def merge(self, other: RunningMeanStd | dict | tuple) -> None:
        """Fold in another worker's statistics: a RunningMeanStd, its `state_dict()`, or (count, mean, var)."""
        if isinstance(other, RunningMeanStd):
            count, mean, var = other.count, other.mean, other.var
        elif isinstance(other, dict):
            count, mean, var = other["count"], other["mean"], other["var"]
        else:
            count, mean, var = other
        mean = np.asarray(mean, dtype=np.float64).reshape(self.shape)
        var = np.asarray(var, dtype=np.float64).reshape(self.shape)
        if float(count) > 0:
            self._merge(float(count), mean, var)

    def _merge(self, n_b: float, mean_b: np.ndarray, var_b: np.ndarray) -> None:
        # Chan, Golub & LeVeque parallel variance: combine the sums of squared deviations (M2).
        n_a = self.count
        if n_a == 0:
            self.count, self.mean, self.var = n_b, mean_b.copy(), var_b.copy()
            return
        n = n_a + n_b
        delta = mean_b - self.mean
        m2 = self.var * n_a + var_b * n_b + delta**2 * (n_a * n_b / n)
        self.mean = self.mean + delta * (n_b / n)
        self.var = m2 / n
        self.count = n

    def copy(self) -> RunningMeanStd:
        return RunningMeanStd.from_state_dict(self.state_dict())

    def state_dict(self) -> dict[str, Any]:
        """count, mean and var as plain data (copies)."""
        return {"count": float(self.count), "mean": self.mean.copy(), "var": self.var.copy()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Take over the statistics of `state_dict()` (of the same shape)."""
        mean = np.asarray(state["mean"], dtype=np.float64)
        if mean.shape != self.shape:
            raise ValueError(f"RunningMeanStd.load_state_dict: the state has shape {mean.shape}, this one {self.shape}")
        self.count = float(state["count"])
        self.mean = mean.copy()
        self.var = np.asarray(state["var"], dtype=np.float64).reshape(mean.shape).copy()

    @classmethod
    def from_state_dict(cls, state: dict[str, Any]) -> RunningMeanStd:
        """A new RunningMeanStd holding `state` (its shape is the state's)."""
        rms = cls(np.shape(state["mean"]))
        rms.load_state_dict(state)
        return rms

    def state(self) -> dict[str, Any]:
        """Deprecated name of `state_dict()`."""
        _deprecated("state()", "state_dict()")
        return self.state_dict()

    @classmethod
    def from_state(cls, d: dict[str, Any]) -> RunningMeanStd:
        """Deprecated name of `from_state_dict()`."""
        _deprecated("from_state()", "from_state_dict()")
        return cls.from_state_dict(d)

    def __repr__(self) -> str:
        return f"RunningMeanStd(count={self.count:g}, shape={self.shape})"


def _deprecated(old: str, new: str) -> None:
    warnings.warn(f"RunningMeanStd.{old} is deprecated: it is now called {new} (state_dict()/load_state_dict() in "
                  "every stateful object). The old name still works for now.", DeprecationWarning, stacklevel=3)
