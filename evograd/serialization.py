"""Saving optimizer states without trusting pickle.

An optimizer state is plain data (arrays, numbers, strings, lists, dicts). It is written with pickle
for speed and fidelity of numpy arrays, and read back through `RestrictedUnpickler`, which admits only
numpy's array/dtype reconstruction and, where a caller allows it, classes from named packages (the
CMA-ES engine's pycma objects). Anything else in the stream (os.system, builtins.eval, ...) is refused.
"""
from __future__ import annotations

import io
import os
import pickle
import tempfile
from typing import IO, Any, Callable, Iterable

_NUMPY_ALLOWED = {
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "scalar"),
    ("numpy._core.numeric", "_frombuffer"),
    ("numpy.core.numeric", "_frombuffer"),
    ("numpy.random._pickle", "__randomstate_ctor"),
    ("numpy.random._pickle", "__bit_generator_ctor"),
    ("numpy.random._pickle", "__generator_ctor"),
    ("numpy.random.mtrand", "RandomState"),
    ("builtins", "set"),
    ("builtins", "frozenset"),
    ("builtins", "complex"),
    ("builtins", "slice"),
    ("builtins", "range"),
    ("collections", "OrderedDict"),
    ("collections", "defaultdict"),
    # Plain functions a pycma engine keeps as option values (harmless if called with any arguments).
    ("numpy.linalg", "eigh"),
    ("cma.options_parameters", "is_feasible"),
    ("cma.evolution_strategy", "_pass"),
}
_NUMPY_DTYPE_PREFIXES = ("numpy.dtypes",)


class UnsafeStateError(pickle.UnpicklingError):
    """The stream references a class or function outside the allowed set."""


class RestrictedUnpickler(pickle.Unpickler):
    """Unpickler that only reconstructs numpy data and classes from `allowed_packages`.

    `allowed_packages` are top-level package names (e.g. ("cma",)); any class whose module lives in
    one of them may be instantiated (but no function from elsewhere can be called).
    """

    def __init__(self, file, allowed_packages: Iterable[str] = ()):
        super().__init__(file)
        self.allowed_packages = tuple(allowed_packages)

    def find_class(self, module: str, name: str):
        if (module, name) in _NUMPY_ALLOWED or module.startswith(_NUMPY_DTYPE_PREFIXES):
            return super().find_class(module, name)
        top = module.split(".")[0]
        if top in self.allowed_packages:
            obj = super().find_class(module, name)
            if isinstance(obj, type):
                return obj
            raise UnsafeStateError(f"refusing to call {module}.{name} while loading a state (only classes allowed)")
        raise UnsafeStateError(f"refusing to load {module}.{name}: not an allowed class in an evograd state")


def dumps(obj: Any) -> bytes:
    return pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)


def loads(data: bytes, allowed_packages: Iterable[str] = ()) -> Any:
    return RestrictedUnpickler(io.BytesIO(data), allowed_packages).load()


def atomic_write(path: str | os.PathLike, write: Callable[[IO[bytes]], Any]) -> None:
    """Write a file through `write(fh)` atomically: a crash mid-write leaves the previous file intact,
    never a truncated one (temp file in the same folder, fsync, rename)."""
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".tmp-", suffix="-" + os.path.basename(path))
    try:
        with os.fdopen(fd, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def save_state(path: str | os.PathLike, state: Any) -> None:
    """Write a state atomically (see `atomic_write`)."""
    data = dumps(state)
    atomic_write(path, lambda fh: fh.write(data))


def load_state(path: str | os.PathLike, allowed_packages: Iterable[str] = ("cma",)) -> Any:
    with open(path, "rb") as fh:
        return loads(fh.read(), allowed_packages)
