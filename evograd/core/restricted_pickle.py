"""Pickles of third-party objects that must be read back without letting the stream run code.

Only the CMA-ES engine needs this: pycma's `CMAEvolutionStrategy` is a graph of about twenty pycma
objects with no public state format. The engine is pickled (inside a state file, as bytes) and read
back by `RestrictedUnpickler`, which walks pickle's opcodes itself (the pure-Python unpickler) and
admits exactly:

- classes from an exact (module, qualname) allow-list given by the caller, each checked at build time
  to be the class whose `__module__` and `__qualname__` are that pair, created only with `cls.__new__`
  and filled only through their `__dict__` (no `__init__`, no `__setstate__`, no `__reduce__` call);
- numpy's array, dtype and scalar reconstructors, by exact name, called only with the arguments numpy
  itself writes for plain numbers (a dtype from a type code, an empty `(0,)` array that its `__setstate__`
  fills from bytes whose count matches its shape and dtype, a scalar or buffer of the dtype's size): numpy
  trusts these arguments, and a crafted dtype state can make an array read memory it does not own;
- persistent references to a fixed table of callables the caller names (pycma keeps functions, such as
  its random-number source, among its options; the stream carries only their names).

Every other global, any dotted name, and the opcodes that call arbitrary callables (REDUCE on anything
but the numpy reconstructors, INST, OBJ) raise `UnsafeStateError` before anything is called.
"""
from __future__ import annotations

import functools
import importlib
import io
import math
import pickle
from typing import Any, Callable, Iterable

import numpy as np


class UnsafeStateError(pickle.UnpicklingError):
    """The stream asks for something outside the allow-list."""


# numpy's type codes for bools and plain numbers, in every byte order numpy writes (never void, object,
# structured or string types)
_DTYPE_CODES = frozenset(order + code for order in ("", "<", ">", "|", "=")
                         for code in ("?", "b1", "i1", "i2", "i4", "i8", "u1", "u2", "u4", "u8",
                                      "f2", "f4", "f8", "c8", "c16"))


def plain_dtype(d: Any) -> bool:
    """A numpy dtype of plain numbers or bools: no fields, no sub-arrays, no objects."""
    return (isinstance(d, np.dtype) and d.kind in "biufc" and d.fields is None and d.subdtype is None
            and not d.hasobject)


def _shape_ok(shape: Any) -> bool:
    return isinstance(shape, tuple) and all(type(n) is int and n >= 0 for n in shape)


def _array_state_ok(state: Any) -> bool:
    """(1, shape, dtype, fortran, bytes) with bytes exactly the size the shape and dtype declare."""
    return (isinstance(state, tuple) and len(state) == 5 and state[0] == 1 and _shape_ok(state[1])
            and plain_dtype(state[2]) and isinstance(state[3], bool) and isinstance(state[4], bytes)
            and len(state[4]) == math.prod(state[1]) * state[2].itemsize)


@functools.lru_cache(maxsize=1)
def _numpy_reconstructors() -> dict[tuple[str, str], Any]:
    """numpy's own reconstructors by exact name, under both spellings numpy writes (`numpy.core` before
    2.0, `numpy._core` since), each resolved to this numpy's function (no module is imported by name)."""
    core = "numpy._core" if int(np.__version__.split(".")[0]) >= 2 else "numpy.core"
    multiarray = importlib.import_module(f"{core}.multiarray")
    numeric = importlib.import_module(f"{core}.numeric")
    table: dict[tuple[str, str], Any] = {("numpy", "ndarray"): np.ndarray, ("numpy", "dtype"): np.dtype}
    for spelling in ("numpy.core", "numpy._core"):
        table[(f"{spelling}.multiarray", "_reconstruct")] = multiarray._reconstruct
        table[(f"{spelling}.multiarray", "scalar")] = multiarray.scalar
        table[(f"{spelling}.numeric", "_frombuffer")] = numeric._frombuffer
    return table


def allow_classes(pairs: Iterable[tuple[str, str]]) -> dict[tuple[str, str], type]:
    """Resolve an allow-list of (module, qualname) pairs to classes, refusing any pair that is dotted or
    does not name, exactly, a class defined under that module and qualname (a re-exported function or a
    module attribute that merely has the name is refused)."""
    table = {}
    for module, name in pairs:
        if "." in name:
            raise ValueError(f"allow-list entry {module}.{name}: dotted names are not allowed")
        obj = getattr(importlib.import_module(module), name)
        if not (isinstance(obj, type) and obj.__module__ == module and obj.__qualname__ == name):
            raise ValueError(f"allow-list entry ({module!r}, {name!r}) does not resolve to that class")
        table[(module, name)] = obj
    return table


