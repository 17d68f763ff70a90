"""evograd CBO against CBXpy 1.0.4 on Rastrigin-20 with CBXpy's documented d=20 setting.

Setting (CBXpy docs, success_evaluation notebook): particles U(-3,3)^20, anisotropic noise,
sigma=10.1, alpha0=30 growing 1.05x per step up to 1e5, dt=0.01, drift 1, 5000 steps; N=200 and N=40.
Success: inf-norm distance to the optimum < 0.25 (evograd: best.x and the last consensus; CBXpy:
the final consensus, as in /work/shared/peers/cbx_bench.py, and its best_particle).

CBXpy is run as the peer script ran it: `CBO(Rastrigin(), x=x0, f_dim="3D", seed=s, ...)` and its own
`optimize()` loop, one run per seed ("single"), and all seeds as M parallel runs in one dynamic
("batched", time divided by M). evograd runs through the public protocol only: `evograd.make("cbo",
...)` then `ask()` / `tell(rastrigin(X))` with the vectorized `evograd.functions.rastrigin`. Single
runs of both libraries alternate seed by seed, so load from other processes hits both alike.

Targets: evograd per run >= 5x faster than CBXpy single runs and >= 3x faster than CBXpy batched
(per run), with a success count no more than one run below CBXpy's.

Usage: python benchmarks/bench_cbo.py [--quick] [--seeds K] [--steps T]
The last stdout line is one JSON object.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
import warnings

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np  # noqa: E402

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import evograd  # noqa: E402
from evograd.functions import rastrigin  # noqa: E402

warnings.filterwarnings("ignore", module="cbx")

D, TOL = 20, 0.25
SETTING = dict(sigma=10.1, alpha=30.0, dt=0.01)


def initial(seed: int, n: int) -> np.ndarray:
    return np.random.default_rng(seed).uniform(-3, 3, size=(n, D))


def run_evograd(seed: int, n: int, steps: int) -> dict:
    x0 = initial(seed, n)
    t0 = time.perf_counter()
    opt = evograd.make("cbo", x0=x0, noise="anisotropic", seed=seed, **SETTING)
    for _ in range(steps):
        X = opt.ask()
        opt.tell(rastrigin(X))
    wall = time.perf_counter() - t0
    return dict(wall_s=wall, ok=bool(np.abs(opt.best.x).max() < TOL), ok_consensus=bool(np.abs(opt.consensus).max() < TOL))


def run_cbx_single(seed: int, n: int, steps: int) -> dict:
    from cbx.dynamics import CBO
    from cbx.objectives import Rastrigin

    x0 = initial(seed, n)[None]
    np.random.seed(seed)  # cbx uses the global RNG in places
    t0 = time.perf_counter()
    dyn = CBO(Rastrigin(), x=x0, verbosity=0, seed=seed, f_dim="3D", noise="anisotropic", max_it=steps, **SETTING)
    dyn.optimize()
    wall = time.perf_counter() - t0
    cons = np.asarray(dyn.consensus).reshape(-1)
    best = np.asarray(dyn.best_particle).reshape(-1)
    return dict(wall_s=wall, ok=bool(np.abs(cons).max() < TOL), ok_best=bool(np.abs(best).max() < TOL))


def run_cbx_batched(seeds: list[int], n: int, steps: int) -> dict:
    from cbx.dynamics import CBO
    from cbx.objectives import Rastrigin

    x0 = np.stack([initial(s, n) for s in seeds])
    t0 = time.perf_counter()
    dyn = CBO(Rastrigin(), x=x0, verbosity=0, seed=0, f_dim="3D", noise="anisotropic", max_it=steps, **SETTING)
    dyn.optimize()
    wall = time.perf_counter() - t0
    err = np.abs(np.asarray(dyn.consensus).reshape(len(seeds), -1)).max(axis=1)
    return dict(wall_s_total=wall, wall_s_per_run=wall / len(seeds), successes=int(np.sum(err < TOL)))


def fitness_only(n: int, steps: int) -> float:
    """Seconds that `steps` calls of the fitness alone take: the floor under any CBO loop."""
    X = initial(0, n)
    t0 = time.perf_counter()
    for _ in range(steps):
        rastrigin(X)
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="5 seeds instead of 10")
    ap.add_argument("--seeds", type=int, default=None)
    ap.add_argument("--steps", type=int, default=5000)
    args = ap.parse_args()
    seeds = list(range(args.seeds if args.seeds else (5 if args.quick else 10)))
    steps = args.steps
    import cbx

    rows, out = [], {}
    for n in (200, 40):
        ev, cs = [], []
        for s in seeds:  # alternate the libraries seed by seed
            cs.append(run_cbx_single(s, n, steps))
            ev.append(run_evograd(s, n, steps))
        cb = run_cbx_batched(seeds, n, steps)
        t_ev = statistics.median(r["wall_s"] for r in ev)
        t_cs = statistics.median(r["wall_s"] for r in cs)
        k_ev, k_cs = sum(r["ok"] for r in ev), sum(r["ok"] for r in cs)
        res = dict(
            evograd_s_per_run=round(t_ev, 4),
            evograd_successes=k_ev,
            evograd_consensus_successes=sum(r["ok_consensus"] for r in ev),
            cbx_single_s_per_run=round(t_cs, 4),
            cbx_single_successes=k_cs,
            cbx_single_best_particle_successes=sum(r["ok_best"] for r in cs),
            cbx_batched_s_per_run=round(cb["wall_s_per_run"], 4),
            cbx_batched_successes=cb["successes"],
            fitness_only_s_per_run=round(fitness_only(n, steps), 4),
            speedup_vs_single=round(t_cs / t_ev, 2),
            speedup_vs_batched=round(cb["wall_s_per_run"] / t_ev, 2),
        )
        res["pass_single_5x"] = res["speedup_vs_single"] >= 5.0
        res["pass_batched_3x"] = res["speedup_vs_batched"] >= 3.0
        res["pass_success"] = k_ev >= max(k_cs, cb["successes"]) - 1
        out[f"N={n}"] = res
        m = len(seeds)
        rows += [
            (f"N={n} success", f"{k_ev}/{m}", f"{k_cs}/{m} single, {cb['successes']}/{m} batched", res["pass_success"]),
            (f"N={n} s/run vs single", f"{t_ev:.3f}", f"{t_cs:.3f} ({res['speedup_vs_single']}x, need 5x)", res["pass_single_5x"]),
            (f"N={n} s/run vs batched", f"{t_ev:.3f}", f"{cb['wall_s_per_run']:.3f} ({res['speedup_vs_batched']}x, need 3x)", res["pass_batched_3x"]),
        ]
        print(f"N={n}: fitness alone {res['fitness_only_s_per_run']:.3f} s per run", flush=True)

    print(f"\n{'check':<24}{'evograd':>10}  {'CBXpy ' + cbx.__version__ if hasattr(cbx, '__version__') else 'CBXpy':<44}result")
    for name, a, b, ok in rows:
        print(f"{name:<24}{a:>10}  {b:<44}{'PASS' if ok else 'FAIL'}")
    from importlib import metadata

    print(json.dumps(dict(
        bench="bench_cbo", function="rastrigin", d=D, steps=steps, seeds=len(seeds), tol_inf_norm=TOL,
        setting=dict(SETTING, noise="anisotropic", alpha_schedule="exponential 1.05 to 1e5"),
        results=out, all_pass=all(r[3] for r in rows),
        versions={k: metadata.version(k) for k in ("cbx", "numpy")},
        machine=dict(python=platform.python_version(), cpus=os.cpu_count(), loadavg_1m=round(os.getloadavg()[0], 2)),
    )))


if __name__ == "__main__":
    main()
