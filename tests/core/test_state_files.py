"""State files a user may be handed: plain data that loads without running code, and hostile files refused.

Every hostile case is resumed the way a user would (`run_job(..., resume=True)`, and the CLI for a few):
it must fail with a one-line `StateError`, run no command (a canary file that each gadget would create
stays absent), and leave every file of the run directory byte for byte as it was.
"""
from __future__ import annotations

import hashlib
import json
import os
import pickle
import struct
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

from evograd.core import serialization
from evograd.core.restricted_pickle import UnsafeStateError, allow_classes
from evograd.core.serialization import StateError
from evograd.experiments import experiment
from evograd.optim import registry
from evograd.optim.cmaes import CMA_CLASSES, CMAES

CONFIG = {"name": "t", "task": {"env": {"id": "CartPole-v1"}}, "budget": {"env_steps": 3000},
          "evaluation": {"every": 1000, "episodes": 2}, "policy": {"type": "linear"},
          "methods": {"cmaes": {"name": "cmaes", "sigma0": 0.5},
                      "ppo": {"name": "ppo", "n_envs": 2, "n_steps": 32, "batch_size": 32, "n_epochs": 1}}}
RL_BUDGET = {"env_steps": 256}


# ---------------------------------------------------------------------------------------------- helpers
def _snapshot(root: Path) -> dict[str, str]:
    """Every file's bytes, except the job lock (it records the pid of whichever process last held it)."""
    out = {}
    for p in sorted(root.rglob("*")):
        rel = str(p.relative_to(root))
        if p.name == "job.lock":
            continue
        if p.is_symlink():
            out[rel] = "link to " + os.readlink(p)
        else:
            out[rel] = "dir" if p.is_dir() else hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def _u(s: str) -> bytes:
    b = s.encode()
    return b"\x8c" + bytes([len(b)]) + b if len(b) < 256 else b"X" + struct.pack("<I", len(b)) + b


def _global(module: str, name: str) -> bytes:
    return _u(module) + _u(name) + b"\x93"  # STACK_GLOBAL


def _call(module: str, name: str, arg: bytes) -> bytes:
    """A protocol-4 pickle that calls module.name(arg)."""
    return b"\x80\x04" + _global(module, name) + arg + b"\x85R."  # TUPLE1, REDUCE, STOP


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """A cmaes and a ppo run directory with a checkpoint each (CartPole, tiny budgets)."""
    out = tmp_path_factory.mktemp("runs")
    for label, budget in (("cmaes", CONFIG["budget"]), ("ppo", RL_BUDGET)):
        res = experiment.run_job({**CONFIG, "budget": budget}, label, 0, out)
        assert res["status"] == "ok", res
        assert (experiment.job_dir(out, label, 0) / experiment.CHECKPOINT).is_file()
    return out


@pytest.fixture()
def canary(tmp_path):
    path = tmp_path / "CANARY"
    yield path
    assert not path.exists(), "a hostile state ran a command"


def _resume_refused(out: Path, label: str, write, match: str | None = None) -> StateError:
    """Overwrite the checkpoint through `write(path)` in a copy of the run, resume it, expect a one-line
    StateError and an untouched directory."""
    import shutil

    work = out.parent / f"work-{label}"
    shutil.rmtree(work, ignore_errors=True)
    shutil.copytree(out, work)
    write(experiment.job_dir(work, label, 0) / experiment.CHECKPOINT)
    before = _snapshot(work)
    budget = CONFIG["budget"] if label == "cmaes" else RL_BUDGET
    with pytest.raises(StateError) as info:
        experiment.run_job({**CONFIG, "budget": {"env_steps": budget["env_steps"] * 2}}, label, 0, work, resume=True)
    msg = str(info.value)
    assert "\n" not in msg and msg, msg
    if match:
        assert match in msg, msg
    assert _snapshot(work) == before, "the run directory changed"
    return info.value


def _with_engine(out: Path, payload: bytes):
    state = serialization.load_state(experiment.job_dir(out, "cmaes", 0) / experiment.CHECKPOINT)

    def write(path):
        state["optimizer"]["algorithm"]["engine"] = payload
        serialization.save_state(path, state)

    return write


