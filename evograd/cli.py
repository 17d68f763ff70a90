"""The `evograd` command."""
from __future__ import annotations

import argparse
import sys


def _cmd_functions(args: argparse.Namespace) -> int:
    from .function_comparison import compare, format_table

    results = compare(
        optimizers=args.optimizers, functions=args.functions, dim=args.dim, seeds=args.seeds,
        max_evals=args.max_evals, n_jobs=args.n_jobs, progress=not args.quiet,
    )
    print(f"\nBest value reached in {args.max_evals:,} evaluations, d={args.dim}, x0 = 2*ones, {args.seeds} seeds "
          f"(solved: best value <= 1e-3)\n")
    print(format_table(results))
    return 1 if any(r.error for r in results) else 0


def _cmd_list(args: argparse.Namespace) -> int:
    from . import functions as F
    from .registry import available, get, hyperparameters

    print("optimizers:")
    for name in available():
        params = [p for p in hyperparameters(get(name)) if p not in ("x0", "seed", "maximize")]
        print(f"  {name:10s} {', '.join(params)}")
    print("benchmark functions:\n  " + ", ".join(F.FUNCTIONS))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="evograd", description="Evolutionary and gradient optimization, one protocol.")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("functions", help="compare every optimizer on the benchmark functions (the default job)")
    p.add_argument("--optimizers", nargs="+", default=None, help="names (default: all registered)")
    p.add_argument("--functions", nargs="+", default=None, help="sphere rosenbrock rastrigin ackley (default: all)")
    p.add_argument("--dim", type=int, default=10)
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--max-evals", type=int, default=10_000)
    p.add_argument("--n-jobs", type=int, default=2, help="parallel runs (joblib workers)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_functions)
    p = sub.add_parser("list", help="list optimizers and their hyperparameters")
    p.set_defaults(func=_cmd_list)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (ValueError, RuntimeError) as exc:
        print(f"evograd: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
