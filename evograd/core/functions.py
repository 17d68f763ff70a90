"""Benchmark functions, vectorized: x of shape (dim,) gives a float, (n, dim) gives shape (n,).

They accept numpy arrays or torch tensors (torch in, torch out), so gradient optimizers can
differentiate them with autograd through `evograd.minimize`. All have their minimum 0 at `optimum(dim)`.
"""
from __future__ import annotations

import math
import sys

import numpy as np


def _torch_of(x):
    """torch, when x is a torch tensor (then torch is loaded already); None otherwise: this module never
    imports torch itself."""
    torch = sys.modules.get("torch")
    return torch if torch is not None and isinstance(x, torch.Tensor) else None


def _lib(x):
    return _torch_of(x) or np


def _as_array(x):
    return x if _torch_of(x) is not None else np.asarray(x, dtype=np.float64)


def _out(val):
    if isinstance(val, np.ndarray) and val.ndim == 0:
        return float(val)
    return val


def sphere(x):
    """sum x_i^2."""
    x = _as_array(x)
    return _out((x * x).sum(-1))


def rosenbrock(x):
    """sum 100 (x_{i+1} - x_i^2)^2 + (1 - x_i)^2; minimum at (1, ..., 1)."""
    x = _as_array(x)
    a, b = x[..., :-1], x[..., 1:]
    return _out((100.0 * (b - a * a) ** 2 + (1.0 - a) ** 2).sum(-1))


def rastrigin(x):
    """10 d + sum x_i^2 - 10 cos(2 pi x_i); highly multimodal, minimum at 0."""
    x = _as_array(x)
    lib = _lib(x)
    d = x.shape[-1]
    return _out(10.0 * d + (x * x - 10.0 * lib.cos(2 * math.pi * x)).sum(-1))


def ackley(x):
    """-20 exp(-0.2 sqrt(mean x^2)) - exp(mean cos 2 pi x) + 20 + e; minimum at 0."""
    x = _as_array(x)
    lib = _lib(x)
    s1 = (x * x).mean(-1)
    s2 = lib.cos(2 * math.pi * x).mean(-1)
    return _out(-20.0 * lib.exp(-0.2 * lib.sqrt(s1 + 1e-300)) - lib.exp(s2) + 20.0 + math.e)


FUNCTIONS = {"sphere": sphere, "rosenbrock": rosenbrock, "rastrigin": rastrigin, "ackley": ackley}


def optimum(name: str, dim: int) -> np.ndarray:
    """Location of the global minimum of a named benchmark function."""
    return np.ones(dim) if name == "rosenbrock" else np.zeros(dim)


def get(name: str):
    if name not in FUNCTIONS:
        import difflib

        hint = difflib.get_close_matches(name, list(FUNCTIONS), n=1)
        raise ValueError(
            f"Unknown benchmark function {name!r}." + (f" Did you mean {hint[0]!r}?" if hint else "")
            + " Available: " + ", ".join(FUNCTIONS) + "."
        )
    return FUNCTIONS[name]