# ---------------------------------------------------------------------------------------------- round trips
@pytest.mark.parametrize("name", [n for n in registry.available() if registry.usable(n)])
def test_every_optimizer_state_round_trips_through_a_file_bit_identically(name, tmp_path):
    fn = lambda X: np.sum((X - 0.3) ** 2, axis=1)
    kw = {"x0": np.full(4, 1.0), "seed": 3}
    a = registry.make(name, **kw)
    for _ in range(4):
        X = a.ask()
        a.tell(fn(X), 2 * (X - 0.3) if a.needs_grad else None)
    serialization.save_state(tmp_path / "s.state", a.state_dict())
    b = registry.make(name, **{**kw, "seed": 99})
    b.load_state_dict(serialization.load_state(tmp_path / "s.state"))
    for _ in range(3):
        Xa, Xb = a.ask(), b.ask()
        assert np.array_equal(Xa, Xb)
        a.tell(fn(Xa), 2 * (Xa - 0.3) if a.needs_grad else None)
        b.tell(fn(Xb), 2 * (Xb - 0.3) if b.needs_grad else None)


def test_plain_trees_round_trip_with_their_types():
    tree = {"a": [1, 2.5, None, True, "s", float("nan"), -float("inf"), 2**80], "t": (1, (2, "x")),
            7: {"$odd": b"\x00\xff", (1, 2): np.float32(1.5)}, "arr": np.arange(6, dtype=np.int16).reshape(2, 3),
            "f": np.asfortranarray(np.eye(3)), "u": np.array(["ab", "c"]), "empty": np.zeros((0, 4))}
    back = serialization.loads(serialization.dumps(tree))
    assert back.keys() == tree.keys() and back["t"] == (1, (2, "x")) and back[7]["$odd"] == b"\x00\xff"
    assert type(back[7][(1, 2)]) is np.float32 and back[7][(1, 2)] == np.float32(1.5)
    assert back["a"][:5] == tree["a"][:5] and np.isnan(back["a"][5]) and back["a"][6] == -np.inf
    assert back["a"][7] == 2**80
    for k in ("arr", "f", "u", "empty"):
        assert back[k].dtype == tree[k].dtype and np.array_equal(back[k], tree[k])
    assert serialization.dumps(tree) == serialization.dumps(back)  # the same state gives the same bytes


@pytest.mark.parametrize("bad", [object(), np.array([object()], dtype=object), {"f": len}])
def test_saving_anything_but_plain_data_is_refused(bad):
    with pytest.raises(TypeError):
        serialization.dumps({"x": bad})


def test_the_cma_allow_list_is_exact_classes_of_the_pinned_pycma():
    import cma

    assert cma.__version__.startswith("4.5.")
    classes = allow_classes(CMA_CLASSES)
    assert all(isinstance(c, type) and (c.__module__, c.__qualname__) == k for k, c in classes.items())
    with pytest.raises(ValueError, match="dotted"):
        allow_classes([("cma.evolution_strategy", "CMAEvolutionStrategy.__init__")])
    with pytest.raises(ValueError, match="does not resolve"):
        allow_classes([("cma.evolution_strategy", "np")])  # a module attribute, not a class defined there


