"""One markdown table across several published comparisons, for the README: per comparison, each method's final
return, env steps and seconds to the threshold, return at the quickest method's median wall-clock, and where asked
its return at a given env-step count (IQM [95% CI] over the runs).

  python benchmarks/comparison_table.py RUN_DIR [RUN_DIR ...] [--titles LunarLander HalfCheetah]
      [--thresholds config 3430] [--at-steps none 1000000]
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path


def _numbers(flag: str, values: list[str] | None, word: str) -> list[float | None] | None:
    if values is None:
        return None
    try:
        return [None if v.lower() == word else float(v) for v in values]
    except ValueError:
        raise SystemExit(f"{flag}: numbers or '{word}', got {' '.join(values)}") from None


def main() -> int:
    from evograd.experiments.report_across import across_table

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("runs", type=Path, nargs="+")
    ap.add_argument("--titles", nargs="+", help="one per run directory (default: the env id)")
    ap.add_argument("--thresholds", nargs="+", metavar="R",
                    help="one per run directory: the return to reach, or 'config' (the config's threshold)")
    ap.add_argument("--at-steps", nargs="+", metavar="N",
                    help="one per run directory: an env-step count to read every method's return at, or 'none'")
    args = ap.parse_args()
    for run in args.runs:
        if not run.is_dir() or not any(run.glob("*/seed*")):
            print(f"{run} is not a run directory (no <method>/seed<k>/ folders in it)", file=sys.stderr)
            return 2
    try:
        lines = across_table(args.runs, args.titles, _numbers("--thresholds", args.thresholds, "config"),
                             _numbers("--at-steps", args.at_steps, "none"))
    except ValueError as exc:
        print(str(exc).replace("at_steps", "--at-steps").replace("titles", "--titles")
              .replace("thresholds", "--thresholds"), file=sys.stderr)
        return 2
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
