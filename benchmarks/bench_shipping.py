"""What a generation ships to the workers, dense rows vs seeds, for a policy of about a million parameters.

Usage: python benchmarks/bench_shipping.py [--quick] [--popsize 256] [--hidden 1000] [--generations 3]

An OpenAI-ES population on an MLP policy (Pendulum-v1, two hidden layers of `hidden` units: ~1.0M
parameters at 1000) is evaluated by `GymProblem(n_jobs=2)` two ways: "dense" gives it `optimizer.ask()`
(the (n, dim) matrix, the path before compact shipping), "compact" gives it `optimizer.ask_candidates()`
(a `SeededCandidates`: every task gets the center, sigma and its slice's seeds and rebuilds its rows).
Episodes are capped short (max_episode_steps=20) so the figures show the cost of moving parameters,
not of simulating.

Bytes per generation: the pickled size of every task's (args, kwargs), summed over tasks, i.e.
len(pickle.dumps(...)) counted with protocol-5 out-of-band buffers so the 1 GB dense slices are not
copied just to be measured (for the compact form the plain len(pickle.dumps(...)) is printed beside it).
joblib's loky backend actually hands arrays over 1 MB to workers as memory-mapped files rather than
through the pipe; the timings include whatever that costs. Time per generation: ask + evaluate + tell,
mean over the timed generations after one warm-up generation (which starts the workers). Both runs use
the same seeds, so their returns must be identical; the script checks it. Prints a table, then a JSON line.
"""
from __future__ import annotations

import argparse
import json
import os
import pickle
import platform
import sys
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")
import numpy as np  # noqa: E402
import torch  # noqa: E402

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import evograd as eg  # noqa: E402


def pickled_bytes(obj) -> int:
    """len(pickle.dumps(obj)) up to a few framing bytes, without materializing large buffers twice."""
    bufs: list[pickle.PickleBuffer] = []
    head = pickle.dumps(obj, protocol=5, buffer_callback=bufs.append)
    return len(head) + sum(b.raw().nbytes for b in bufs)


def run(mode: str, args) -> dict:
    problem = eg.GymProblem("Pendulum-v1", policy="mlp", hidden_sizes=(args.hidden, args.hidden), seed=0,
                            n_jobs=args.n_jobs, max_episode_steps=args.max_episode_steps)
    opt = eg.make("openai_es", x0=problem.initial_params(), popsize=args.popsize, sigma0=0.02, seed=0,
                  maximize=True)
    population = opt.ask_candidates if mode == "compact" else opt.ask
    times, returns, shipped, plain = {"ask": [], "evaluate": [], "tell": []}, [], [], None
    for gen in range(args.generations + 1):
        t0 = time.perf_counter()
        X = population()
        t1 = time.perf_counter()
        # what this generation's tasks will receive (built, not run, outside the timed span)
        tasks = problem._tasks(X if mode == "dense" else opt.ask_candidates(), np.arange(args.popsize),
                               problem.seed, problem.generation, problem.episodes, problem.obs_norm)
        shipped.append(sum(pickled_bytes((a, kw)) for _, a, kw in tasks))
        if mode == "compact" and plain is None:
            plain = sum(len(pickle.dumps((a, kw))) for _, a, kw in tasks)
        del tasks
        t2 = time.perf_counter()
        r = problem.evaluate(X)
        t3 = time.perf_counter()
        opt.tell(r)
        t4 = time.perf_counter()
        del X
        returns.append(r)
        if gen > 0:  # generation 0 starts the workers and builds their envs
            times["ask"].append(t1 - t0)
            times["evaluate"].append(t3 - t2)
            times["tell"].append(t4 - t3)
    problem.close()
    mean = {k: float(np.mean(v)) for k, v in times.items()}
    return {"dim": problem.dim, "bytes_per_gen": int(np.mean(shipped)), "plain_pickle_bytes": plain,
            "s_per_gen": sum(mean.values()), **{f"{k}_s": v for k, v in mean.items()},
            "returns": np.concatenate(returns), "env_steps": problem.env_steps}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="popsize 64, hidden 300, 1 timed generation")
    ap.add_argument("--popsize", type=int, default=256)
    ap.add_argument("--hidden", type=int, default=1000)
    ap.add_argument("--generations", type=int, default=3, help="timed generations (after one warm-up)")
    ap.add_argument("--n-jobs", type=int, default=2)
    ap.add_argument("--max-episode-steps", type=int, default=20)
    args = ap.parse_args()
    if args.quick:
        args.popsize, args.hidden, args.generations = 64, 300, 1
    torch.set_num_threads(1)
    res = {mode: run(mode, args) for mode in ("dense", "compact")}
    same = bool(np.array_equal(res["dense"]["returns"], res["compact"]["returns"]))
    d, c = res["dense"], res["compact"]
    print(f"openai_es on Pendulum-v1, MLP {args.hidden}x{args.hidden}: dim={d['dim']:,}, popsize={args.popsize}, "
          f"n_jobs={args.n_jobs}, max_episode_steps={args.max_episode_steps}, {args.generations} timed generations")
    print(f"{'form':<8} {'MB shipped/gen':>15} {'s/gen':>8} {'ask s':>8} {'evaluate s':>11} {'tell s':>8}")
    for mode, r in res.items():
        print(f"{mode:<8} {r['bytes_per_gen'] / 1e6:>15.3f} {r['s_per_gen']:>8.2f} {r['ask_s']:>8.2f} "
              f"{r['evaluate_s']:>11.2f} {r['tell_s']:>8.2f}")
    print(f"bytes ratio dense/compact: {d['bytes_per_gen'] / c['bytes_per_gen']:.1f}x; time ratio: "
          f"{d['s_per_gen'] / c['s_per_gen']:.2f}x; compact plain pickle bytes: {c['plain_pickle_bytes']:,}; "
          f"identical returns: {same}")
    strip = lambda r: {k: v for k, v in r.items() if k != "returns"}  # noqa: E731
    print(json.dumps({"bench": "shipping", "env": "Pendulum-v1", "optimizer": "openai_es", "popsize": args.popsize,
                      "n_jobs": args.n_jobs, "max_episode_steps": args.max_episode_steps,
                      "generations": args.generations, "quick": args.quick, "dense": strip(d),
                      "compact": strip(c), "bytes_ratio": d["bytes_per_gen"] / c["bytes_per_gen"],
                      "time_ratio": d["s_per_gen"] / c["s_per_gen"], "identical_returns": same,
                      "python": platform.python_version(), "cpus": os.cpu_count()}))
    if not same:
        sys.exit("dense and compact populations gave different returns")


if __name__ == "__main__":
    main()
