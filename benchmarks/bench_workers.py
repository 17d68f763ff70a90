"""Parallel rollout throughput against the machine's own limit, measured in the same run.

Usage: python benchmarks/bench_workers.py [--quick] [--env HalfCheetah-v5] [--popsize 64] [--generations 4]
                                          [--no-evotorch]

Reference: independent processes stepping one raw `gym.make(env)` each with random actions, run
concurrently (1 process, then 2), before and after the engine runs; the faster of the two is kept.
Target (issue 6): 2 workers >= 0.9x of 2 x the single-process raw rate. The 2-process total is the
machine's own limit for a pool of 2 (about 1.84x one process on 2 cores, see ../shared/peers/RESULTS.md
section 10), so the ratio against it is printed too. Measured:
`GymProblem(env, policy="linear", n_jobs=k).evaluate(P)` on a population of `popsize` linear policies,
live env steps/s over several generations after a warm-up generation (which starts the workers and builds
their envs). Peer: EvoTorch GymNE on the same rows with 2 Ray actors (_evotorch_peers.py; warm-up starts
the actors). Prints a table and a final JSON line. Runs in a temp directory (MuJoCo writes MUJOCO_LOG.TXT
into the working directory).
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

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
TARGET = 0.9


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


def population(env_id: str, popsize: int) -> np.ndarray:
    import evograd as eg

    dim = eg.GymProblem(env_id, policy="linear").dim
    return np.random.default_rng(0).normal(scale=0.1, size=(popsize, dim))


def engine(env_id: str, n_jobs: int, P: np.ndarray, generations: int) -> dict:
    import evograd as eg

    problem = eg.GymProblem(env_id, policy="linear", n_jobs=n_jobs, seed=0)
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
    ap.add_argument("--quick", action="store_true", help="2 generations, 2 s raw runs")
    ap.add_argument("--no-evotorch", action="store_true", help="skip the EvoTorch GymNE peer")
    args = ap.parse_args()
    if args.quick:
        args.generations, args.seconds = 2, 2.0
    rev = _git_rev()
    os.chdir(tempfile.mkdtemp(prefix="evograd-bench-"))
    # the references are measured before and after the engine and the faster of the two is kept: load from
    # other processes can only slow a measurement down, and the higher reference is the stricter target
    raw1_runs = [raw_processes(args.env, 1, args.seconds)]
    raw2_runs = [raw_processes(args.env, 2, args.seconds)]
    P = population(args.env, args.popsize)
    w1 = engine(args.env, 1, P, args.generations)
    w2 = engine(args.env, 2, P, args.generations)
    evo = None
    if not args.no_evotorch:
        import torch

        torch.set_num_threads(1)
        from _evotorch_peers import EvoTorchPeer

        peer = EvoTorchPeer(args.env, P, num_actors=2)
        evo = dict(peer.measure(args.generations), warmup_s=peer.warmup_s, workers=peer.workers)
        peer.close()
    raw1_runs.append(raw_processes(args.env, 1, args.seconds))
    raw2_runs.append(raw_processes(args.env, 2, args.seconds))
    raw1, raw2 = max(raw1_runs), max(raw2_runs)
    r2 = w2["steps_per_s"] / raw2
    r2x1 = w2["steps_per_s"] / (2 * raw1)
    scale_raw, scale_w = raw2 / raw1, w2["steps_per_s"] / w1["steps_per_s"]
    print(f"\n{args.env}, linear policy, popsize {args.popsize}, {args.generations} generations "
          f"({time.strftime('%Y-%m-%d %H:%M')}, rev {rev}, {platform.node()}, {os.cpu_count()} cpus)\n")
    print("| case | steps/s | ratio |")
    print("|---|---:|---:|")
    print(f"| raw, 1 process | {raw1:,.0f} | 1.00 |")
    print(f"| raw, 2 independent processes (total) | {raw2:,.0f} | {scale_raw:.2f}x of 1 |")
    print(f"| GymProblem n_jobs=1 | {w1['steps_per_s']:,.0f} | {w1['steps_per_s'] / raw1:.2f}x raw 1 |")
    print(f"| GymProblem n_jobs=2 | {w2['steps_per_s']:,.0f} | {r2x1:.2f}x 2 x raw 1, {r2:.2f}x raw 2 |")
    if evo:
        print(f"| EvoTorch GymNE, 2 Ray actors | {evo['steps_per_s']:,.0f} | "
              f"evograd 2 workers {w2['steps_per_s'] / evo['steps_per_s']:.2f}x faster |")
    verdict = "PASS" if r2x1 >= TARGET else f"FAIL (missed by {100 * (1 - r2x1 / TARGET):.1f}%)"
    print(f"\n2 workers vs 2 x raw single-env rate: {r2x1:.3f} (target >= {TARGET}): {verdict}")
    print(f"2 workers vs 2 raw processes (the machine's limit): {r2:.3f}")
    rel = scale_w / scale_raw
    print(f"1 -> 2 workers gain {scale_w:.2f}x vs raw gain {scale_raw:.2f}x: {rel:.3f} of the machine's own gain")
    print(json.dumps({"bench": "workers", "env": args.env, "popsize": args.popsize, "generations": args.generations,
                      "raw1": raw1, "raw2": raw2, "raw1_runs": raw1_runs, "raw2_runs": raw2_runs,
                      "workers1": w1["steps_per_s"], "workers2": w2["steps_per_s"],
                      "ratio_2workers_vs_2x_raw1": r2x1, "ratio_2workers_vs_raw2": r2, "target": TARGET,
                      "gain_relative_to_raw": rel, "pass": r2x1 >= TARGET, "evotorch_gymne_2actors": evo,
                      "rev": rev, "date": time.strftime("%Y-%m-%d %H:%M:%S"),
                      "loadavg_1m": round(os.getloadavg()[0], 2)}))


if __name__ == "__main__":
    sys.exit(main())
