"""Fixed wall-clock budget on LunarLander-v3 and HalfCheetah-v5: evograd's evolution strategies (linear
policies) and PPO against EvoTorch's best configuration and Stable-Baselines3 PPO with rl-zoo settings.

Methods: evograd openai_es / snes / cmaes / ars (linear policy, 2 loky workers) and ppo (64-64 MLP on
LunarLander, 256-256 on HalfCheetah), with the settings of configs/lunarlander_linear.yaml and
configs/halfcheetah_linear.yaml; EvoTorch GymNE + SNES popsize 100 with 2 Ray actors (its best
configuration in ../shared/peers/RESULTS.md); SB3 PPO with the zoo hyperparameters, render_mode=None envs.
Every run is its own process (fresh imports, its own Ray or worker pool), seeds interleave across
libraries so load drift on a shared machine hits all alike, and every run follows the one evaluation
protocol of _control_runs.py (5 deterministic episodes on fixed seeds, the same env-step schedule).

The clock is training seconds: wall-clock after construction (worker pools and Ray actors start inside
it) minus evaluation time, and the budget is in training seconds too (see _control_runs.py for why).
Reported per (env, method), medians over seeds: best evaluation so far at 60 s, 120 s and the end (a max
over noisy 5-episode means, as in RESULTS.md), the final evaluation, how many runs reached the threshold,
and the training seconds and env steps to the first evaluation at or above it. A run that misses the threshold
within its budget counts as missing (infinite time), so the median over 3 seeds is missing when 2 miss.
Targets: LunarLander median time to 200 of evograd's fastest method <= 1/3 of EvoTorch's and <= 1/4 of
SB3's; HalfCheetah: evograd's fastest evolution strategy to 3430 <= 1/2 of SB3's.

Usage:
  python benchmarks/bench_control.py [--quick] [--envs LunarLander-v3 HalfCheetah-v5] [--methods ...]
      [--seeds 0 1 2] [--budget-lunarlander 150] [--budget-halfcheetah 180] [--out DIR [--resume]]
With --out every finished run is appended to DIR/runs.jsonl as it ends, and --resume skips the runs already
there (same env, method, seed and budget), so a long run survives the end of a session.
Every run must use its whole budget: the summary lists each run's training seconds and env steps, and the
case fails ("budget_check") when any run stopped short of its budget (none stops at the threshold).
  python benchmarks/bench_control.py --one ENV METHOD SEED BUDGET      (a single run, used internally)
The last stdout line is one JSON object (curves included).
"""
from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ENVS = ("LunarLander-v3", "HalfCheetah-v5")
METHODS = ("openai_es", "snes", "cmaes", "ars", "ppo", "evotorch_snes", "sb3_ppo")
TARGETS = {  # env: (evograd methods eligible, peer, max ratio of median times)
    "LunarLander-v3": [(("openai_es", "snes", "cmaes", "ars", "ppo"), "evotorch_snes", 1 / 3),
                       (("openai_es", "snes", "cmaes", "ars", "ppo"), "sb3_ppo", 1 / 4)],
    "HalfCheetah-v5": [(("openai_es", "snes", "cmaes", "ars"), "sb3_ppo", 1 / 2)],
}


def best_at(curve, t):
    vals = [r for w, _, r in curve if w <= t]
    return max(vals) if vals else None


def first_reach(run: dict):
    """The first evaluation at or above the threshold: training seconds, wall-clock, env steps."""
    return next(({"train_s": t, "wall_s": run["curve_wall_s"][i], "env_steps": s, "eval_return": r}
                 for i, (t, s, r) in enumerate(run["curve"]) if r >= run["threshold"]), None)


def med(xs):
    """Median where None (a run that missed) counts as +inf; None when the median itself is missing."""
    vals = sorted(math.inf if x is None else x for x in xs)
    if not vals:
        return None
    m = statistics.median(vals)
    return None if math.isinf(m) else m