# ---------------------------------------------------------------------------------------------- hostile engines
def _gadgets(canary: Path) -> list[tuple[str, bytes]]:
    cmd = f"touch {canary}"
    g = [
        ("posix.system", _call("posix", "system", _u(cmd))),
        ("builtins.eval", _call("builtins", "eval", _u(f"__import__('os').system({cmd!r})"))),
        # numpy.dtypes with a dotted name reaching eval through a function's __builtins__ (format 1's hole)
        ("numpy.dtypes dotted", b"\x80\x04" + _global("numpy.dtypes", "_add_dtype_helper.__builtins__.get")
         + _u("eval") + b"\x85R" + _u(f"__import__('os').system({cmd!r})") + b"\x85R."),
        # a cma class's __init__.__globals__ (format 1's other hole)
        ("cma dotted globals",
         b"\x80\x04" + _global("cma.evolution_strategy", "CMAEvolutionStrategy.__init__.__globals__") + b"."),
        # protocol 0 GLOBAL with a dotted name
        ("GLOBAL dotted", b"ccma.options_parameters\nCMAOptions.__init__\n."),
        # an allowed class called through REDUCE: CMAOptions' constructor evaluates option strings
        ("REDUCE on an allowed class", _call("cma.options_parameters", "CMAOptions",
                                             b"}" + _u("popsize") + _u(f"__import__('os').system({cmd!r})") + b"s")),
        # INST and OBJ opcodes instantiate with arguments
        ("INST", b"(S'x'\nicma.options_parameters\nCMAOptions\n."),
        ("OBJ", b"\x80\x02" + b"(" + b"ccma.options_parameters\nCMAOptions\n" + _u("x") + b"o."),
        # an unknown persistent reference
        ("persistent id", b"\x80\x04" + _u("os.system") + b"Q."),
        # numpy's array reconstructor asked for a huge array
        ("huge _reconstruct", b"\x80\x04" + _global("numpy._core.multiarray", "_reconstruct")
         + _global("numpy", "ndarray") + b"\x8a\x06\x00\x00\x00\x00\x00\x01\x85" + b"C\x01b\x87R."),
    ]
    # every module the allow-list names: anything in it that is not an allowed class is refused at lookup
    allowed = set(CMA_CLASSES)
    import importlib

    for module in sorted({m for m, _ in CMA_CLASSES}):
        mod = importlib.import_module(module)
        for name in sorted(vars(mod)):
            if (module, name) not in allowed and not name.startswith("__"):
                g.append((f"{module}.{name}", _call(module, name, _u(cmd))))
    return g


def test_hostile_engine_pickles_are_refused_before_anything_runs(canary):
    gadgets = _gadgets(canary)
    assert len(gadgets) > 100
    for label, payload in gadgets:
        state = CMAES(x0=np.ones(3), seed=0).state_dict()
        state["algorithm"]["engine"] = payload
        with pytest.raises((UnsafeStateError, ValueError)) as info:
            CMAES(x0=np.ones(3), seed=0).load_state_dict(serialization.loads(serialization.dumps(state)))
        assert "\n" not in str(info.value), label
        assert not canary.exists(), label


def _crafted_arrays() -> dict[str, bytes]:
    """Streams that use only allowed names but give numpy states it trusts: a dtype whose state makes an
    array read memory it does not own (an object field with its flags cleared segfaulted on first use)."""
    dtype_f8 = _global("numpy", "dtype") + _u("f8") + b"\x89\x88\x87R"  # dtype('f8', False, True)
    crafted_dtype_state = b"(K\x03" + _u("|") + b"N" + _u("a") + b"\x85}K\x08K\x01K\x00tb"
    empty = (_global("numpy._core.multiarray", "_reconstruct") + _global("numpy", "ndarray")
             + b"K\x00\x85C\x01b\x87R")
    return {
        "a void dtype": b"\x80\x04" + _global("numpy", "dtype") + _u("V8") + b"\x89\x88\x87R.",
        "a crafted dtype state": b"\x80\x04" + dtype_f8 + crafted_dtype_state + b".",
        "array bytes shorter than its shape": b"\x80\x04" + empty + b"(K\x01K\x64\x85" + dtype_f8
        + b"\x89C\x08" + b"\x00" * 8 + b"tb.",
        "an array of a huge declared shape": b"\x80\x04" + empty + b"(K\x01\x8a\x05\x00\xe4\x0bT\x02\x85"
        + dtype_f8 + b"\x89C\x08" + b"\x00" * 8 + b"tb.",
        "a scalar of the wrong size": b"\x80\x04" + _global("numpy._core.multiarray", "scalar") + dtype_f8
        + b"C\x02ab\x86R.",
    }


@pytest.mark.parametrize("case", sorted(_crafted_arrays()))
def test_numpy_states_numpy_would_trust_are_refused(case):
    state = CMAES(x0=np.ones(3), seed=0).state_dict()
    state["algorithm"]["engine"] = _crafted_arrays()[case]
    with pytest.raises(UnsafeStateError, match="refusing"):
        CMAES(x0=np.ones(3), seed=0).load_state_dict(serialization.loads(serialization.dumps(state)))


