"""Entry point of one comparison job in its own process: `python -m evograd.experiments.job CONFIG.json LABEL SEED OUT`.

Started by `compare`, the process ends with it (even when compare is killed with `kill -9`) and holds
the job directory's lock for its whole life, so a job is never run by two processes at once (see
evograd.parallel.joblock). Started by hand, it takes the lock itself and exits with status 75 when another
process holds it.
"""
from __future__ import annotations

import os
import sys


def main(argv: list[str] | None = None) -> int:
    from ..parallel.joblock import LOCK_FD_ENV, LOCKED_EXIT, PARENT_PID_ENV, JobLock, JobRunningError, die_with_parent

    if os.environ.get(PARENT_PID_ENV):  # first of all: a job never outlives the compare that started it
        die_with_parent(os.environ.pop(PARENT_PID_ENV))
    import argparse
    import json
    import time

    ap = argparse.ArgumentParser(prog="python -m evograd.experiments.job")
    ap.add_argument("config_json")
    ap.add_argument("label")
    ap.add_argument("seed", type=int)
    ap.add_argument("out")
    ap.add_argument("--resume", action="store_true")
    args = ap.parse_args(argv)
    from .experiment import job_dir

    d = job_dir(args.out, args.label, args.seed)
    fd = os.environ.pop(LOCK_FD_ENV, None)
    try:
        lock = JobLock.inherited(d, int(fd)) if fd else JobLock(d).acquire()
    except JobRunningError as exc:
        print(f"evograd.experiments.job: {exc}", file=sys.stderr)
        return LOCKED_EXIT
    print(f"{time.strftime('%Y-%m-%d %H:%M:%S')} job {args.label} seed {args.seed}: pid {os.getpid()}, "
          f"{'resumed' if args.resume else 'started'}", flush=True)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    with open(args.config_json) as fh:
        config = json.load(fh)
    sys.path.insert(0, os.getcwd())  # "module:attribute" references resolve from where compare was started
    from .experiment import run_job

    try:
        result = run_job(config, args.label, args.seed, args.out, resume=args.resume)
    finally:
        lock.release()
    if result["status"] != "ok":
        print(result.get("traceback", result.get("error")), file=sys.stderr)
    return 0 if result["status"] == "ok" else 1


if __name__ == "__main__":
    sys.exit(main())
