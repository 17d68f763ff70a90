"""Has an SB3 DQN job's Q-function diverged? Prints, per seed of a DQN method in a run directory (with its
checkpoints: a published copy has none), the 1st/50th/99th percentiles of Q(s, a) of the latest and the best
evaluated network and of the discounted returns that actually followed, on the checkpoint's replay buffer
(evograd.experiments.sb3_qcheck).

  python benchmarks/dqn_q_values.py RUN_DIR/sb3_dqn
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    from evograd.experiments.sb3_qcheck import check_job

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("method_dir", type=Path, help="RUN_DIR/<dqn method label>")
    args = ap.parse_args(argv)
    jobs = sorted((d for d in args.method_dir.glob("seed*") if (d / "checkpoint.state").exists()),
                  key=lambda d: (len(d.name), d.name))  # seed2 before seed10
    if not jobs:
        print(f"{args.method_dir}: no seed<k>/checkpoint.state", file=sys.stderr)
        return 2
    print("| seed | env steps | best eval | returns that followed p1/p50/p99 | Q latest p1/p50/p99 "
          "| Q best p1/p50/p99 |")
    print("|---|---:|---:|---:|---:|---:|")
    for job in jobs:
        try:
            r = check_job(job)
        except ValueError as exc:
            print(exc, file=sys.stderr)
            return 2
        fmt = lambda xs: " / ".join(f"{x:,.0f}" for x in xs) if xs else "—"  # noqa: E731
        best = f"{r['best_eval_return']:.1f}" if "best_eval_return" in r else "—"
        print(f"| {job.name} | {r['env_steps']:,} | {best} | {fmt(r['returns'])} | {fmt(r['q_latest'])} | "
              f"{fmt(r.get('q_best'))} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