def summarize(runs: list[dict]) -> list[dict]:
    groups: dict[tuple, list] = {}
    for r in runs:
        groups.setdefault((r["env"], r["method"]), []).append(r)
    out = []
    for (env, method), rs in groups.items():
        ok = [r for r in rs if "error" not in r]
        hits = [first_reach(r) for r in ok]
        out.append(dict(
            env=env, method=method, library=ok[0]["library"] if ok else None,
            workers=ok[0].get("workers") if ok else "ERROR", seeds=[r["seed"] for r in rs],
            errors=[r["error"] for r in rs if "error" in r],
            best_at_60=med([best_at(r["curve"], 60) for r in ok]),
            best_at_120=med([best_at(r["curve"], 120) for r in ok]),
            best_at_end=med([max(x[2] for x in r["curve"]) for r in ok]),
            best_at_end_per_seed=[max(x[2] for x in r["curve"]) for r in ok],
            final=med([r["curve"][-1][2] for r in ok]),
            reached=f"{sum(h is not None for h in hits)}/{len(rs)}",
            # errored runs count as missing too: the median is over all runs asked for
            time_to_threshold=med([h and h["train_s"] for h in hits] + [None] * (len(rs) - len(ok))),
            wall_to_threshold=med([h and h["wall_s"] for h in hits] + [None] * (len(rs) - len(ok))),
            steps_to_threshold=med([h and h["env_steps"] for h in hits] + [None] * (len(rs) - len(ok))),
            time_to_threshold_per_seed=[h and h["train_s"] for h in hits],
            steps_to_threshold_per_seed=[h and h["env_steps"] for h in hits],
            train_steps_per_s=med([r["train_env_steps"] / max(r["train_s"], 1e-9) for r in ok]),
            env_steps_at_end=med([r["train_env_steps"] for r in ok]),
            eval_share=med([r["eval_s"] / max(r["train_s"] + r["eval_s"], 1e-9) for r in ok]),
            train_s_per_seed=[r["train_s"] for r in ok],
            env_steps_per_seed=[r["train_env_steps"] for r in ok],
            budget_used=f"{sum(not stopped_short(r) for r in ok)}/{len(rs)}",
            short_runs=[f"seed {r['seed']}: {r['train_s']:.1f} of {r['budget_s']:g} s" for r in ok if stopped_short(r)],
        ))
    return out


def stopped_short(run: dict) -> bool:
    """Whether a run ended before its training-seconds budget. No method here stops at the threshold (the
    curves go on to the budget), so any earlier end is a defect of the benchmark: a forgotten default cap,
    a crash swallowed by a library, a safety net set too low. Runs stop at the first generation or update
    boundary after the budget, so a whole budget means train_s >= budget (1 ms of rounding allowed)."""
    return run["train_s"] < run["budget_s"] - 1e-3


def budget_check(summary: list[dict]) -> dict:
    """The case fails when any run stopped short of its budget (listed by env and method)."""
    short = [f"{s['env']} {s['method']} {x}" for s in summary for x in s["short_runs"]]
    return dict(passed=not short, short_runs=short, runs=sum(len(s["train_s_per_seed"]) for s in summary))


def targets(summary: list[dict], budgets: dict) -> list[dict]:
    """Verdicts on median times. A peer whose median run missed took longer than its budget, so the
    budget is a lower bound on its time: the ratio is then an upper bound (ratio_is_bound)."""
    by = {(s["env"], s["method"]): s for s in summary}
    out = []
    for env, checks in TARGETS.items():
        for eligible, peer, limit in checks:
            ours = [by[(env, m)] for m in eligible if (env, m) in by]
            if not ours or (env, peer) not in by:
                continue
            best = min(ours, key=lambda s: math.inf if s["time_to_threshold"] is None else s["time_to_threshold"])
            e, pt = best["time_to_threshold"], by[(env, peer)]["time_to_threshold"]
            ref = pt if pt is not None else budgets[env]
            ratio = None if e is None else e / ref
            # a bound above the limit, or both missing, decides nothing: passed is None (undecided) then
            passed = None if pt is None and (ratio is None or ratio > limit) else \
                (ratio is not None and ratio <= limit)
            out.append(dict(env=env, evograd_method=best["method"], peer=peer, evograd_time=e, peer_time=pt,
                            ratio=ratio, ratio_is_bound=pt is None, limit=limit, passed=passed))
    return out


def load_runs(path: str) -> list[dict]:
    """The finished runs of an earlier invocation (one JSON object per line); failed runs are dropped so they
    run again."""
    if not os.path.exists(path):
        return []
    with open(path) as fh:
        return [r for r in (json.loads(ln) for ln in fh if ln.strip()) if "error" not in r]


