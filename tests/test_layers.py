"""The package's shape, read from the source: layers that import downwards only, no import circles (function-level
imports included), no private names taken from another module, small modules, and a torch-free core."""
from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parents[1] / "evograd"
ENVS = Path(__file__).resolve().parents[1] / "envs"

# Lowest first. A module may import its own layer and the layers below it, never one above.
LAYERS = ["core", "optim", "parallel", "minimize", "interop", "zo", "gym", "rl", "experiments", "cli"]
MAX_LINES = 400


def _module_files() -> dict[str, Path]:
    files = {}
    for root, prefix in ((PKG, "evograd"), (ENVS, "evograd.envs")):
        for p in sorted(root.rglob("*.py")):
            parts = p.relative_to(root).with_suffix("").parts
            name = ".".join((prefix, *parts))
            files[name[: -len(".__init__")] if name.endswith(".__init__") else name] = p
    return files


FILES = _module_files()


def _layer(module: str) -> int | None:
    parts = module.split(".")
    if module == "evograd":
        return None  # the package root: lazy names over every layer
    if parts[1] == "envs":
        return LAYERS.index("gym")  # evograd's own Gymnasium environments sit with the gym layer
    if parts[1] == "__main__":
        return LAYERS.index("cli")
    return LAYERS.index(parts[1])


def _imports(module: str) -> list[tuple[str, list[str], int]]:
    """(imported evograd module, names taken from it, line) for every import in the module, at any depth."""
    path = FILES[module]
    tree = ast.parse(path.read_text())
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(a.name, [], node.lineno) for a in node.names if a.name.startswith("evograd")]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if not target.startswith("evograd"):
                continue
            names = [a.name for a in node.names]
            submodules = [f"{target}.{n}" for n in names if f"{target}.{n}" in FILES]
            if submodules:  # "from . import x": an import of the module x
                out += [(m, [], node.lineno) for m in submodules]
                names = [n for n in names if f"{target}.{n}" not in FILES]
            if names:
                out.append((target, names, node.lineno))
    return out


def test_every_import_points_down_the_layers():
    wrong = []
    for module in FILES:
        own = _layer(module)
        if own is None:
            continue
        for target, _, line in _imports(module):
            theirs = _layer(target)
            if theirs is not None and theirs > own:
                wrong.append(f"{module}:{line} imports {target} ({LAYERS[theirs]} is above {LAYERS[own]})")
    assert not wrong, "\n".join(wrong)


def test_no_import_circles_including_function_level_imports():
    graph = {m: {t for t, _, _ in _imports(m) if t in FILES and t != m} for m in FILES if m != "evograd"}
    for deps in graph.values():
        deps.discard("evograd")
    index, low, stack, on_stack, circles, counter = {}, {}, [], set(), [], [0]

    def visit(v):  # Tarjan's strongly connected components
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                circles.append(sorted(comp))

    for v in graph:
        if v not in index:
            visit(v)
    assert not circles, circles


def test_no_module_takes_a_private_name_of_another():
    wrong = []
    for module in FILES:
        for target, names, line in _imports(module):
            wrong += [f"{module}:{line} imports {target}.{n}" for n in names
                      if n.startswith("_") and not n.endswith("__") and target != module]
    assert not wrong, "\n".join(wrong)


def test_modules_stay_small_or_say_why():
    """A module over MAX_LINES must say at its top why it is one piece ("One module, N lines: ...")."""
    wrong = []
    for module, path in FILES.items():
        text = path.read_text()
        n = text.count("\n")
        if n > MAX_LINES and "One module, " not in text[:3000]:
            wrong.append(f"{module}: {n} lines")
    assert not wrong, "\n".join(wrong)


MAX_FUNCTION_LINES = 60
# The only functions allowed past MAX_FUNCTION_LINES, each with its reason. Keep it short: a long function is
# split into named steps, not added here; an entry that no longer applies fails the test until it is removed.
LONG_FUNCTIONS = {
    "evograd.gym.policies:make_policy":
        "a constructor that is mostly validated parameters, then one short branch per policy kind",
}


