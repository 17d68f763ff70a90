"""One figure of several published comparisons, for the README: a row per run directory (or published copy),
evaluation return against training env steps and against wall-clock.

  python benchmarks/panel_figure.py OUT.png RUN_DIR [RUN_DIR ...] [--titles "LunarLander-v3" "HalfCheetah-v5"]
      [--y-floors -500 none]
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path


def main() -> int:
    from evograd.experiments.plots import plot_panels

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("out", type=Path)
    ap.add_argument("runs", type=Path, nargs="+")
    ap.add_argument("--titles", nargs="+", help="one per run directory (default: the config's name and task)")
    ap.add_argument("--y-floors", nargs="+", metavar="Y",
                    help="one per run directory: the lowest return shown, or 'none' (default: none)")
    args = ap.parse_args()
    for name, values in (("--titles", args.titles), ("--y-floors", args.y_floors)):
        if values and len(values) != len(args.runs):
            print(f"{name}: {len(values)} given for {len(args.runs)} run directories", file=sys.stderr)
            return 2
    try:
        floors = [None if v.lower() == "none" else float(v) for v in args.y_floors] if args.y_floors else None
    except ValueError:
        print(f"--y-floors: numbers or 'none', got {' '.join(args.y_floors)}", file=sys.stderr)
        return 2
    for run in args.runs:
        if not run.is_dir() or not any(run.glob("*/seed*")):
            print(f"{run} is not a run directory (no <method>/seed<k>/ folders in it)", file=sys.stderr)
            return 2
    try:
        print(plot_panels(args.out, args.runs, args.titles, floors))
    except ValueError as exc:
        print(str(exc).replace("y_floors", "--y-floors"), file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
