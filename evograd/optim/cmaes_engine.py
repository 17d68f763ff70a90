"""The pycma engine of a CMA-ES state: pickled with its callables named, read back through an exact
allow-list of pycma 4.5 classes (`evograd.core.restricted_pickle`), then checked before it runs.

pycma has no state format of its own, so the engine object itself is saved. Nothing in a state file may
run code or make pycma call something the file chose: the allow-list admits classes that are never
called, the functions pycma keeps (its `randn`, eigen-solver, `is_feasible`) travel by name, the graph
is walked for stray callables, and one ask/tell on a copy proves the loaded values can run.
"""
from __future__ import annotations

import copy
import math
import numbers
from typing import TYPE_CHECKING, Any

import numpy as np

from ..core import restricted_pickle
from ..core.validation import ParameterError, check_memory

if TYPE_CHECKING:
    import cma

# Options that change nothing in the search: no console output, no log files, and no per-iteration
# look-up of a "cma_signals.in" file in the working directory (which could otherwise rewrite options).
QUIET_OPTIONS = {"verbose": -9, "verb_log": 0, "signals_filename": ""}


# The pycma classes an engine is made of, for the pinned pycma minor version (pyproject: cma 4.5.*).
# Each pair must be exactly a class's (__module__, __qualname__): `restricted_pickle.allow_classes` checks.
CMA_CLASSES = (
    ("cma.boundary_handler", "BoundNone"),
    ("cma.boundary_handler", "BoundTransform"),
    ("cma.evolution_strategy", "CMAEvolutionStrategy"),
    ("cma.evolution_strategy", "_CMASolutionDict_empty"),
    ("cma.evolution_strategy", "_CMASolutionDict_functional"),
    ("cma.evolution_strategy", "_CMAStopDict"),
    ("cma.evolution_strategy", "_StopTolXStagnation"),
    ("cma.logger", "CMADataLogger"),
    ("cma.optimization_tools", "BestSolution"),
    ("cma.options_parameters", "CMAOptions"),
    ("cma.options_parameters", "CMAParameters"),
    ("cma.recombination_weights", "RecombinationWeights"),
    ("cma.sampler", "GaussFullSampler"),
    ("cma.sampler", "GaussStandardConstant"),
    ("cma.sigma_adaptation", "CMAAdaptSigmaCSA"),
    ("cma.transformations", "DiagonalDecoding"),
    ("cma.transformations", "GenoPheno"),
    ("cma.transformations", "RoundIntegerVariables"),
    ("cma.utilities.utils", "BlancClass"),
    ("cma.utilities.utils", "DictFromTagsInString"),
    ("cma.utilities.utils", "ElapsedWCTime"),
    ("cma.utilities.utils", "MoreToWrite"),
    ("cma.utilities.utils", "SolutionDict"),
)


def _engine_callables(rs: np.random.RandomState) -> dict[str, Any]:
    """The functions pycma keeps among an engine's options, by the name they travel under."""
    import cma

    return {"randn": rs.randn, "numpy.linalg.eigh": np.linalg.eigh,
            "cma.options_parameters.is_feasible": cma.options_parameters.is_feasible,
            "cma.evolution_strategy._pass": cma.evolution_strategy._pass}


def dump_engine(es: cma.CMAEvolutionStrategy, rs: np.random.RandomState) -> bytes:
    """Pickle an engine with its callables (the `randn` bound to `rs`, pycma's option functions)
    replaced by names, so the stream holds classes and numpy data only and `load_engine` can read it
    through the allow-list. `rs` itself travels as plain data beside it."""
    by_id = {id(fn): name for name, fn in _engine_callables(rs).items() if name != "randn"}

    def persistent_id(obj: Any) -> str | None:
        name = by_id.get(id(obj))
        if name is None and getattr(obj, "__self__", None) is rs and getattr(obj, "__name__", None) == "randn":
            name = "randn"
        return name  # anything else is pickled as is; what the allow-list lacks is refused on load

    return restricted_pickle.dumps(es, persistent_id)


def load_engine(data: Any, rs: np.random.RandomState, dim: int | None = None) -> cma.CMAEvolutionStrategy:
    """Unpickle an engine through the exact allow-list, re-apply the options that keep it from writing or
    reading files, re-key its solution archives for this process, and check that it works (`_check_engine`)."""
    import cma

    if not isinstance(data, bytes):
        raise ParameterError("CMAES: the saved engine must be bytes.")
    callables = _engine_callables(rs)  # one table: the check below compares identities with it
    classes = restricted_pickle.allow_classes(CMA_CLASSES)
    try:
        es = restricted_pickle.loads(data, classes, callables)
    except restricted_pickle.UnsafeStateError:
        raise
    except Exception as exc:  # a damaged stream: truncated, bad opcodes, wrong stack shapes
        raise ParameterError(f"CMAES: the saved engine cannot be read ({type(exc).__name__}: {exc}).") from None
    if type(es) is not cma.CMAEvolutionStrategy or not isinstance(es.opts, dict):
        raise ParameterError("CMAES: the saved engine is not a CMAEvolutionStrategy.")
    dict.update(es.opts, QUIET_OPTIONS)  # a state file must not switch on pycma's log files or signal file
    for archive in (es.sent_solutions, getattr(es, "archive", None)):
        _rehash(archive)
    _check_callables(es, callables, set(classes.values()))
    _check_engine(es, dim)
    return es


