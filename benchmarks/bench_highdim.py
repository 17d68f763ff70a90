"""Cost of one ask+tell at neuroevolution sizes: does it stay linear in popsize x dim?

Each case (optimizer, dim) runs in a fresh subprocess so its peak resident memory (ru_maxrss) is its
own. The fitness is sum(x^2) computed with einsum (no temporary copy) and is excluded from the timing;
`ask()` is the dense (n, dim) array a user receives. Memory is reported as the RSS growth over the
process after building the optimizer, and as a multiple of one (n, dim) float64 population.

    python benchmarks/bench_highdim.py            # 5 timed generations per case
    python benchmarks/bench_highdim.py --quick    # 2 timed generations per case
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time

OPTIMIZERS = ("ga", "openai_es", "snes")
DIMS = (250_000, 500_000, 1_000_000)
POPSIZE = 256
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _maxrss_bytes() -> int:
    r = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return r if sys.platform == "darwin" else r * 1024  # Linux reports KiB


def run_case(name: str, dim: int, popsize: int, gens: int) -> dict:
    """One case, in this process (called in the child)."""
    import numpy as np

    import evograd

    if name not in evograd.available():
        return {"optimizer": name, "skipped": f"optimizer {name!r} is not registered"}
    try:
        opt = evograd.make(name, x0=np.zeros(dim), popsize=popsize, seed=0)
    except (evograd.ParameterError, TypeError, NotImplementedError) as exc:
        return {"optimizer": name, "skipped": f"cannot build: {exc}"}
    base = _maxrss_bytes()
    ask_ms, tell_ms = [], []
    for g in range(gens + 1):  # generation 0 is a warm-up (first allocations, GA's initial population)
        t0 = time.perf_counter()
        X = opt.ask()
        t1 = time.perf_counter()
        values = np.einsum("ij,ij->i", X, X)
        del X
        t2 = time.perf_counter()
        opt.tell(values)
        t3 = time.perf_counter()
        if g:
            ask_ms.append(1e3 * (t1 - t0))
            tell_ms.append(1e3 * (t3 - t2))
    total = [a + b for a, b in zip(ask_ms, tell_ms)]
    peak = _maxrss_bytes() - base
    ms = statistics.median(total)
    return {
        "optimizer": name,
        "dim": dim,
        "popsize": popsize,
        "gens": gens,
        "ms_per_gen": round(ms, 1),
        "ask_ms": round(statistics.median(ask_ms), 1),
        "tell_ms": round(statistics.median(tell_ms), 1),
        "ns_per_elem": round(1e6 * ms / (popsize * dim), 3),
        "peak_rss_mb": round(peak / 2**20, 1),
        "peak_in_populations": round(peak / (8.0 * popsize * dim), 2),
    }


def spawn(name: str, dim: int, popsize: int, gens: int) -> dict:
    cmd = [sys.executable, os.path.abspath(__file__), "--case", name, str(dim), str(popsize), str(gens)]
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    env.setdefault("OMP_NUM_THREADS", "1")
    proc = subprocess.run(cmd, check=False, capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        return {
            "optimizer": name,
            "dim": dim,
            "error": proc.stderr.strip().splitlines()[-1:] or [f"exit {proc.returncode}"],
        }
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="2 timed generations per case instead of 5")
    ap.add_argument("--gens", type=int, default=None)
    ap.add_argument("--popsize", type=int, default=POPSIZE)
    ap.add_argument("--dims", type=int, nargs="+", default=list(DIMS))
    ap.add_argument("--optimizers", nargs="+", default=list(OPTIMIZERS))
    ap.add_argument("--case", nargs=4, metavar=("NAME", "DIM", "POPSIZE", "GENS"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.case:
        name, dim, popsize, gens = args.case
        print(json.dumps(run_case(name, int(dim), int(popsize), int(gens))))
        return
    gens = args.gens or (2 if args.quick else 5)
    rows = []
    print(
        f"{'optimizer':<10} {'dim':>9} {'n':>5} {'ms/gen':>9} {'ask ms':>8} {'tell ms':>8} "
        f"{'ns/(n*dim)':>10} {'peak MB':>9} {'x pop':>6}"
    )
    skipped = set()
    for name in args.optimizers:
        for dim in args.dims:
            if name in skipped:
                continue
            r = spawn(name, dim, args.popsize, gens)
            rows.append(r)
            if "skipped" in r or "error" in r:
                print(f"{name:<10} skipped: {r.get('skipped') or r.get('error')}")
                skipped.add(name)
                continue
            print(
                f"{name:<10} {dim:>9} {r['popsize']:>5} {r['ms_per_gen']:>9.1f} {r['ask_ms']:>8.1f} "
                f"{r['tell_ms']:>8.1f} {r['ns_per_elem']:>10.3f} {r['peak_rss_mb']:>9.1f} "
                f"{r['peak_in_populations']:>6.2f}",
                flush=True,
            )
    info = {"python": platform.python_version(), "cpu_count": os.cpu_count()}
    try:
        info["loadavg_1m"] = round(os.getloadavg()[0], 2)
    except OSError:
        pass
    print(json.dumps({"bench": "highdim", "gens": gens, "machine": info, "results": rows}))


if __name__ == "__main__":
    main()
