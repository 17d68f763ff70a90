"""States on disk as plain data: a zip of one JSON manifest and `.npy` arrays, read without pickle.

A state (an optimizer's `state_dict()`, a training loop's checkpoint) is a tree of dicts, lists,
tuples, strings, numbers, bools, None, bytes and numpy arrays/scalars. `dumps`/`save_state` write it
as an uncompressed zip holding `manifest.json` (the tree, with arrays replaced by numbered references,
the format name and version, and the SHA-256 of every array member) and `arrays/<i>.npy`.

Loading cannot run code and cannot be made to allocate more than the file holds: the manifest is
parsed by `json`, arrays by reading their `.npy` headers and checking that the declared shape and
dtype (plain numbers, bools and strings only; never objects) match the bytes present before a single
array is built; members must be stored uncompressed, so no member expands beyond the file; every
member's CRC (zip) and SHA-256 (manifest) are checked. Any problem is a `StateError` with a one-line
message naming the file. Checkpoints written by format 1 (pickle, evograd before this format) are
refused with a message saying so: there is no fallback to unpickling.
"""
from __future__ import annotations

import contextlib
import hashlib
import io
import json
import math
import os
import stat
import tempfile
import zipfile
from typing import IO, Any, Callable, Iterator

import numpy as np

from .validation import ParameterError

FORMAT = "evograd-state"
FORMAT_VERSION = 2
MANIFEST = "manifest.json"
_ARRAY_KINDS = "biufcSU"  # bool, ints, floats, complex, bytes and unicode strings: never objects or voids
_MAX_DEPTH = 200
_ZIP_DATE = (1980, 1, 1, 0, 0, 0)  # fixed member dates: the same state gives the same file bytes


class StateError(ParameterError):
    """A state file (or state tree) that cannot be loaded: damaged, hostile, from another format
    version, or not fitting the run it is resumed into. The message is one line. A `ParameterError`,
    since a bad state passed as `resume=` is a bad argument."""


# ---------------------------------------------------------------------------------------------- encode
def _encode(obj: Any, arrays: list[np.ndarray], path: str) -> Any:
    if obj is None or isinstance(obj, (bool, str)):
        return obj
    if isinstance(obj, np.generic):
        arrays.append(np.asarray(obj))
        return {"$scalar": len(arrays) - 1}
    if isinstance(obj, int):
        return int(obj)
    if isinstance(obj, float):
        return float(obj) if math.isfinite(obj) else {"$float": repr(float(obj))}
    if isinstance(obj, np.ndarray):
        arrays.append(obj)
        return {"$array": len(arrays) - 1}
    if isinstance(obj, (bytes, bytearray)):
        arrays.append(np.frombuffer(bytes(obj), dtype=np.uint8))
        return {"$bytes": len(arrays) - 1}
    if isinstance(obj, list):
        return [_encode(v, arrays, f"{path}[{i}]") for i, v in enumerate(obj)]
    if isinstance(obj, tuple):
        return {"$tuple": [_encode(v, arrays, f"{path}[{i}]") for i, v in enumerate(obj)]}
    if isinstance(obj, dict):
        if all(isinstance(k, str) and not k.startswith("$") for k in obj):
            return {k: _encode(v, arrays, f"{path}.{k}") for k, v in obj.items()}
        return {"$dict": [[_encode(k, arrays, path), _encode(v, arrays, f"{path}[{k!r}]")] for k, v in obj.items()]}
    raise TypeError(f"cannot save {type(obj).__name__} at {path or 'the top'} of a state: states hold dicts, lists, "
                    f"tuples, strings, numbers, bools, None, bytes and numpy arrays only")


def _npy_bytes(a: np.ndarray, where: str) -> bytes:
    a = np.asarray(a)
    if a.dtype.kind not in _ARRAY_KINDS or a.dtype.fields is not None:
        raise TypeError(f"cannot save an array of dtype {a.dtype} ({where}): only numbers, bools and strings")
    buf = io.BytesIO()
    np.lib.format.write_array(buf, a, allow_pickle=False)
    return buf.getvalue()


