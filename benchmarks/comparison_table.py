"""One markdown table across several published comparisons, for the README: per comparison, each method's final
return, env steps and seconds to the threshold, return at the quickest method's median wall-clock, and where asked
its return at a given env-step count (IQM [95% CI] over the runs).

  python benchmarks/comparison_table.py RUN_DIR [RUN_DIR ...] [--titles LunarLander HalfCheetah]
      [--thresholds config 3430] [--at-steps none 1000000]
"""
from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path


def main() -> int:
    from evograd.experiments.report_across import across_table

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("runs", type=Path, nargs="+")
    ap.add_argument("--titles", nargs="+", help="one per run directory (default: the config's name and env id)")
    ap.add_argument("--thresholds", nargs="+", metavar="R",
                    help="one per run directory: the return to reach, or 'config' (the config's threshold)")
    ap.add_argument("--at-steps", nargs="+", metavar="N",
                    help="one per run directory: an env-step count to read every method's return at, or 'none'")
    args = ap.parse_args()

    def numbers(flag: str, values: list[str] | None, word: str, positive: bool) -> list[float | None] | None:
        if values is None:
            return None
        if len(values) != len(args.runs):
            ap.error(f"{flag}: {len(values)} given for {len(args.runs)} run directories")
        out = []
        for v in values:
            try:
                x = None if v.lower() == word else float(v)
            except ValueError:
                ap.error(f"{flag}: numbers or '{word}', got {v!r}")
            if x is not None and not (math.isfinite(x) and (x > 0 or not positive)):
                ap.error(f"{flag}: {'positive' if positive else 'finite'} numbers or '{word}', got {v!r}")
            out.append(x)
        return out

    thresholds = numbers("--thresholds", args.thresholds, "config", False)
    at_steps = numbers("--at-steps", args.at_steps, "none", True)
    if args.titles and len(args.titles) != len(args.runs):
        ap.error(f"--titles: {len(args.titles)} given for {len(args.runs)} run directories")
    for run in args.runs:
        if not run.is_dir() or not any(run.glob("*/seed*")):
            ap.error(f"{run} is not a run directory (no <method>/seed<k>/ folders in it)")
    try:
        lines = across_table(args.runs, args.titles, thresholds, at_steps)
    except ValueError as exc:
        print(exc, file=sys.stderr)
        return 2
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
