"""Rollout throughput on a 2-worker Dask cluster against 2 local joblib workers, and 1 -> 2 worker scaling
against the machine's own limit, all measured in one run.

Usage: python benchmarks/bench_dask.py [--quick] [--env HalfCheetah-v5] [--popsize 64] [--generations 4]
                                       [--rounds 2]

Measured: live env steps/s of `GymProblem(env, policy="linear").evaluate(P)` on a fixed population of
`popsize` linear policies, over `generations` generations after one warm-up generation (which starts the
workers or the cluster and builds their envs), for: one process (serial), 2 joblib workers, and a Dask
`LocalCluster` of 2 single-threaded worker processes on loopback. Reference: independent processes
stepping a raw `gym.make(env)` with random actions, 1 and then 2 at once; raw2 / raw1 is what a second
process gains on this machine (its two-core limit). The engines are measured `rounds` times, interleaved,
and the best round of each is kept (load from other processes only ever slows a round down).

Targets (issue 5): dask-2 >= 0.9x joblib-2; (joblib-2 / serial) >= 0.9x (raw2 / raw1).
Every engine evaluates the same rows with the same seeds, so their returns must agree bit for bit; the
script checks it. Prints a table and one JSON line. Runs in a temp directory (MuJoCo writes MUJOCO_LOG.TXT
into the working directory).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")
import numpy as np  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from bench_workers import raw_processes  # noqa: E402

TARGET = 0.9


def measure(problem, P: np.ndarray, generations: int) -> tuple[float, np.ndarray]:
    """(live env steps/s over `generations` generations, the last generation's returns)."""
    steps0, t0 = problem.env_steps, time.perf_counter()
    for _ in range(generations):
        f = problem.evaluate(P)
    return (problem.env_steps - steps0) / (time.perf_counter() - t0), f


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="HalfCheetah with short episodes, 1 round (~1 min)")
    ap.add_argument("--env", default="HalfCheetah-v5")
    ap.add_argument("--popsize", type=int, default=64)
    ap.add_argument("--generations", type=int, default=3)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--raw-seconds", type=float, default=5.0)
    args = ap.parse_args()
    max_steps = None
    if args.quick:
        args.generations, args.rounds, args.raw_seconds, max_steps = 2, 1, 2.0, 200
    os.chdir(tempfile.mkdtemp(prefix="evograd-bench-dask-"))
    import torch

    torch.set_num_threads(1)
    import evograd as eg
    from evograd.parallel.backends import DaskBackend

    probe = eg.GymProblem(args.env, policy="linear")
    P = np.random.default_rng(0).normal(scale=0.1, size=(args.popsize, probe.dim))
    raw1 = raw_processes(args.env, 1, args.raw_seconds)
    raw2 = raw_processes(args.env, 2, args.raw_seconds)
    cluster = DaskBackend(None, n_workers=2)
    engines = {
        "serial": eg.GymProblem(args.env, policy="linear", max_episode_steps=max_steps, seed=0),
        "joblib-2": eg.GymProblem(args.env, policy="linear", max_episode_steps=max_steps, seed=0, n_jobs=2),
        "dask-2": eg.GymProblem(args.env, policy="linear", max_episode_steps=max_steps, seed=0, backend=cluster),
    }
    rates: dict[str, list[float]] = {k: [] for k in engines}
    returns = {}
    for problem in engines.values():  # warm-up: workers started, envs built
        problem.evaluate(P)
    for _ in range(args.rounds):
        for name, problem in engines.items():
            r, f = measure(problem, P, args.generations)
            rates[name].append(r)
            returns[name] = f
    for problem in engines.values():
        problem.close()
    cluster.close()
    # same generation counters everywhere, so the same episode seeds: returns must match exactly
    identical = all(np.array_equal(returns["serial"], f) for f in returns.values())
    best = {k: max(v) for k, v in rates.items()}
    dask_vs_joblib = best["dask-2"] / best["joblib-2"]
    gain_raw, gain_ours = raw2 / raw1, best["joblib-2"] / best["serial"]
    scaling = gain_ours / gain_raw
    print(f"{args.env}, linear policy, popsize {args.popsize}, {args.generations} generations x {args.rounds} "
          f"rounds (best round kept){', quick' if args.quick else ''}")
    print(f"raw env, 1 process: {raw1:,.0f} steps/s; 2 processes: {raw2:,.0f} steps/s (gain {gain_raw:.2f}x)")
    for k in engines:
        print(f"{k:>9}: {best[k]:,.0f} steps/s   rounds: {', '.join(f'{r:,.0f}' for r in rates[k])}")
    v1 = "PASS" if dask_vs_joblib >= TARGET else f"FAIL (missed by {100 * (1 - dask_vs_joblib / TARGET):.0f}%)"
    v2 = "PASS" if scaling >= TARGET else f"FAIL (missed by {100 * (1 - scaling / TARGET):.0f}%)"
    print(f"dask-2 / joblib-2 = {dask_vs_joblib:.2f}x (target >= {TARGET}x): {v1}")
    print(f"1 -> 2 workers gain {gain_ours:.2f}x vs raw gain {gain_raw:.2f}x = {scaling:.2f} (target >= {TARGET}): "
          f"{v2}")
    print(f"returns identical on every engine: {identical}")
    print(json.dumps({"bench": "dask", "env": args.env, "popsize": args.popsize, "quick": args.quick,
                      "raw1": raw1, "raw2": raw2, "rates": rates, "best": best, "dask_vs_joblib": dask_vs_joblib,
                      "scaling_vs_raw": scaling, "identical_returns": identical,
                      "pass": {"dask_vs_joblib": dask_vs_joblib >= TARGET, "scaling": scaling >= TARGET},
                      "machine": {"cpu_count": os.cpu_count(), "platform": platform.platform(),
                                  "python": platform.python_version(), "load_avg": os.getloadavg()}}))
    if not identical:
        sys.exit("returns differ between engines")


if __name__ == "__main__":
    main()
