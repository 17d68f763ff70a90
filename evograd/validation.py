"""Parameter checks with one message shape, run in constructors before any work starts.

Every message names the parameter and its owner the same way (scikit-learn's habit), e.g.
"The 'popsize' parameter of CMAES must be an int >= 2. Got 1 instead.", so a user who mistypes a
config value learns which key to fix without reading a traceback.
"""
from __future__ import annotations

import numbers
from typing import Any, Iterable

import numpy as np


class ParameterError(ValueError):
    """A hyperparameter or argument that cannot work; raised before any evaluation runs."""


def _fail(name: str, owner: str, what: str, value: Any) -> None:
    raise ParameterError(f"The '{name}' parameter of {owner} must be {what}. Got {value!r} instead.")


def check_int(value: Any, name: str, owner: str, low: int | None = None, high: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        _fail(name, owner, _range_text("an int", low, high, True, True), value)
    value = int(value)
    if (low is not None and value < low) or (high is not None and value > high):
        _fail(name, owner, _range_text("an int", low, high, True, True), value)
    return value


def check_float(
    value: Any,
    name: str,
    owner: str,
    low: float | None = None,
    high: float | None = None,
    low_inclusive: bool = True,
    high_inclusive: bool = True,
) -> float:
    what = _range_text("a float", low, high, low_inclusive, high_inclusive)
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        _fail(name, owner, what, value)
    value = float(value)
    if not np.isfinite(value):
        _fail(name, owner, what, value)
    if low is not None and (value < low or (not low_inclusive and value == low)):
        _fail(name, owner, what, value)
    if high is not None and (value > high or (not high_inclusive and value == high)):
        _fail(name, owner, what, value)
    return value


def check_choice(value: Any, name: str, owner: str, choices: Iterable[Any]) -> Any:
    choices = list(choices)
    if value not in choices:
        _fail(name, owner, "one of " + ", ".join(repr(c) for c in choices), value)
    return value


def check_bool(value: Any, name: str, owner: str) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        _fail(name, owner, "a bool", value)
    return bool(value)


def check_seed(value: Any, owner: str) -> int | None:
    if value is None:
        return None
    return check_int(value, "seed", owner, low=0)


def check_array(value: Any, name: str, owner: str, ndim: tuple[int, ...] = (1,)) -> np.ndarray:
    """A finite float64 array with one of the allowed numbers of dimensions (a copy, never a view)."""
    try:
        arr = np.array(value, dtype=np.float64)
    except (TypeError, ValueError):
        _fail(name, owner, "an array of numbers", value)
    if arr.ndim not in ndim:
        shapes = " or ".join({1: "(dim,)", 2: "(n, dim)"}.get(d, f"{d}-d") for d in ndim)
        _fail(name, owner, f"an array of shape {shapes}", f"an array of shape {arr.shape}")
    if arr.size == 0:
        _fail(name, owner, "a non-empty array", f"an array of shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        bad = int(np.size(arr) - np.count_nonzero(np.isfinite(arr)))
        _fail(name, owner, "finite (no NaN or inf)", f"an array with {bad} non-finite entries")
    return arr


def _range_text(kind: str, low, high, low_inc: bool, high_inc: bool) -> str:
    if low is not None and high is not None:
        lo = "[" if low_inc else "("
        hi = "]" if high_inc else ")"
        return f"{kind} in the range {lo}{low}, {high}{hi}"
    if low is not None:
        return f"{kind} {'>=' if low_inc else '>'} {low}"
    if high is not None:
        return f"{kind} {'<=' if high_inc else '<'} {high}"
    return kind


def check_budget(owner: str, seconds: Any = None, **counts: Any) -> tuple:
    """At least one budget; counts (evaluations, env steps, generations) ints >= 1, seconds a float > 0.
    Returns the checked counts in the order given, then seconds."""
    if seconds is None and all(v is None for v in counts.values()):
        names = ", ".join([*counts, "max_seconds"])
        raise ParameterError(f"{owner}() needs a budget: pass one of {names}.")
    checked = [None if v is None else check_int(v, k, owner, low=1) for k, v in counts.items()]
    sec = None if seconds is None else check_float(seconds, "max_seconds", owner, low=0.0, low_inclusive=False)
    return (*checked, sec)