@pytest.mark.parametrize("attr, value", [("pc", np.zeros(7)), ("mean", np.full(3, np.nan)), ("sigma", -1.0),
                                         ("sigma", float("inf")), ("N", 5)])
def test_an_engine_that_loads_but_cannot_run_is_refused_in_one_line(attr, value):
    from evograd.optim.cmaes import dump_engine

    a = CMAES(x0=np.ones(3), seed=0)
    for _ in range(3):
        a.tell(np.sum(a.ask() ** 2, axis=1))
    state = a.state_dict()
    setattr(a.engine, attr, value)
    state["algorithm"]["engine"] = dump_engine(a.engine, a._rs)
    with pytest.raises(ValueError) as info:
        CMAES(x0=np.ones(3), seed=0).load_state_dict(serialization.loads(serialization.dumps(state)))
    assert "\n" not in str(info.value) and "engine" in str(info.value)


@pytest.mark.parametrize("which", ["posix.system", "numpy.dtypes dotted", "REDUCE on an allowed class", "INST"])
def test_a_hostile_engine_in_a_run_directory_is_refused_on_resume(runs, canary, which):
    payload = dict(_gadgets(canary))[which]
    _resume_refused(runs, "cmaes", _with_engine(runs, payload), match="cannot be restored")


# ---------------------------------------------------------------------------------------------- hostile files
def _rewrite_zip(path: Path, edit) -> None:
    """Rewrite a state file's members through edit(name, bytes) -> bytes, keeping it a valid zip."""
    with zipfile.ZipFile(path) as zf:
        members = [(i.filename, zf.read(i.filename)) for i in zf.infolist()]
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in members:
            zf.writestr(name, edit(name, data))


def _edit_manifest(fn):
    def edit(name, data):
        return json.dumps(fn(json.loads(data))).encode() if name == "manifest.json" else data
    return lambda p: _rewrite_zip(p, edit)


def _huge_array(p: Path) -> None:
    """An array member whose header declares 10^12 float64 values over a few bytes, checksum updated."""
    header = {"descr": "<f8", "fortran_order": False, "shape": (10**12,)}
    import io

    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, header)
    member = buf.getvalue() + b"\x00" * 16
    with zipfile.ZipFile(p) as zf:
        manifest = json.loads(zf.read("manifest.json"))
        names = [i.filename for i in zf.infolist()]
        members = {n: zf.read(n) for n in names}
    members["arrays/0.npy"] = member
    manifest["arrays"][0] = hashlib.sha256(member).hexdigest()
    members["manifest.json"] = json.dumps(manifest).encode()
    with zipfile.ZipFile(p, "w") as zf:
        for n in names:
            zf.writestr(n, members[n])