def dumps(state: Any) -> bytes:
    """The bytes of `state` in the state format (see the module docstring)."""
    arrays: list[np.ndarray] = []
    tree = _encode(state, arrays, "")
    members = [_npy_bytes(a, f"array {i}") for i, a in enumerate(arrays)]
    manifest = {"format": FORMAT, "version": FORMAT_VERSION,
                "arrays": [hashlib.sha256(m).hexdigest() for m in members], "tree": tree}
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_STORED) as zf:
        zf.writestr(zipfile.ZipInfo(MANIFEST, _ZIP_DATE), json.dumps(manifest, allow_nan=False).encode())
        for i, m in enumerate(members):
            zf.writestr(zipfile.ZipInfo(f"arrays/{i}.npy", _ZIP_DATE), m)
    return out.getvalue()


# ---------------------------------------------------------------------------------------------- decode
def _refuse_constant(name: str) -> Any:
    raise ValueError(f"non-standard JSON constant {name}")


def _read_npy(data: bytes, i: int) -> np.ndarray:
    """One `.npy` member, checked against its own header before anything is allocated."""
    fh = io.BytesIO(data)
    major, _minor = np.lib.format.read_magic(fh)
    if major == 1:
        shape, fortran, dtype = np.lib.format.read_array_header_1_0(fh)
    elif major in (2, 3):
        shape, fortran, dtype = np.lib.format.read_array_header_2_0(fh)
    else:
        raise ValueError(f"array {i}: unknown .npy version {major}")
    if dtype.kind not in _ARRAY_KINDS or dtype.fields is not None or dtype.subdtype is not None:
        raise ValueError(f"array {i}: dtype {dtype} is not allowed in a state")
    if not all(isinstance(n, int) and n >= 0 for n in shape):
        raise ValueError(f"array {i}: bad shape {shape!r}")
    payload = data[fh.tell():]
    declared = math.prod(shape) * dtype.itemsize
    if declared != len(payload):
        raise ValueError(f"array {i} declares {declared} bytes ({shape} of {dtype}) but holds {len(payload)}")
    return np.frombuffer(payload, dtype=dtype).reshape(shape, order="F" if fortran else "C").copy(order="K")


def _decode(node: Any, arrays: list[np.ndarray], depth: int = 0) -> Any:
    if depth > _MAX_DEPTH:
        raise ValueError(f"state nested deeper than {_MAX_DEPTH} levels")
    if node is None or isinstance(node, (bool, str, int, float)):
        return node
    if isinstance(node, list):
        return [_decode(v, arrays, depth + 1) for v in node]
    if not isinstance(node, dict):
        raise ValueError(f"unexpected {type(node).__name__} in the manifest")
    tags = [k for k in node if k.startswith("$")]
    if not tags:
        return {k: _decode(v, arrays, depth + 1) for k, v in node.items()}
    if len(node) != 1:
        raise ValueError(f"malformed tagged node with keys {sorted(node)[:4]}")
    tag, value = tags[0], node[tags[0]]
    if tag in ("$array", "$scalar", "$bytes"):
        if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value < len(arrays):
            raise ValueError(f"{tag} refers to array {value!r}, which the file does not hold")
        a = arrays[value]
        if tag == "$array":
            return a
        if tag == "$scalar":
            if a.ndim != 0:
                raise ValueError(f"$scalar {value} is not a 0-d array")
            return a[()]
        if a.dtype != np.uint8 or a.ndim != 1:
            raise ValueError(f"$bytes {value} is not a 1-d uint8 array")
        return a.tobytes()
    if tag == "$float":
        if value not in ("nan", "inf", "-inf"):
            raise ValueError(f"$float {value!r} is not nan, inf or -inf")
        return float(value)
    if tag == "$tuple" and isinstance(value, list):
        return tuple(_decode(v, arrays, depth + 1) for v in value)
    if tag == "$dict" and isinstance(value, list):
        out = {}
        for item in value:
            if not (isinstance(item, list) and len(item) == 2):
                raise ValueError("$dict items must be [key, value] pairs")
            key = _decode(item[0], arrays, depth + 1)
            try:
                hash(key)
            except TypeError:
                raise ValueError(f"unhashable {type(key).__name__} as a dict key") from None
            out[key] = _decode(item[1], arrays, depth + 1)
        return out
    raise ValueError(f"unknown tag {tag!r}")


