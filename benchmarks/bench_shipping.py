"""What a generation ships to the workers, dense rows vs seeds, for a policy of about a million parameters.

Usage: python benchmarks/bench_shipping.py [--quick] [--popsize 256] [--hidden 1000] [--generations 3]
                                           [--cases openai_es:dense,openai_es:seeds,...]

Populations on an MLP policy (Pendulum-v1, two hidden layers of `hidden` units: ~1.0M parameters at 1000)
are evaluated by `GymProblem(n_jobs=2)`. Cases (optimizer:form):

- openai_es:dense        `optimizer.ask()`, the (n, dim) matrix: the path before compact shipping.
- openai_es:seeds        `optimizer.ask_candidates()`, a `SeededCandidates`: every task gets the center,
                         sigma and its slice's seeds and rebuilds its rows ("rng" noise, a generator per seed).
- openai_es:seeds+table  the same with noise="table" (rows rebuilt from windows of a shared noise table).
- ga:dense               the GA with encoding="dense", rows shipped (the GA before seed lists).
- ga:seeds               encoding="seeds" (Such et al.), `ask_candidates()`: every task gets the base (x0)
                         and its rows' seed lists and rebuilds each row from its whole lineage.
- ga:seeds+table         the same with noise="table".

Episodes are capped short (max_episode_steps=20) so the figures show the cost of moving parameters,
not of simulating.

Bytes per generation: the pickled size of every task's (args, kwargs), summed over tasks, i.e.
len(pickle.dumps(...)) counted with protocol-5 out-of-band buffers so the 1 GB dense slices are not
copied just to be measured (for compact forms the plain len(pickle.dumps(...)) is printed beside it).
joblib's loky backend actually hands arrays over 1 MB to workers as memory-mapped files rather than
through the pipe; the timings include whatever that costs. Time per generation: ask + evaluate + tell,
mean over the timed generations after one warm-up generation (which starts the workers and, for
"table", builds each worker's table). Checks: openai_es dense and seeds use the same seeds, so their
returns must be identical; for every compact case, the first rows of the last task are rebuilt here from
that task's state and must equal the asked rows bit for bit. Prints a table, then a JSON line.
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
from evograd.core.candidates import Candidates  # noqa: E402


def pickled_bytes(obj) -> int:
    """len(pickle.dumps(obj)) up to a few framing bytes, without materializing large buffers twice."""
    bufs: list[pickle.PickleBuffer] = []
    head = pickle.dumps(obj, protocol=5, buffer_callback=bufs.append)
    return len(head) + sum(b.raw().nbytes for b in bufs)


CASES = ("openai_es:dense", "openai_es:seeds", "openai_es:seeds+table", "ga:dense", "ga:seeds", "ga:seeds+table")


def make_optimizer(case: str, x0: np.ndarray, popsize: int):
    name, form = case.split(":")
    noise = "table" if form.endswith("+table") else "rng"
    if name == "openai_es":
        return eg.make("openai_es", x0=x0, popsize=popsize, sigma0=0.02, noise=noise, seed=0, maximize=True)
    encoding = "dense" if form == "dense" else "seeds"
    return eg.make("ga", x0=x0, popsize=popsize, sigma0=0.02, encoding=encoding, noise=noise, seed=0, maximize=True)


def run(case: str, args) -> dict:
    problem = eg.GymProblem("Pendulum-v1", policy="mlp", hidden_sizes=(args.hidden, args.hidden), seed=0,
                            n_jobs=args.n_jobs, max_episode_steps=args.max_episode_steps)
    opt = make_optimizer(case, problem.initial_params(), args.popsize)
    compact = not case.endswith(":dense")
    population = opt.ask_candidates if compact else opt.ask
    times, returns, shipped, plain, rows_ok = {"ask": [], "evaluate": [], "tell": []}, [], [], None, None
    for gen in range(args.generations + 1):
        t0 = time.perf_counter()
        X = population()
        t1 = time.perf_counter()
        # what this generation's tasks will receive (built, not run, outside the timed span)
        tasks = problem._tasks(X, np.arange(args.popsize), problem.seed, problem.generation, problem.episodes,
                               problem.obs_norm)
        shipped.append(sum(pickled_bytes((a, kw)) for _, a, kw in tasks))
        if compact and plain is None:
            plain = sum(len(pickle.dumps((a, kw))) for _, a, kw in tasks)
        if compact and gen == args.generations:  # a worker's rebuild of two rows vs the asked rows
            _, (_, _, state, ids, *_), _ = tasks[-1]
            a = int(ids[0])  # candidate ids are 0..n-1, so the last task's first row
            rows_ok = bool(np.array_equal(Candidates.from_state(state).take([0, 1]), X.take([a, a + 1])))
        del tasks
        t2 = time.perf_counter()
        r = problem.evaluate(X)
        t3 = time.perf_counter()
        opt.tell(r)
        t4 = time.perf_counter()
        lineage = int(np.diff(X.offsets).max()) if hasattr(X, "offsets") else None
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
            "rows_rebuilt_identical": rows_ok, "max_lineage": lineage,
            "returns": np.concatenate(returns), "env_steps": problem.env_steps}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="popsize 64, hidden 300, 1 timed generation")
    ap.add_argument("--popsize", type=int, default=256)
    ap.add_argument("--hidden", type=int, default=1000)
    ap.add_argument("--generations", type=int, default=3, help="timed generations (after one warm-up)")
    ap.add_argument("--n-jobs", type=int, default=2)
    ap.add_argument("--max-episode-steps", type=int, default=20)
    ap.add_argument("--cases", default=",".join(CASES), help=f"comma-separated subset of {','.join(CASES)}")
    args = ap.parse_args()
    if args.quick:
        args.popsize, args.hidden, args.generations = 64, 300, 1
    cases = [c.strip() for c in args.cases.split(",") if c.strip()]
    unknown = sorted(set(cases) - set(CASES))
    if unknown:
        sys.exit(f"unknown cases {unknown}; choose from {CASES}")
    torch.set_num_threads(1)
    res = {case: run(case, args) for case in cases}
    same = None
    if {"openai_es:dense", "openai_es:seeds"} <= set(res):
        same = bool(np.array_equal(res["openai_es:dense"]["returns"], res["openai_es:seeds"]["returns"]))
    dim = next(iter(res.values()))["dim"]
    print(f"Pendulum-v1, MLP {args.hidden}x{args.hidden}: dim={dim:,}, popsize={args.popsize}, n_jobs={args.n_jobs}, "
          f"max_episode_steps={args.max_episode_steps}, {args.generations} timed generations")
    print(f"{'case':<22} {'MB shipped/gen':>15} {'s/gen':>8} {'ask s':>8} {'evaluate s':>11} {'tell s':>8} "
          f"{'rows rebuilt ok':>16} {'lineage':>8}")
    for case, r in res.items():
        ok = "-" if r["rows_rebuilt_identical"] is None else str(r["rows_rebuilt_identical"])
        lin = "-" if r["max_lineage"] is None else str(r["max_lineage"])
        print(f"{case:<22} {r['bytes_per_gen'] / 1e6:>15.3f} {r['s_per_gen']:>8.2f} {r['ask_s']:>8.2f} "
              f"{r['evaluate_s']:>11.2f} {r['tell_s']:>8.2f} {ok:>16} {lin:>8}")
    ratios = {}
    for name in ("openai_es", "ga"):
        base = res.get(f"{name}:dense")
        for form in ("seeds", "seeds+table"):
            other = res.get(f"{name}:{form}")
            if base and other:
                ratios[f"{name}:dense/{form}"] = {"bytes": base["bytes_per_gen"] / other["bytes_per_gen"],
                                                 "time": base["s_per_gen"] / other["s_per_gen"]}
                print(f"{name} dense/{form}: bytes {ratios[f'{name}:dense/{form}']['bytes']:.1f}x, "
                      f"time {ratios[f'{name}:dense/{form}']['time']:.2f}x")
    if same is not None:
        print(f"openai_es dense and seeds give identical returns: {same}")
    strip = lambda r: {k: v for k, v in r.items() if k != "returns"}  # noqa: E731
    print(json.dumps({"bench": "shipping", "env": "Pendulum-v1", "popsize": args.popsize, "dim": dim,
                      "n_jobs": args.n_jobs, "max_episode_steps": args.max_episode_steps,
                      "generations": args.generations, "quick": args.quick,
                      "cases": {c: strip(r) for c, r in res.items()}, "ratios": ratios,
                      "identical_returns": same, "python": platform.python_version(), "cpus": os.cpu_count()}))
    failed = [c for c, r in res.items() if r["rows_rebuilt_identical"] is False]
    if same is False or failed:
        sys.exit(f"compact populations disagree with their dense rows: returns identical={same}, rows {failed}")


if __name__ == "__main__":
    main()
