"""Parameter checks with one message shape, run in constructors before any work starts.

Every message names the parameter and its owner the same way (scikit-learn's habit), e.g.
"The 'popsize' parameter of CMAES must be an int >= 2. Got 1 instead.", so a user who mistypes a
config value learns which key to fix without reading a traceback.
"""
from __future__ import annotations

import numbers
import os
import re
from typing import Any, Iterable

import numpy as np


class ParameterError(ValueError):
    """A hyperparameter or argument that cannot work; raised before any evaluation runs.

    The message is always one line (the CLI prints it as `evograd: error: ...`): line breaks in it, such as
    those in the repr of a 2-d numpy array or in a library's own error text, become single spaces."""

    def __init__(self, message: Any = "", *args: Any):
        if isinstance(message, str):
            message = re.sub(r"\s*\n\s*", " ", message).strip()
        super().__init__(message, *args)


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
    try:
        value = float(value)
    except OverflowError:  # an int past float's range, e.g. 10**400
        _fail(name, owner, what, value)
    if not np.isfinite(value):
        _fail(name, owner, what, value)
    if low is not None and (value < low or (not low_inclusive and value == low)):
        _fail(name, owner, what, value)
    if high is not None and (value > high or (not high_inclusive and value == high)):
        _fail(name, owner, what, value)
    return value


def check_choice(value: Any, name: str, owner: str, choices: Iterable[Any]) -> Any:
    choices = list(choices)
    if not any(_equal(value, c) for c in choices):  # not `in`: an array value would raise numpy's ValueError
        _fail(name, owner, "one of " + ", ".join(repr(c) for c in choices), value)
    return value


def _equal(value: Any, choice: Any) -> bool:
    if value is choice:
        return True
    if isinstance(value, np.ndarray):
        return False
    try:
        return bool(value == choice)
    except (TypeError, ValueError):
        return False


def check_bool(value: Any, name: str, owner: str) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        _fail(name, owner, "a bool", value)
    return bool(value)


def check_seed(value: Any, owner: str) -> int | None:
    if value is None:
        return None
    return check_int(value, "seed", owner, low=0)


def check_array(value: Any, name: str, owner: str, ndim: tuple[int, ...] = (1,)) -> np.ndarray:
    """A finite float64 array of real numbers with one of the allowed numbers of dimensions (a copy, never a
    view). Complex numbers, strings and None are refused, never converted (numpy would drop an imaginary part
    with only a warning and read "1.5" as 1.5)."""
    try:
        arr = np.array(real_array(value), dtype=np.float64)
    except NotRealError as exc:
        _fail(name, owner, "an array of real numbers", f"an array with {exc.describe()}")
    if arr.ndim not in ndim:
        shapes = " or ".join({1: "(dim,)", 2: "(n, dim)"}.get(d, f"{d}-d") for d in ndim)
        _fail(name, owner, f"an array of shape {shapes}", f"an array of shape {arr.shape}")
    if arr.size == 0:
        _fail(name, owner, "a non-empty array", f"an array of shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        bad = int(np.size(arr) - np.count_nonzero(np.isfinite(arr)))
        _fail(name, owner, "finite (no NaN or inf)", f"an array with {bad} non-finite entries")
    return arr


class NotRealError(TypeError):
    """`real_array` met an entry that is not a real number; `index` is its flat index (None: the whole value)."""

    def __init__(self, index: int | None, item: Any):
        self.index, self.item = index, item
        super().__init__(self.describe())

    @property
    def what(self) -> str:
        """The entry and its type, e.g. "'1.5' (str)"."""
        return f"{_short_repr(self.item)} ({type(self.item).__name__})"

    def describe(self) -> str:
        return self.what if self.index is None else f"{self.what} at index {self.index}"


def _short_repr(item: Any) -> str:
    text = repr(item)
    return text if len(text) <= 60 else text[:57] + "..."


_REAL_KINDS = "fiub"  # float, int, unsigned, bool


def real_array(value: Any) -> np.ndarray:
    """`value` (a number, a sequence of numbers, a numpy array or a CPU torch tensor) as a numpy array of a
    real dtype, without a float64 cast that would hide mistakes: raises NotRealError at the first entry that is
    None, a string, a complex number or another object (a ragged sequence is refused as a whole)."""
    if hasattr(value, "detach") and hasattr(value, "cpu"):  # torch tensor
        value = value.detach().cpu().numpy()
    try:
        arr = np.asarray(value)
    except (TypeError, ValueError):  # ragged nesting
        raise NotRealError(None, value) from None
    if arr.dtype.kind in _REAL_KINDS:
        return arr
    if arr.size == 0:
        raise NotRealError(None, value)
    if arr.dtype.kind != "O" and not isinstance(value, np.ndarray):
        arr = np.array(value, dtype=object)  # [1.0, "x"] became all strings: find the entry that was not a number
    if arr.dtype.kind == "O":
        for i, item in enumerate(arr.reshape(-1)):  # Decimal and other types with __float__ count; complex never
            if not isinstance(item, numbers.Real) and (isinstance(item, numbers.Complex) or
                                                       not hasattr(type(item), "__float__")):
                raise NotRealError(i if arr.ndim else None, item.item() if isinstance(item, np.generic) else item)
        try:
            return arr.astype(np.float64)
        except OverflowError:  # ints past float's range (10**400) are +-inf, as numpy's own int64 casts never are
            return np.array([_float(x) for x in arr.reshape(-1)], dtype=np.float64).reshape(arr.shape)
    flat = arr.reshape(-1)  # a numpy array of complex numbers (named at the first non-zero imaginary part) or text
    i = int(np.argmax(flat.imag != 0)) if arr.dtype.kind == "c" else 0
    raise NotRealError(i if arr.ndim else None, flat[i].item() if isinstance(flat[i], np.generic) else flat[i])


def _float(x: Any) -> float:
    try:
        return float(x)
    except OverflowError:
        return float("inf") if x > 0 else float("-inf")


# ---------------------------------------------------------------- memory
_FALLBACK_MEMORY = 64 * 2**30  # where the OS does not report its physical memory


def physical_memory() -> int:
    """The machine's physical memory in bytes (os.sysconf), or 64 GiB where the OS does not say."""
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):
        total = 0
    return int(total) if total and total > 0 else _FALLBACK_MEMORY