def _check_callables(es: cma.CMAEvolutionStrategy, callables: dict[str, Any], classes: set[type]) -> None:
    """pycma calls some values it holds (its `randn`, the eigen-solver, `is_feasible`, the boundary
    handler class): walk the loaded object graph and refuse any class or function in it other than the
    named callables we attached and pycma's two boundary-handler classes, so a file cannot make pycma call
    an allowed class (say, a new CMAEvolutionStrategy that would write log files) in their place."""
    import cma

    allowed = {id(v) for v in callables.values()}
    allowed_types = {cma.boundary_handler.BoundNone, cma.boundary_handler.BoundTransform}
    seen, todo = set(), [es]
    while todo:
        obj = todo.pop()
        if id(obj) in seen or isinstance(obj, (np.ndarray, str, bytes, numbers.Number)) or obj is None:
            continue
        seen.add(id(obj))
        if isinstance(obj, type):
            if obj not in allowed_types:
                raise restricted_pickle.UnsafeStateError(f"refusing the class {obj.__name__} as a value in an engine")
        elif type(obj) in classes or isinstance(obj, (dict, list, tuple, set)):
            if isinstance(obj, dict):
                todo.extend(obj.values())
            elif isinstance(obj, (list, tuple, set)):
                todo.extend(obj)
            todo.extend(getattr(obj, "__dict__", {}).values())
        elif callable(obj) and id(obj) not in allowed:
            raise restricted_pickle.UnsafeStateError(f"refusing the callable {obj!r} as a value in an engine")


def _check_engine(es: cma.CMAEvolutionStrategy, dim: int | None) -> None:
    """A loaded engine is plain pycma objects, but their values come from the file: check the dimension,
    mean, step size and population size, then run one ask and tell on a copy, so that a state which
    loads but cannot run fails here in one line instead of mid-run (the copy leaves the real engine and
    its random stream untouched)."""
    mean = getattr(es, "mean", None)
    n = int(getattr(es, "N", -1))
    if dim is not None and n != dim:
        raise ParameterError(f"CMAES: the saved engine searches dim {n}, this optimizer {dim}.")
    if not (isinstance(mean, np.ndarray) and mean.dtype == np.float64 and mean.shape == (n,)
            and np.all(np.isfinite(mean))):
        raise ParameterError("CMAES: the saved engine's mean is not a finite float64 vector of its dimension.")
    sigma, popsize = getattr(es, "sigma", None), getattr(es, "popsize", None)
    if not (isinstance(sigma, float) and math.isfinite(sigma) and sigma > 0):
        raise ParameterError(f"CMAES: the saved engine's step size {sigma!r} is not a positive float.")
    if not (isinstance(popsize, int) and popsize >= 2):
        raise ParameterError(f"CMAES: the saved engine's popsize {popsize!r} is not an int >= 2.")
    check_memory(popsize, "popsize", "CMAES (saved engine)", float(popsize) * n, f"popsize x dim = {popsize} x {n}")
    trial = copy.deepcopy(es)
    try:
        X = trial.ask()
        trial.tell(X, [float(i) for i in range(len(X))])
    except Exception as exc:  # the state's own values broke pycma: one line, never a traceback
        raise ParameterError(f"CMAES: the saved engine does not run ({type(exc).__name__}: {exc}).") from None


def _rehash(archive: Any) -> None:
    """pycma files asked solutions under hash(x.tobytes()), which Python salts per process; re-key them
    so a state loaded in another process still finds its solutions in `tell` (bit-identical updates)."""
    if archive is None or not hasattr(archive, "_unhashed_keys"):
        return
    old_data, old_keys, old_same = archive.data, archive._unhashed_keys, archive.data_with_same_key
    archive.data, archive._unhashed_keys, archive.data_with_same_key = {}, {}, {}
    for k, value in old_data.items():
        x = old_keys.get(k, k)
        new = archive.key(x)
        archive.data[new] = value
        archive._unhashed_keys[new] = x
        if k in old_same:
            archive.data_with_same_key[new] = old_same[k]