class RestrictedUnpickler(pickle._Unpickler):  # the pure-Python unpickler: its opcodes can be overridden
    """Unpickle with `classes` (from `allow_classes`), numpy's reconstructors and `persistent` only."""

    dispatch = dict(pickle._Unpickler.dispatch)

    def __init__(self, file, classes: dict[tuple[str, str], type], persistent: dict[str, Any] | None = None):
        super().__init__(file)
        self._classes = dict(classes)
        self._class_set = set(self._classes.values())
        self._numpy = _numpy_reconstructors()
        self._reduce_ok = {id(f) for f in self._numpy.values() if not isinstance(f, type) or f is np.dtype}
        self._reconstruct = {id(f) for (m, n), f in self._numpy.items() if n == "_reconstruct"}
        self._persistent = dict(persistent or {})

    def find_class(self, module: str, name: str) -> Any:
        key = (module, name)
        if key in self._classes:
            return self._classes[key]
        if key in self._numpy:
            return self._numpy[key]
        raise UnsafeStateError(f"refusing {module}.{name}: not in the allow-list of this state")

    def persistent_load(self, pid: Any) -> Any:
        if isinstance(pid, str) and pid in self._persistent:
            return self._persistent[pid]
        raise UnsafeStateError(f"refusing persistent reference {pid!r}")

    def _refuse(self) -> None:
        raise UnsafeStateError("refusing an opcode that calls an arbitrary callable")

    def _load_reduce(self) -> None:
        args = self.stack.pop()
        func = self.stack[-1]
        if id(func) not in self._reduce_ok or not isinstance(args, tuple) or not self._numpy_args_ok(func, args):
            raise UnsafeStateError(f"refusing to call {getattr(func, '__name__', type(func).__name__)} with these "
                                   "arguments while loading")
        self.stack[-1] = func(*args)

    def _numpy_args_ok(self, func: Any, args: tuple) -> bool:
        """Only the arguments numpy itself writes for plain numeric data: a dtype from its type code, an
        empty array to fill, a scalar or a buffer whose byte count matches the dtype (numpy trusts these
        arguments; a crafted dtype can make an array read memory it does not own)."""
        if func is np.dtype:
            return len(args) == 3 and args[0] in _DTYPE_CODES and args[1:] in ((False, True), (0, 1))
        if id(func) in self._reconstruct:
            return len(args) == 3 and args[0] is np.ndarray and args[1] == (0,) and args[2] == b"b"
        name = getattr(func, "__name__", "")
        if name == "scalar":
            return (len(args) == 2 and plain_dtype(args[0]) and isinstance(args[1], bytes)
                    and len(args[1]) == args[0].itemsize)
        if name == "_frombuffer":
            return (len(args) == 4 and isinstance(args[0], bytes) and plain_dtype(args[1]) and _shape_ok(args[2])
                    and args[3] in ("C", "F") and len(args[0]) == math.prod(args[2]) * args[1].itemsize)
        return False
    def _load_newobj(self) -> None:
        args = self.stack.pop()
        cls = self.stack.pop()
        if cls not in self._class_set or not isinstance(args, tuple):
            raise UnsafeStateError(f"refusing to create {getattr(cls, '__name__', cls)!r}")
        self.append(cls.__new__(cls, *args))

    def _load_newobj_ex(self) -> None:
        kwargs = self.stack.pop()
        args = self.stack.pop()
        cls = self.stack.pop()
        if cls not in self._class_set or not isinstance(args, tuple) or kwargs:
            raise UnsafeStateError(f"refusing to create {getattr(cls, '__name__', cls)!r}")
        self.append(cls.__new__(cls, *args))

    def _load_build(self) -> None:
        state = self.stack.pop()
        inst = self.stack[-1]
        if isinstance(inst, np.dtype):  # built from a type code just now: its state can only be its own
            if state != inst.__reduce__()[2]:
                raise UnsafeStateError(f"refusing a crafted state for dtype {inst}")
            return
        if type(inst) is np.ndarray:
            if not _array_state_ok(state):
                raise UnsafeStateError("refusing an array state that numpy does not write for plain numbers")
            inst.__setstate__(state)
            return
        if type(inst) not in self._class_set:
            raise UnsafeStateError(f"refusing to set the state of a {type(inst).__name__}")
        if isinstance(state, tuple) and len(state) == 2 and state[1] is None:
            state = state[0]
        if not (isinstance(state, dict) and all(type(k) is str for k in state)):
            raise UnsafeStateError(f"refusing a non-dict state for {type(inst).__name__}")
        inst.__dict__.update(state)

    dispatch[pickle.REDUCE[0]] = _load_reduce
    dispatch[pickle.NEWOBJ[0]] = _load_newobj
    dispatch[pickle.NEWOBJ_EX[0]] = _load_newobj_ex
    dispatch[pickle.BUILD[0]] = _load_build
    dispatch[pickle.INST[0]] = _refuse
    dispatch[pickle.OBJ[0]] = _refuse


def dumps(obj: Any, persistent_id: Callable[[Any], str | None] | None = None) -> bytes:
    """Pickle `obj`; `persistent_id(o)` names the objects that travel by name (see `RestrictedUnpickler`)."""
    buf = io.BytesIO()
    pickler = pickle.Pickler(buf, protocol=4)
    if persistent_id is not None:
        pickler.persistent_id = persistent_id
    pickler.dump(obj)
    return buf.getvalue()


def loads(data: bytes, classes: dict[tuple[str, str], type], persistent: dict[str, Any] | None = None) -> Any:
    return RestrictedUnpickler(io.BytesIO(data), classes, persistent).load()