def run_one(env, method, seed, budget, timeout) -> dict:
    cmd = [sys.executable, os.path.abspath(__file__), "--one", env, method, str(seed), str(budget)]
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="evograd-ctl-") as tmp:  # MuJoCo writes MUJOCO_LOG.TXT to cwd
        try:
            p = subprocess.run(cmd, cwd=tmp, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired as exc:
            return dict(env=env, method=method, seed=seed, error=f"timeout after {timeout} s",
                        stderr_tail=(exc.stderr or "")[-1500:] if isinstance(exc.stderr, str) else "")
    lines = [ln for ln in p.stdout.splitlines() if ln.startswith("{")]
    if p.returncode != 0 or not lines:
        return dict(env=env, method=method, seed=seed, error=f"exit {p.returncode}", stderr_tail=p.stderr[-1500:])
    r = json.loads(lines[-1])
    r["process_s"] = round(time.perf_counter() - t0, 2)
    return r


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--one", nargs=4, metavar=("ENV", "METHOD", "SEED", "BUDGET"), help=argparse.SUPPRESS)
    ap.add_argument("--quick", action="store_true", help="LunarLander, evograd cmaes vs SB3 PPO, 1 seed, 15 s")
    ap.add_argument("--envs", nargs="+", choices=ENVS)
    ap.add_argument("--methods", nargs="+", choices=METHODS)
    ap.add_argument("--seeds", nargs="+", type=int)
    ap.add_argument("--budget-lunarlander", type=float, default=None)
    ap.add_argument("--budget-halfcheetah", type=float, default=None)
    ap.add_argument("--out", help="folder for runs.jsonl: every finished run, appended as it ends")
    ap.add_argument("--resume", action="store_true", help="skip the runs already in OUT/runs.jsonl")
    args = ap.parse_args()
    if args.one:
        sys.path.insert(0, HERE)
        sys.path.insert(0, os.path.dirname(HERE))
        import warnings

        warnings.filterwarnings("ignore")
        from _control_runs import run

        env, method, seed, budget = args.one
        print(json.dumps(run(env, method, int(seed), float(budget))))
        return
    envs = args.envs or (["LunarLander-v3"] if args.quick else list(ENVS))
    methods = args.methods or (["cmaes", "sb3_ppo"] if args.quick else list(METHODS))
    seeds = args.seeds or ([0] if args.quick else [0, 1, 2])
    budgets = {"LunarLander-v3": args.budget_lunarlander or (15.0 if args.quick else 150.0),
               "HalfCheetah-v5": args.budget_halfcheetah or (15.0 if args.quick else 180.0)}
    budgets = {env: budgets[env] for env in envs}
    if args.resume and not args.out:
        ap.error("--resume needs --out")
    log = os.path.join(args.out, "runs.jsonl") if args.out else None
    if log:
        os.makedirs(args.out, exist_ok=True)
    runs = [r for r in load_runs(log) if r["budget_s"] == budgets.get(r["env"]) and r["method"] in methods
            and r["seed"] in seeds] if args.resume else []
    done = {(r["env"], r["method"], r["seed"]) for r in runs}
    for env in envs:
        for seed in seeds:  # all methods of one seed, then the next: drift hits every library alike
            for method in methods:
                if (env, method, seed) in done:
                    continue
                r = run_one(env, method, seed, budgets[env], timeout=1.5 * budgets[env] + 300)
                runs.append(r)
                if log:
                    with open(log, "a") as fh:
                        fh.write(json.dumps(r) + "\n")
                if "error" in r:
                    print(f"{env} {method} seed {seed}: ERROR {r['error']}\n{r.get('stderr_tail', '')}", flush=True)
                    continue
                hit = first_reach(r)
                print(f"{env:15s} {method:14s} seed {seed}: best {max(x[2] for x in r['curve']):8.1f}  final "
                      f"{r['curve'][-1][2]:8.1f}  steps {r['train_env_steps']:>9,}  train {r['train_s']:.1f} s"
                      f"{' SHORT OF ITS BUDGET' if stopped_short(r) else ''}  "
                      f"to {r['threshold']:g}: {'-' if hit is None else '%.1f s' % hit['train_s']}  "
                      f"eval {r['eval_s']:.1f} s  ({r['workers']})", flush=True)
    summary = summarize(runs)
    tg = targets(summary, budgets)
    check = budget_check(summary)
    print(f"every run used its whole budget: {'PASS' if check['passed'] else 'FAIL'} ({check['runs']} runs"
          + (f"; short: {'; '.join(check['short_runs'])})" if check["short_runs"] else ")"), flush=True)
    for t in tg:
        print(f"{t['env']}: evograd {t['evograd_method']} {t['evograd_time']} s vs {t['peer']} {t['peer_time']} s "
              f"(target ratio <= {t['limit']:.3f}): {({True: 'PASS', False: 'FAIL'}).get(t['passed'], 'UNDECIDED')}",
              flush=True)
    print(json.dumps({"bench": "control", "quick": args.quick, "budgets_s": budgets, "seeds": seeds,
                      "summary": summary, "targets": tg, "budget_check": check, "runs": runs,
                      "loadavg_1m": round(os.getloadavg()[0], 2)}))


if __name__ == "__main__":
    main()
