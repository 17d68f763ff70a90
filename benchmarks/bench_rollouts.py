"""Rollout engine throughput as ratios against raw Gymnasium, measured in the same run.

Usage: python benchmarks/bench_rollouts.py [--quick] [--reps 5] [--seconds 1.0] [--skip-mujoco] [--no-evotorch]

CartPole-v1, linear policy, popsize 256, one process: live env steps/s of RolloutWorker.evaluate
against `gym.make_vec("CartPole-v1", 256, vectorization_mode="vector_entry_point")` stepped with
pre-drawn random actions (as ../shared/peers/env_throughput.py does). Target: good population >= 0.8x.
Cases:
  * good population: a balancing linear policy plus N(0, 0.01^2) noise (most episodes run 500 steps);
  * random population: N(0, 1) parameters (short episodes; slot utilization is reported).
The good population is also evaluated by EvoTorch 0.6.1's GymNE and VecGymNE (same rows, observation
normalization off on both sides, one process, one torch thread; see _evotorch_peers.py): one generation
per repetition, interleaved with the reps above (all reps in full mode, the first in --quick).
HalfCheetah-v5, linear policy, popsize 64: one worker against one raw `gym.make` env with random
actions. `run_halfcheetah_worker` runs one worker and is reusable for multi-process comparisons.
Raw and engine measurements alternate rep by rep so machine load hits both alike; medians reported.
The last stdout line is a one-line JSON result. MuJoCo runs inside a temp dir (it writes MUJOCO_LOG.TXT).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import gymnasium as gym
import torch

from evograd.gym.rollouts import RolloutWorker

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
TARGET_VS_RAW = 0.8

torch.set_num_threads(1)

# Linear CartPole policy W (2x4), b (2): logit1 - logit0 = theta + theta_dot (push toward the lean).
GOOD_CARTPOLE = np.array([0, 0, 0, 0, 0, 0, 1, 1, 0, 0], dtype=np.float64)


def raw_vector_cartpole(seconds: float, num_envs: int = 256, seed: int = 0) -> float:
    env = gym.make_vec("CartPole-v1", num_envs=num_envs, vectorization_mode="vector_entry_point")
    env.action_space.seed(seed)
    env.reset(seed=seed)
    acts = [env.action_space.sample() for _ in range(256)]
    n, t0 = 0, time.perf_counter()
    while True:
        for i in range(20):
            env.step(acts[(n + i) & 255])
        n += 20
        dt = time.perf_counter() - t0
        if dt >= seconds:
            env.close()
            return n * num_envs / dt


def raw_single(env_id: str, seconds: float, seed: int = 0) -> float:
    env = gym.make(env_id)
    env.action_space.seed(seed)
    env.reset(seed=seed)
    acts = [env.action_space.sample() for _ in range(4096)]
    n, t0 = 0, time.perf_counter()
    while True:
        for i in range(500):
            _, _, term, trunc, _ = env.step(acts[(n + i) & 4095])
            if term or trunc:
                env.reset()
        n += 500
        dt = time.perf_counter() - t0
        if dt >= seconds:
            env.close()
            return n / dt


def engine_rate(worker: RolloutWorker, P: np.ndarray, seconds: float, collect: bool, gen0: int = 0) -> dict:
    """Evaluate generations until `seconds` pass; live env steps per wall second and slot utilization."""
    steps, util, gens, t0 = 0, [], gen0, time.perf_counter()
    while True:
        r = worker.evaluate(P, np.arange(len(P)), run_seed=0, generation=gens, collect_obs_stats=collect)
        steps += r.env_steps
        util.append(r.slot_utilization)
        gens += 1
        dt = time.perf_counter() - t0
        if dt >= seconds:
            return {"steps_per_s": steps / dt, "slot_utilization": float(np.mean(util)), "generations": gens - gen0,
                    "mean_return": float(r.returns.mean())}


def run_halfcheetah_worker(P: np.ndarray, generations: int, run_seed: int = 0, gen0: int = 0,
                           worker: RolloutWorker | None = None) -> dict:
    """One worker evaluating `P` on HalfCheetah-v5 for `generations` generations (reusable from joblib)."""
    worker = worker or RolloutWorker("HalfCheetah-v5", {"policy": "linear"})
    steps, t0 = 0, time.perf_counter()
    for g in range(generations):
        steps += worker.evaluate(P, np.arange(len(P)), run_seed, gen0 + g, collect_obs_stats=False).env_steps
    dt = time.perf_counter() - t0
    return {"env_steps": steps, "wall_s": dt, "steps_per_s": steps / dt}


def naive_linear_loop(env_id: str, P: np.ndarray, seconds: float, max_episode_steps: int, gen0: int = 0) -> float:
    """The obvious per-member loop (one env, W @ o + b, clip) on the same population: the same physics
    work as the worker, since MuJoCo's step cost depends on the actions (contacts)."""
    from evograd.gym.rollouts import episode_seed

    env = gym.make(env_id, max_episode_steps=max_episode_steps)
    low, high = env.action_space.low, env.action_space.high
    act_dim, obs_dim = env.action_space.shape[0], env.observation_space.shape[0]
    steps, g, t0 = 0, gen0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        for i, p in enumerate(P):
            W, b = p[:act_dim * obs_dim].reshape(act_dim, obs_dim), p[act_dim * obs_dim:]
            obs, _ = env.reset(seed=episode_seed(0, g, i, 0))
            done = False
            while not done:
                obs, _, te, tr, _ = env.step(np.clip(W @ obs + b, low, high).astype(np.float32))
                steps, done = steps + 1, te or tr
        g += 1
    dt = time.perf_counter() - t0
    env.close()
    return steps / dt