def _members(zf: zipfile.ZipFile, size: int) -> dict[str, zipfile.ZipInfo]:
    infos = zf.infolist()
    names = [i.filename for i in infos]
    if len(set(names)) != len(names):
        raise ValueError("duplicate members")
    for info in infos:
        if info.compress_type != zipfile.ZIP_STORED or info.file_size != info.compress_size or info.file_size > size:
            raise ValueError(f"member {info.filename!r} is compressed or larger than the file")
    return {i.filename: i for i in infos}


def _parse(data: bytes) -> Any:
    if data[:1] == b"\x80":
        raise StateError("is a pickled state from evograd before state format 2 (format 1), which is not loaded "
                         "because unpickling can run code; start the run again without --resume")
    if data[:4] != b"PK\x03\x04":
        raise ValueError("not an evograd state (no zip signature)")
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        members = _members(zf, len(data))
        if MANIFEST not in members:
            raise ValueError("no manifest.json")
        manifest = json.loads(zf.read(MANIFEST), parse_constant=_refuse_constant)
        if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
            raise ValueError("the manifest does not describe an evograd state")
        version = manifest.get("version")
        if version != FORMAT_VERSION:
            raise StateError(f"was written in state format {version!r}; this evograd reads format {FORMAT_VERSION}")
        sums = manifest.get("arrays")
        if not isinstance(sums, list) or set(members) != {MANIFEST} | {f"arrays/{i}.npy" for i in range(len(sums))}:
            raise ValueError("the members do not match the manifest's array list")
        arrays = []
        for i, digest in enumerate(sums):
            raw = zf.read(f"arrays/{i}.npy")  # zipfile checks the member's CRC-32
            if hashlib.sha256(raw).hexdigest() != digest:
                raise ValueError(f"array {i} fails its SHA-256 check")
            arrays.append(_read_npy(raw, i))
        return _decode(manifest.get("tree"), arrays)


def loads(data: bytes, source: str = "state") -> Any:
    """The state tree held by `data` (bytes from `dumps`); `StateError` for anything else."""
    try:
        return _parse(bytes(data))
    except StateError as exc:
        raise StateError(f"{source} {exc}") from None
    except (ValueError, TypeError, KeyError, EOFError, OverflowError, RecursionError, MemoryError,
            zipfile.BadZipFile, zipfile.LargeZipFile, NotImplementedError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise StateError(f"{source} is not a valid evograd state ({first})") from None


# ---------------------------------------------------------------------------------------------- files
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


def load_state(path: str | os.PathLike) -> Any:
    """Read a state written by `save_state`; `StateError` (one line, naming the file) for anything else."""
    path = os.fspath(path)
    try:
        info = os.stat(path)
        if not stat.S_ISREG(info.st_mode):
            raise StateError(f"{path} is not a regular file")
        with open(path, "rb") as fh:
            data = fh.read()
    except StateError:
        raise
    except OSError as exc:
        raise StateError(f"{path}: cannot read the state ({exc.strerror or exc})") from None
    return loads(data, source=path)


@contextlib.contextmanager
def applying(what: str) -> Iterator[None]:
    """Turn the errors of restoring a loaded state into one-line `StateError`s: a state file that
    passed the format checks may still not fit the run it is resumed into (other shapes, missing
    keys, values of the wrong type)."""
    try:
        yield
    except StateError:
        raise
    except Exception as exc:  # any failure here comes from the state's content: one line, never a traceback
        msg = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        raise StateError(f"{what} cannot be restored ({type(exc).__name__}{': ' + msg if msg else ''})") from None
