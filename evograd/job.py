"""Entry point of one comparison job in its own process: `python -m evograd.job CONFIG.json LABEL SEED OUT`."""
from __future__ import annotations

import argparse
import json
import os
import sys


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m evograd.job")
    ap.add_argument("config_json")
    ap.add_argument("label")
    ap.add_argument("seed", type=int)
    ap.add_argument("out")
    ap.add_argument("--resume", action="store_true")
    args = ap.parse_args(argv)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    with open(args.config_json) as fh:
        config = json.load(fh)
    sys.path.insert(0, os.getcwd())  # "module:attribute" references resolve from where compare was started
    from .experiment import run_job

    result = run_job(config, args.label, args.seed, args.out, resume=args.resume)
    if result["status"] != "ok":
        print(result.get("traceback", result.get("error")), file=sys.stderr)
    return 0 if result["status"] == "ok" else 1


if __name__ == "__main__":
    sys.exit(main())