def _deflated(p: Path) -> None:
    """A zip bomb shape: a member stored compressed (10 MB of zeros in a few kB)."""
    with zipfile.ZipFile(p, "a", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("arrays/999.npy", b"\x00" * 10_000_000)


def _flip(offset_fraction: float):
    def write(p: Path) -> None:
        data = bytearray(p.read_bytes())
        i = int(len(data) * offset_fraction)
        data[i] ^= 0x40
        p.write_bytes(bytes(data))
    return write


def _object_array(p: Path) -> None:
    """An array member of dtype object (np.save with a pickle inside), checksum updated."""
    import io

    buf = io.BytesIO()
    np.save(buf, np.array([os.system], dtype=object), allow_pickle=True)
    member = buf.getvalue()

    def edit(name, data):
        if name == "arrays/0.npy":
            return member
        if name == "manifest.json":
            m = json.loads(data)
            m["arrays"][0] = hashlib.sha256(member).hexdigest()
            return json.dumps(m).encode()
        return data
    _rewrite_zip(p, edit)


def _legacy_pickle(p: Path) -> None:
    p.write_bytes(pickle.dumps({"version": 1, "loop": {}}, protocol=4))


def _directory(p: Path) -> None:
    p.unlink()
    p.mkdir()
    (p / "x").write_text("x")


def _nested(p: Path) -> None:
    def edit(name, data):
        if name != "manifest.json":
            return data
        m = json.loads(data)
        m["tree"] = "HOLE"
        return json.dumps(m).replace('"HOLE"', "[" * 100_000 + "]" * 100_000).encode()
    _rewrite_zip(p, edit)


FILE_CASES = {
    "legacy pickle (format 1)": (_legacy_pickle, "format 1"),
    "truncated to half": (lambda p: p.write_bytes(p.read_bytes()[: p.stat().st_size // 2]), "not a valid"),
    "empty": (lambda p: p.write_bytes(b""), "not a valid"),
    "a bit flipped early": (_flip(0.1), None),
    "a bit flipped mid-file": (_flip(0.5), None),
    "a bit flipped late": (_flip(0.9), None),
    "a directory in its place": (_directory, "not a regular file"),
    "a huge declared array": (_huge_array, "declares"),
    "a compressed member": (_deflated, "compressed"),
    "an object array": (_object_array, "not allowed"),
    "format version 3": (_edit_manifest(lambda m: {**m, "version": 3}), "format 3"),
    "not our format": (_edit_manifest(lambda m: {**m, "format": "other"}), "not a valid"),
    "array reference out of range": (_edit_manifest(lambda m: {**m, "tree": {"$array": 10**6}}), "does not hold"),
    "unknown tag": (_edit_manifest(lambda m: {**m, "tree": {"$eval": "os.system"}}), "unknown tag"),
    "deep nesting": (_nested, "not a valid"),
    "NaN constant": (lambda p: _rewrite_zip(p, lambda n, d: d.replace(b'"version": 2', b'"version": NaN')
                                             if n == "manifest.json" else d), "not a valid"),
    "a checksum that does not match": (_edit_manifest(lambda m: {**m, "arrays": ["0" * 64] + m["arrays"][1:]}),
                                       "SHA-256"),
    "wrong top-level types in a valid file": (_edit_manifest(lambda m: {**m, "tree": {**m["tree"], "loop": 5}}),
                                              "not a checkpoint of this kind"),
    "wrong nested types in a valid file": (_edit_manifest(lambda m: {**m, "tree": {**m["tree"], "optimizer": 5}}),
                                           "cannot be restored"),
    "a symlink to a device": (lambda p: (p.unlink(), p.symlink_to("/dev/zero")), "not a regular file"),
}


@pytest.mark.parametrize("label", ["cmaes", "ppo"])
@pytest.mark.parametrize("case", sorted(FILE_CASES))
def test_damaged_and_hostile_state_files_are_refused_in_one_line(runs, canary, label, case):
    write, match = FILE_CASES[case]
    _resume_refused(runs, label, write, match)


def test_legacy_pickle_is_never_unpickled(runs, canary):
    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {canary}",))

    err = _resume_refused(runs, "cmaes", lambda p: p.write_bytes(pickle.dumps(Evil())), "format 1")
    assert "pickle" in str(err)


# ---------------------------------------------------------------------------------------------- CLI
def _cli(*args, cwd):
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[2]))
    return subprocess.run([sys.executable, "-m", "evograd", *args], capture_output=True, text=True, cwd=cwd,
                          timeout=300, env=env)


def test_cli_resume_of_a_hostile_run_prints_one_line_and_touches_nothing(tmp_path, canary):
    import yaml

    cfg = {**CONFIG, "methods": {"cmaes": CONFIG["methods"]["cmaes"]}, "seeds": [0]}
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(cfg))
    run, cmp_ = tmp_path / "run", tmp_path / "cmp"
    assert _cli("run", "c.yaml", "--out", str(run), "--quiet", cwd=tmp_path).returncode == 0
    assert _cli("compare", "c.yaml", "--out", str(cmp_), "--quiet", cwd=tmp_path).returncode == 0
    _with_engine(run, _call("posix", "system", _u(f"touch {canary}")))(
        experiment.job_dir(run, "cmaes", 0) / experiment.CHECKPOINT)
    (experiment.job_dir(cmp_, "cmaes", 0) / experiment.CHECKPOINT).write_bytes(b"PK\x03\x04garbage")
    for out, cmd in ((run, "run"), (cmp_, "compare")):
        before = _snapshot(out)
        proc = _cli(cmd, "--resume", str(out), "--quiet", cwd=tmp_path)
        assert proc.returncode == 2, (cmd, proc.stdout, proc.stderr)
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("evograd: error:") and "checkpoint.state" in lines[0], lines
        assert "Traceback" not in proc.stderr + proc.stdout
        assert _snapshot(out) == before


# ---------------------------------------------------------------------------------------------- function jobs
FUNCTION_CONFIG = {"name": "f", "task": {"function": {"fn": "evograd.core.functions:rastrigin", "dim": 6, "x0": 2.0}},
                   "budget": {"evals": 800}, "threshold": 5.0,
                   "methods": {"cmaes": {"name": "cmaes", "sigma0": 1.0, "restarts": "ipop"},
                               "openai_es": {"name": "openai_es", "sigma0": 0.5, "lr": 0.1}}}


@pytest.mark.parametrize("label", ["cmaes", "openai_es"])
@pytest.mark.parametrize("die_after", [1, 4])
def test_a_killed_function_job_resumes_to_the_uninterrupted_result(tmp_path, monkeypatch, label, die_after):
    clean = experiment.run_job(FUNCTION_CONFIG, label, 0, tmp_path / "clean", checkpoint_seconds=0.0)
    assert clean["status"] == "ok" and clean["evals"] <= 800
    real_save, saves = serialization.save_state, []

    def save_then_die(path, state):  # the process "dies" right after its die_after-th checkpoint
        real_save(path, state)
        saves.append(path)
        if len(saves) == die_after:
            raise RuntimeError("killed")

    monkeypatch.setattr(serialization, "save_state", save_then_die)
    out = tmp_path / "killed"
    assert experiment.run_job(FUNCTION_CONFIG, label, 0, out, checkpoint_seconds=0.0)["status"] == "failed"
    monkeypatch.setattr(serialization, "save_state", real_save)
    res = experiment.run_job(FUNCTION_CONFIG, label, 0, out, resume=True, checkpoint_seconds=0.0)
    assert res["status"] == "ok", res
    for key in ("best_value", "evals", "evals_to_threshold"):
        assert res[key] == clean[key], key
    assert np.array_equal(res["x"], clean["x"])
    d_clean, d = experiment.job_dir(tmp_path / "clean", label, 0), experiment.job_dir(out, label, 0)
    cols = lambda p: [(r["generation"], r["evals"], r["best_value"]) for r in _csv(p / experiment.PROGRESS)]
    assert cols(d) == cols(d_clean)
    again = experiment.run_job(FUNCTION_CONFIG, label, 0, out, resume=True)  # resuming a finished job adds nothing
    assert again["evals"] == clean["evals"] and again["best_value"] == clean["best_value"]


def _csv(path):
    import csv

    with open(path) as fh:
        return list(csv.DictReader(fh))


@pytest.mark.parametrize("where", ["opts", "sampler"])
def test_an_engine_may_not_hold_other_callables_than_its_own(where, tmp_path, monkeypatch):
    """pycma calls its `randn`: a file that puts an allowed class (a new engine, which would write pycma's
    log files) or a numpy reconstructor in its place is refused before anything is called."""
    import cma

    from evograd.core.restricted_pickle import _numpy_reconstructors
    from evograd.optim.cmaes import dump_engine

    monkeypatch.chdir(tmp_path)
    a = CMAES(x0=np.ones(3), seed=0)
    a.tell(np.sum(a.ask() ** 2, axis=1))
    state = a.state_dict()
    if where == "opts":
        dict.__setitem__(a.engine.opts, "randn", cma.CMAEvolutionStrategy)
    else:
        a.engine.sm.randn = _numpy_reconstructors()[("numpy._core.multiarray", "scalar")]
    state["algorithm"]["engine"] = dump_engine(a.engine, a._rs)
    with pytest.raises(UnsafeStateError, match="refusing the (class|callable)"):
        CMAES(x0=np.ones(3), seed=0).load_state_dict(serialization.loads(serialization.dumps(state)))
    assert not any(tmp_path.iterdir()), "pycma wrote files"