def _function_lengths() -> dict[str, int]:
    """'module:Class.method' (nested functions as 'outer.inner') -> lines from `def` to the body's end."""
    out = {}

    def visit(node, module, prefix):
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                name = f"{prefix}{child.name}"
                if not isinstance(child, ast.ClassDef):
                    out[f"{module}:{name}"] = child.end_lineno - child.lineno + 1
                visit(child, module, f"{name}.")
            else:
                visit(child, module, prefix)

    for module, path in FILES.items():
        visit(ast.parse(path.read_text()), module, "")
    return out


def test_functions_stay_short_or_are_allowed_with_a_reason():
    lengths = _function_lengths()
    long = {name: n for name, n in lengths.items() if n > MAX_FUNCTION_LINES}
    wrong = [f"{name}: {n} lines (over {MAX_FUNCTION_LINES}: split it into named steps)"
             for name, n in sorted(long.items()) if name not in LONG_FUNCTIONS]
    wrong += [f"{name}: on LONG_FUNCTIONS but {'gone' if name not in lengths else f'{lengths[name]} lines'}; "
              f"remove the entry" for name in LONG_FUNCTIONS if name not in long]
    wrong += [f"{name}: on LONG_FUNCTIONS without a reason" for name, why in LONG_FUNCTIONS.items() if not why.strip()]
    assert not wrong, "\n".join(wrong)
    assert len(LONG_FUNCTIONS) <= 5, "the allow-list is for exceptions; split functions instead"


BLOCK = """
import importlib.abc, sys
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("torch", "gymnasium"):
            raise ModuleNotFoundError(f"No module named {name!r} (blocked in this test)", name=name)
sys.meta_path.insert(0, Block())
"""


def test_import_evograd_loads_neither_torch_nor_gymnasium():
    code = "import sys, evograd; bad = [m for m in ('torch', 'gymnasium') if m in sys.modules]; assert not bad, bad"
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


@pytest.mark.parametrize("n_jobs", [1, 2])
def test_population_methods_minimize_without_torch_and_gymnasium(n_jobs, tmp_path):
    # the blocker is a sitecustomize, so worker processes (n_jobs=2) run under it too
    (tmp_path / "sitecustomize.py").write_text(BLOCK)
    code = f"""
import numpy as np, evograd as eg
for name in ("ga", "openai_es", "ars", "snes", "cmaes", "cbo"):
    res = eg.minimize(eg.functions.sphere, eg.make(name, x0=np.full(4, 1.0), seed=0), max_evals=1500, n_jobs={n_jobs})
    assert np.isfinite(res.value) and res.value < 4.0, (name, res.value)
try:
    eg.GymProblem
except ImportError as exc:
    assert "blocked" in str(exc)
else:
    raise AssertionError("GymProblem imported with gymnasium blocked")
"""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(tmp_path), str(PKG.parent)]))
    subprocess.run([sys.executable, "-c", code], check=True, timeout=300, env=env)


def test_the_cli_names_the_extra_a_missing_package_comes_from(tmp_path):
    (tmp_path / "sitecustomize.py").write_text(BLOCK)
    config = tmp_path / "c.yaml"
    config.write_text("task: {env: {id: CartPole-v1}}\nbudget: {env_steps: 1000}\noptimizer: {name: snes}\n")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(tmp_path), str(PKG.parent)]))
    proc = subprocess.run([sys.executable, "-m", "evograd", "run", str(config), "--out", str(tmp_path / "r")],
                          capture_output=True, text=True, timeout=300, env=env, cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip().splitlines() == [
        proc.stderr.strip()] and "pip install 'evograd[rl]'" in proc.stderr, proc.stderr


def test_tests_mirror_the_package_layout():
    """tests/<subpackage>/ for every evograd subpackage that has code (tests of root modules and of the whole
    package sit in tests/ itself)."""
    tests = PKG.parent / "tests"
    subpackages = {p.parent.name for p in PKG.glob("*/__init__.py")}
    missing = sorted(s for s in subpackages if not any((tests / s).glob("test_*.py")))
    assert not missing, f"no tests/<name>/test_*.py for: {missing}"
    strays = sorted(p.name for p in tests.glob("test_*.py")
                    if p.stem.removeprefix("test_") in subpackages)
    assert not strays, strays