def _med(xs):
    return statistics.median(xs)


def bench_cartpole(reps: int, seconds: float, evotorch_reps: int = 0) -> dict:
    rng = np.random.default_rng(0)
    pops = {
        "good": GOOD_CARTPOLE + 0.01 * rng.standard_normal((256, 10)),
        "random": rng.standard_normal((256, 10)),
    }
    worker = RolloutWorker("CartPole-v1", {"policy": "linear"})
    cases = [("good", False), ("good", True), ("random", False)]
    raw, ours = [], {c: [] for c in cases}
    peers = {}
    if evotorch_reps:
        from _evotorch_peers import EvoTorchPeer

        peers = {name: (EvoTorchPeer("CartPole-v1", pops["good"], vec=vec), []) for name, vec in
                 (("evotorch_gymne", False), ("evotorch_vecgymne", True))}
    for rep in range(reps):
        raw.append(raw_vector_cartpole(seconds))
        for pop, collect in cases:
            ours[(pop, collect)].append(engine_rate(worker, pops[pop], seconds, collect, gen0=1000 * rep))
        if rep < evotorch_reps:
            for name, (peer, runs) in peers.items():
                runs.append(peer.measure(1))
                print(f"rep {rep}: {name} {runs[-1]['steps_per_s']:,.0f} steps/s", flush=True)
        print(f"rep {rep}: raw {raw[-1]:,.0f} steps/s; " + "; ".join(
            f"{p}{'+stats' if c else ''} {ours[(p, c)][-1]['steps_per_s']:,.0f}" for p, c in cases), flush=True)
    raw_med = _med(raw)
    out = {"raw_make_vec_256_steps_per_s": round(raw_med), "raw_runs": [round(v) for v in raw]}
    for pop, collect in cases:
        runs = ours[(pop, collect)]
        med = _med([r["steps_per_s"] for r in runs])
        out[f"{pop}{'_with_obs_stats' if collect else ''}"] = {
            "steps_per_s": round(med),
            "ratio_vs_raw": round(med / raw_med, 3),
            "ratio_per_rep": [round(r["steps_per_s"] / w, 3) for r, w in zip(runs, raw)],
            "slot_utilization": round(_med([r["slot_utilization"] for r in runs]), 3),
            "mean_return": round(_med([r["mean_return"] for r in runs]), 1),
        }
    out["good"]["target_vs_raw"] = TARGET_VS_RAW
    out["good"]["pass"] = out["good"]["ratio_vs_raw"] >= TARGET_VS_RAW
    ours_good = out["good"]["steps_per_s"]
    for name, (peer, runs) in peers.items():
        rate = _med([r["steps_per_s"] for r in runs])
        out[name] = {"steps_per_s": round(rate), "runs": [round(r["steps_per_s"]) for r in runs],
                     "mean_return": round(_med([r["mean_return"] for r in runs]), 1),
                     "warmup_s": round(peer.warmup_s, 2), "workers": peer.workers,
                     "evograd_speedup": round(ours_good / rate, 2)}
    return out


