"""Parallel rollout throughput against the machine's own limit, measured in the same run.

Usage: python benchmarks/bench_workers.py [--quick] [--env HalfCheetah-v5] [--popsize 64] [--generations 4]

Reference: independent processes stepping one raw `gym.make(env)` each with random actions, run
concurrently (1 process, then 2): their combined steps/s is the best a pool of that many workers can do
on this machine. Measured: `GymProblem(env, policy="linear", n_jobs=k).evaluate(P)` on a population of
`popsize` linear policies, live env steps/s over several generations after a warm-up generation (which
starts the workers and builds their envs). Prints ratios with PASS/FAIL against the Gymnasium issue's
target (2 workers >= 0.9x the 2-process raw total) and a final JSON line. Runs in a temp directory
(MuJoCo writes MUJOCO_LOG.TXT into the working directory).
"""
from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import platform
import subprocess
import sys
import tempfile
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")
import numpy as np  # noqa: E402


def _raw_worker(env_id: str, seconds: float, seed: int, out) -> None:
    import gymnasium as gym

    env = gym.make(env_id)
    env.action_space.seed(seed)
    env.reset(seed=seed)
    acts = [env.action_space.sample() for _ in range(512)]
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        for i in range(100):
            _, _, term, trunc, _ = env.step(acts[(n + i) & 511])
            if term or trunc:
                env.reset()
        n += 100
    out.put(n / (time.perf_counter() - t0))


def raw_processes(env_id: str, k: int, seconds: float) -> float:
    """Combined steps/s of k independent processes stepping raw envs concurrently."""
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    procs = [ctx.Process(target=_raw_worker, args=(env_id, seconds, s, q)) for s in range(k)]
    for p in procs:
        p.start()
    rates = [q.get() for _ in procs]
    for p in procs:
        p.join()
    return float(sum(rates))


def engine(env_id: str, n_jobs: int, popsize: int, generations: int) -> dict:
    import evograd as eg

    problem = eg.GymProblem(env_id, policy="linear", n_jobs=n_jobs, seed=0)
    P = np.random.default_rng(0).normal(scale=0.1, size=(popsize, problem.dim))
    problem.evaluate(P)  # warm-up: workers start and build their envs
    steps0, t0 = problem.env_steps, time.perf_counter()
    for _ in range(generations):
        problem.evaluate(P)
    dt = time.perf_counter() - t0
    return {"steps_per_s": (problem.env_steps - steps0) / dt, "seconds": dt, "steps": problem.env_steps - steps0}


def _git_rev() -> str:
    try:
        return subprocess.check_output(["git", "rev-parse", "--short", "HEAD"], text=True,
                                       cwd=os.path.dirname(os.path.abspath(__file__))).strip()
    except Exception:
        return "unknown"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--env", default="HalfCheetah-v5")
    ap.add_argument("--popsize", type=int, default=64)
    ap.add_argument("--generations", type=int, default=4)
    ap.add_argument("--seconds", type=float, default=6.0, help="duration of each raw measurement")
    ap.add_argument("--quick", action="store_true", help="2 generations, 3 s raw runs")
    args = ap.parse_args()
    if args.quick:
        args.generations, args.seconds = 2, 3.0
    rev = _git_rev()
    os.chdir(tempfile.mkdtemp(prefix="evograd-bench-"))
    raw1 = raw_processes(args.env, 1, args.seconds)
    raw2 = raw_processes(args.env, 2, args.seconds)
    w1 = engine(args.env, 1, args.popsize, args.generations)
    w2 = engine(args.env, 2, args.popsize, args.generations)
    r2 = w2["steps_per_s"] / raw2
    scale_raw, scale_w = raw2 / raw1, w2["steps_per_s"] / w1["steps_per_s"]
    print(f"\n{args.env}, linear policy, popsize {args.popsize}, {args.generations} generations "
          f"({time.strftime('%Y-%m-%d %H:%M')}, rev {rev}, {platform.node()}, {os.cpu_count()} cpus)\n")
    print("| case | steps/s | ratio |")
    print("|---|---:|---:|")
    print(f"| raw, 1 process | {raw1:,.0f} | 1.00 |")
    print(f"| raw, 2 independent processes (total) | {raw2:,.0f} | {scale_raw:.2f}x of 1 |")
    print(f"| GymProblem n_jobs=1 | {w1['steps_per_s']:,.0f} | {w1['steps_per_s'] / raw1:.2f}x raw 1 |")
    print(f"| GymProblem n_jobs=2 | {w2['steps_per_s']:,.0f} | {r2:.2f}x raw 2 |")
    verdict = "PASS" if r2 >= 0.9 else f"FAIL (short by {0.9 - r2:.2f})"
    print(f"\n2 workers vs 2 raw processes: {r2:.3f} (target >= 0.90): {verdict}")
    rel = scale_w / scale_raw
    print(f"1 -> 2 workers gain {scale_w:.2f}x vs raw gain {scale_raw:.2f}x: {rel:.3f} of the machine's own gain")
    print(json.dumps({"env": args.env, "popsize": args.popsize, "raw1": raw1, "raw2": raw2,
                      "workers1": w1["steps_per_s"], "workers2": w2["steps_per_s"], "ratio_2workers_vs_raw2": r2,
                      "gain_relative_to_raw": rel, "pass": r2 >= 0.9, "rev": rev,
                      "date": time.strftime("%Y-%m-%d %H:%M:%S")}))


if __name__ == "__main__":
    sys.exit(main())