def memory_problem(count: float, what: str, itemsize: int = 8, unit: str = "float64 values") -> str | None:
    """None when `count` values of `itemsize` bytes fit, else the reason, e.g. "must fit in memory: popsize x
    dim = 1e+12 x 4 = 4e+12 float64 values = 29.1 TiB, more than half of this machine's 125 GiB".

    The bound is half the machine's physical memory (`physical_memory`) for the one array (or list) named:
    an algorithm holds at least one more of that size (the candidates and the noise that made them, a
    rollout and its advantages), so a size over it cannot run here. Sizes under it are not promised to fit;
    this check exists to refuse, before anything is allocated, the sizes that certainly do not (a typo such
    as 1e12), with the key to fix instead of a MemoryError from deep inside numpy or torch.
    """
    total = physical_memory()
    nbytes = count * itemsize  # exact for ints: 10**400 has no float
    if nbytes <= total // 2:
        return None
    return (f"must fit in memory: {what} = {_count(count)} {unit} = {_bytes(nbytes)}, more than half "
            f"of this machine's {_bytes(total)}")


def check_memory(value: Any, name: str, owner: str, count: float, what: str, itemsize: int = 8,
                 unit: str = "float64 values") -> None:
    """Raise ParameterError naming `name` when `count` values cannot fit (see `memory_problem`)."""
    problem = memory_problem(count, what, itemsize, unit)
    if problem is not None:
        raise ParameterError(f"The '{name}' parameter of {owner} {problem}. Got {value!r} instead.")


def _count(n: float) -> str:
    if isinstance(n, float) and not np.isfinite(n):
        return "inf"
    if n < 1e6:
        return str(int(n))
    if n < 1e300:
        return f"{float(n):.3g}"
    digits = str(int(n))
    return f"{digits[0]}.{digits[1:3]}e+{len(digits) - 1}"


def _bytes(n: float) -> str:
    if isinstance(n, float) and not np.isfinite(n):
        return "inf B"
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if n < 1024:
            return f"{n:.0f} B" if unit == "B" else f"{n:.3g} {unit}"
        n = n / 1024 if n < 1e300 else n // 1024
    return f"{_count(n)} EiB"


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