def bench_halfcheetah(reps: int, seconds: float) -> dict:
    cwd = os.getcwd()
    with tempfile.TemporaryDirectory() as tmp:
        os.chdir(tmp)  # MuJoCo writes MUJOCO_LOG.TXT into the working directory
        try:
            worker = RolloutWorker("HalfCheetah-v5", {"policy": "linear"}, max_episode_steps=200)
            P = 0.1 * np.random.default_rng(0).standard_normal((64, worker.dim))
            raw, ours, naive = [], [], []
            for rep in range(reps):
                raw.append(raw_single("HalfCheetah-v5", seconds))
                t0, steps, g = time.perf_counter(), 0, 0
                while time.perf_counter() - t0 < seconds:
                    steps += run_halfcheetah_worker(P, 1, gen0=1000 * rep + g, worker=worker)["env_steps"]
                    g += 1
                ours.append(steps / (time.perf_counter() - t0))
                naive.append(naive_linear_loop("HalfCheetah-v5", P, seconds, 200, gen0=1000 * rep))
                print(f"rep {rep}: HalfCheetah raw {raw[-1]:,.0f} steps/s, worker {ours[-1]:,.0f}, "
                      f"naive loop {naive[-1]:,.0f}", flush=True)
            worker.close()
        finally:
            os.chdir(cwd)
    return {"raw_single_env_steps_per_s": round(_med(raw)), "worker_steps_per_s": round(_med(ours)),
            "ratio_vs_raw": round(_med(ours) / _med(raw), 3),
            "ratio_per_rep": [round(o / r, 3) for o, r in zip(ours, raw)],
            "naive_same_policy_loop_steps_per_s": round(_med(naive)),
            "ratio_vs_naive_loop": round(_med(ours) / _med(naive), 3),
            "note": "popsize 64, episodes truncated at 200 steps, one process, default 8 slots"}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="2 reps of 0.5 s per case")
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--seconds", type=float, default=1.5)
    ap.add_argument("--skip-mujoco", action="store_true")
    ap.add_argument("--no-evotorch", action="store_true", help="skip the EvoTorch GymNE/VecGymNE peers")
    args = ap.parse_args()
    if args.quick:
        args.reps, args.seconds = 2, 0.5
    evo_reps = 0 if args.no_evotorch else (1 if args.quick else args.reps)
    result = {"bench": "rollouts", "reps": args.reps, "seconds_per_case": args.seconds,
              "cartpole_linear_pop256": bench_cartpole(args.reps, args.seconds, evo_reps)}
    c = result["cartpole_linear_pop256"]
    print(f"CartPole pop 256: evograd {c['good']['steps_per_s']:,} steps/s = {c['good']['ratio_vs_raw']:.3f}x raw "
          f"make_vec(256) (target >= {TARGET_VS_RAW}): {'PASS' if c['good']['pass'] else 'FAIL'}" + "".join(
              f"; {c[k]['evograd_speedup']}x {k}" for k in ("evotorch_gymne", "evotorch_vecgymne") if k in c),
          flush=True)
    if not args.skip_mujoco:
        result["halfcheetah_linear_pop64"] = bench_halfcheetah(args.reps, args.seconds)
    result["machine"] = {"python": platform.python_version(), "cpus": os.cpu_count(),
                         "loadavg": os.getloadavg(), "numpy": np.__version__, "gymnasium": gym.__version__}
    print(json.dumps(result))


if __name__ == "__main__":
    main()
