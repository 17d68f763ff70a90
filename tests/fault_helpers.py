"""Fitness functions for tests/test_faults.py, referenced from configs as "tests.fault_helpers:<name>"."""
import time

import numpy as np


def patchy_sphere(x):
    """The sphere function, NaN wherever the first coordinate is positive (about half of a population)."""
    x = np.asarray(x, dtype=np.float64)
    return float("nan") if x[0] > 0 else float(np.sum(x * x))


def slow_sphere(x):
    """The sphere function at about 20 ms a call: a run that is still going when a test looks at it."""
    time.sleep(0.02)
    x = np.asarray(x, dtype=np.float64)
    return float(np.sum(x * x))


def touchy_patchy_sphere(x):
    """patchy_sphere that raises far from the origin: a method with a huge step size fails its job."""
    x = np.asarray(x, dtype=np.float64)
    if np.abs(x).max() > 1e3:
        raise RuntimeError(f"out of range on purpose: |x| reached {np.abs(x).max():.3g}")
    return patchy_sphere(x)
