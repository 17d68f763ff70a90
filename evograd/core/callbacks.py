"""The one callback form of every training loop: `callback(row) -> bool | None`.

`minimize`, `train`, `train_ppo` and `train_reinforce` call the callback after each generation (or
update) with that generation's history row, the dict they append to `result.history`. One stop rule
everywhere: True stops the run after that generation; None or False continue; any other return value is
a `CallbackReturnError` naming the callback, because a 1, a string or an array is a bug that would
otherwise be read silently as "stop" in one loop and "go on" in another. numpy's bool counts as a bool,
so `lambda row: row["best_value"] < 1e-6` works whether the row holds Python or numpy numbers.

The old form `callback(optimizer, row)` (minimize's until issue 13) still works with a
DeprecationWarning: a callable with two or more required positional parameters is given the loop's
optimizer first (in `train_ppo`/`train_reinforce`, the Adam stepping the network's parameters).
"""
from __future__ import annotations

import inspect
import os
import sys
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np

from .validation import ParameterError

RowCallback = Callable[[dict], "bool | None"]


class CallbackReturnError(TypeError):
    """A callback returned something other than True, False or None."""


def callback_name(callback: Any) -> str:
    """How an error names a callback: its qualified name where it has one, else its repr."""
    name = getattr(callback, "__qualname__", None) or getattr(type(callback), "__qualname__", None)
    module = getattr(callback, "__module__", None)
    return f"{module}.{name}" if name and module else repr(callback)


def takes_optimizer_and_row(callback: Callable) -> bool:
    """Whether `callback` has the deprecated (optimizer, row) form: two or more required positional
    parameters. A callable without a signature (some builtins) is taken to be the new one-argument form."""
    try:
        params = inspect.signature(callback).parameters.values()
    except (TypeError, ValueError):
        return False
    positional = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    return sum(p.kind in positional and p.default is inspect.Parameter.empty for p in params) >= 2


def row_callback(callback: Callable | None, owner: str,
                 optimizer: Callable[[], Any]) -> Callable[[dict], bool] | None:
    """`callback` as a function of the row that returns whether to stop (None stays None).

    owner names the trainer in messages; optimizer() gives the first argument of a deprecated two-argument
    callback (a function, so a loop may build its optimizer after checking its arguments). The
    DeprecationWarning points at the first caller outside evograd: the user's call of the trainer.
    """
    if callback is None:
        return None
    if not callable(callback):
        raise ParameterError(f"The 'callback' parameter of {owner} must be callable. Got {callback!r} instead.")
    name = callback_name(callback)
    call = callback
    if takes_optimizer_and_row(callback):
        warnings.warn(f"{owner}: the callback {name} takes (optimizer, row), a deprecated form; write "
                      f"callback(row) -> bool | None instead (row: the generation's history row; True stops)",
                      DeprecationWarning, stacklevel=_first_level_outside_evograd())
        call = lambda row: callback(optimizer(), row)  # noqa: E731

    def stop(row: dict) -> bool:
        return wants_stop(call(row), name, owner)

    return stop


def _first_level_outside_evograd() -> int:
    """The `stacklevel`, for a warning issued by our caller, of the first frame outside the evograd package."""
    package = os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + os.sep
    frame, level = sys._getframe(1), 1
    while frame is not None and os.path.abspath(frame.f_code.co_filename).startswith(package):
        frame, level = frame.f_back, level + 1
    return level


def wants_stop(value: Any, name: str, owner: str) -> bool:
    """The one stop rule: True stops, None and False continue, anything else is an error."""
    if value is None:
        return False
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    raise CallbackReturnError(
        f"the callback {name} given to {owner} returned {value!r} ({type(value).__name__}); a callback returns "
        f"True to stop after this generation, or None or False to continue")
