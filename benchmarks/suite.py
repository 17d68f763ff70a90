"""evograd against the libraries a user would pick instead, on this machine, in one run: `make bench`.

Every case is a script under benchmarks/ that measures evograd and its peer side by side in the same
process or run and prints one JSON line last. The suite runs the cases one at a time as subprocesses
(so each has both cores; OMP/MKL/OpenBLAS threads = 1, and every script sets torch to one thread), keeps
each one's full output, and writes bench_results/<UTC timestamp>/:
  results.json  raw JSON of every case, plus date, git revision, machine (CPU model, cores, memory),
                library versions, each case's command, wall time and load average before/after;
  results.md    one table: case, measure, evograd, peer, ratio, target, PASS/FAIL ("missed by X%");
                the fixed-budget control table; errors with their stderr tail;
  control_*.png / paper_*.png  return against wall-clock and against env steps;
  <case>.log    each case's stdout and stderr.
A case that crashes or times out is reported as ERROR with its stderr tail and the others still run.

Usage: python benchmarks/suite.py [--quick] [--cases cmaes,control] [--out bench_results] [--list]
       python benchmarks/suite.py --cases control,parity --resume bench_results/<stamp>   (finish an interrupted
       run: the long cases log every finished run under <stamp>/<case>_runs/ and skip those on --resume)
The machine is shared in development: results.md records the load average around every case.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from datetime import datetime, timezone

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)

# name: (script, full-run arguments, quick arguments or None to skip in --quick, timeout s full, quick)
CASES = {
    "cmaes": ("bench_cmaes.py", [], ["--quick", "--reps", "2"], 900, 120),
    "cbo": ("bench_cbo.py", [], ["--quick", "--seeds", "2"], 1200, 180),
    "rollouts": ("bench_rollouts.py", [], ["--quick"], 900, 180),
    "workers": ("bench_workers.py", [], ["--quick"], 900, 180),
    "dask": ("bench_dask.py", [], ["--quick"], 900, 240),
    "ppo_cartpole": ("bench_ppo.py", ["--only", "cartpole"], ["--only", "cartpole", "--seeds", "0"], 1800, 180),
    "ppo_pendulum": ("bench_ppo.py", ["--only", "pendulum"],
                     ["--only", "pendulum", "--seeds", "0", "--pendulum-steps", "8192"], 1800, 180),
    "control": ("bench_control.py", [], ["--quick"], 4 * 3600, 400),
    "paper": ("bench_paper.py", [], ["--quick"], 3 * 3600, 240),
    "parity": ("bench_parity.py", [], ["--quick"], 5 * 3600, 400),
    "highdim": ("bench_highdim.py", [], None, 1800, 0),
    "mlp_backprop": ("bench_mlp_backprop.py", [], ["--quick"], 600, 120),
    "lowrank": ("bench_lowrank.py", ["--threads", "1,2"], ["--quick"], 900, 180),
    "import": ("bench_import.py", [], ["--quick"], 300, 120),
    "zo_memory": ("bench_zo_memory.py", [], ["--quick"], 600, 180),
}
VERSIONS = ("evograd", "torch", "numpy", "gymnasium", "mujoco", "Box2D", "cma", "joblib", "evotorch", "ray",
            "stable-baselines3", "cbx", "scipy", "matplotlib")


def machine() -> dict:
    info = {"python": platform.python_version(), "platform": platform.platform(), "cores": os.cpu_count(),
            "node": platform.node()}
    try:
        with open("/proc/cpuinfo") as fh:
            info["cpu_model"] = next((ln.split(":", 1)[1].strip() for ln in fh if ln.startswith("model name")), None)
        with open("/proc/meminfo") as fh:
            kb = int(next(ln.split()[1] for ln in fh if ln.startswith("MemTotal")))
            info["memory_gib"] = round(kb / 2**20, 1)
    except OSError:
        info["cpu_model"] = platform.processor() or None
    return info


def versions() -> dict:
    from importlib import metadata

    out = {}
    for name in VERSIONS:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def git_revision() -> dict:
    def git(*a):
        return subprocess.run(["git", *a], cwd=ROOT, capture_output=True, text=True, timeout=30).stdout.strip()

    try:
        changed = [ln for ln in git("status", "--porcelain", "--untracked-files=no").splitlines() if ln]
        return {"revision": git("rev-parse", "HEAD") or "unknown", "describe": git("log", "-1", "--format=%h %s"),
                "uncommitted_changes": len(changed)}
    except (OSError, subprocess.SubprocessError):
        return {"revision": "unknown"}


RESUMABLE = ("control", "parity")  # cases that log each finished run and can skip them on --resume


def run_case(name: str, quick: bool, out_dir: str, control_budgets=None, resume: bool = False) -> dict:
    script, full_args, quick_args, t_full, t_quick = CASES[name]
    args = quick_args if quick else full_args
    if name == "control" and control_budgets:
        args = [*args, "--budget-lunarlander", str(control_budgets[0]), "--budget-halfcheetah", str(control_budgets[1])]
    if name in RESUMABLE:
        args = [*args, "--out", os.path.join(out_dir, f"{name}_runs"), *(["--resume"] if resume else [])]
    cmd = [sys.executable, os.path.join("benchmarks", script), *args]
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1",
               PYTHONWARNINGS="ignore")
    rec = {"command": " ".join(cmd[1:]), "load_before": round(os.getloadavg()[0], 2)}
    print(f"== {name}: {rec['command']}  (load {rec['load_before']})", flush=True)
    t0 = time.perf_counter()
    try:
        p = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=t_quick if quick else t_full)
        stdout, stderr, rc = p.stdout, p.stderr, p.returncode
    except subprocess.TimeoutExpired as exc:
        def text(b):
            return b.decode(errors="replace") if isinstance(b, bytes) else (b or "")
        stdout, stderr, rc = text(exc.stdout), text(exc.stderr) + f"\nTIMEOUT after {exc.timeout} s", None
    rec.update(wall_s=round(time.perf_counter() - t0, 1), exit_code=rc, load_after=round(os.getloadavg()[0], 2))
    with open(os.path.join(out_dir, f"{name}.log"), "w") as fh:
        fh.write(stdout + "\n--- stderr ---\n" + stderr)
    last = next((ln for ln in reversed(stdout.splitlines()) if ln.startswith("{")), None)
    if rc != 0 or last is None:
        rec["error"] = f"exit code {rc}" if rc is not None else "timeout"
        rec["stderr_tail"] = stderr[-2000:]
    else:
        try:
            rec["result"] = json.loads(last)
        except json.JSONDecodeError as exc:
            rec["error"], rec["stderr_tail"] = f"unreadable JSON: {exc}", stderr[-2000:]
    print(f"   {'ERROR ' + rec['error'] if 'error' in rec else 'ok'} after {rec['wall_s']} s", flush=True)
    return rec


def table(rows: list[dict]) -> list[str]:
    lines = ["| case | measure | evograd | peer | ratio | target | verdict |", "|---|---|---:|---:|---:|---|---|"]
    for r in rows:
        verdict = r["verdict"] + (f" ({r['note']})" if r["note"] else "")
        lines.append(f"| {r['case']} | {r['what']} | {r['evograd']} | {r['peer']} | {r['ratio'] or '-'} | "
                     f"{r['target'] or '-'} | {verdict} |")
    return lines


def report(meta: dict, cases: dict, out_dir: str) -> list[dict]:
    from suite_plots import plot_control, plot_paper
    from suite_rows import control_table, row, rows_for

    rows, errors, plots = [], [], []
    for name, rec in cases.items():
        if "error" in rec:
            rows.append(row(name, "case crashed", "-", "-", note=rec["error"]))
            rows[-1]["verdict"] = "ERROR"
            errors.append(f"### {name}: {rec['error']}\n\n```\n{rec['stderr_tail'].strip()}\n```\n")
            continue
        try:
            rows += rows_for(name, rec["result"])
        except Exception as exc:  # a changed JSON layout must not lose the other cases
            rows.append(row(name, "unexpected JSON layout", "-", "-", note=f"{type(exc).__name__}: {exc}"))
            rows[-1]["verdict"] = "ERROR"
        try:
            if name == "control":
                plots += plot_control(rec["result"], out_dir)
            elif name == "paper":
                plots += plot_paper(rec["result"], out_dir)
        except Exception as exc:
            errors.append(f"### plots of {name}: {type(exc).__name__}: {exc}\n")
    m, g = meta["machine"], meta["git"]
    md = [f"# evograd benchmarks{' (quick mode: smoke test, not figures to quote)' if meta['quick'] else ''}", "",
          f"- date: {meta['date_utc']} (UTC); total {meta['total_wall_s']:.0f} s",
          f"- git: {g.get('revision')} ({g.get('describe', '')}); uncommitted tracked changes: "
          f"{g.get('uncommitted_changes', '?')}",
          f"- machine: {m.get('cpu_model')}, {m['cores']} cores, {m.get('memory_gib')} GiB, Python {m['python']}, "
          f"{m['platform']}",
          "- versions: " + ", ".join(f"{k} {v}" for k, v in meta["versions"].items() if v),
          "- load average (1 min) before/after each case: " + ", ".join(
              f"{k} {c['load_before']}/{c['load_after']}" for k, c in cases.items()),
          "- every process: one torch thread, OMP/MKL/OpenBLAS threads 1; peers' envs without rendering", "",
          *table(rows), ""]
    if "control" in cases and "result" in cases["control"]:
        c = cases["control"]["result"]
        md += ["## Fixed wall-clock budget (control case)", "",
               "Budgets: " + ", ".join(f"{k} {v:g} s" for k, v in c["budgets_s"].items()) +
               f" per run; seeds {c['seeds']}; medians over seeds (a run that misses the "
               "threshold counts as missing). One evaluation protocol: 5 deterministic episodes on fixed seeds, "
               "at the first generation/update boundary after every 32,768 (LunarLander) / 20,480 (HalfCheetah) "
               "training env steps. Times and budgets are training seconds: wall-clock from the end of "
               "construction (worker pools and Ray actors start inside it) minus evaluation time, which an "
               "env-step schedule would otherwise charge more often per second to the faster learner; the "
               "wall-clock with evaluations is in the last column and in results.json.", "", *control_table(c), ""]
    if plots:
        md += ["## Plots", ""] + [f"![{p}]({p})" for p in plots] + [""]
    if errors:
        md += ["## Errors", ""] + errors
    with open(os.path.join(out_dir, "results.md"), "w") as fh:
        fh.write("\n".join(md))
    return rows


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="every case in its quick mode (a smoke test, < 5 min)")
    ap.add_argument("--cases", default=None, help=f"comma-separated subset of: {', '.join(CASES)}")
    ap.add_argument("--out", default=os.path.join(ROOT, "bench_results"))
    ap.add_argument("--list", action="store_true", help="print the cases and their commands")
    ap.add_argument("--resume", metavar="RESULTS_DIR", help="finish an interrupted suite run in its own folder: "
                    f"the {' and '.join(RESUMABLE)} cases skip the runs they already logged there")
    ap.add_argument("--control-budgets", nargs=2, type=float, metavar=("LUNARLANDER_S", "HALFCHEETAH_S"),
                    help="training seconds per control run (default 150 and 180: about 2.5 h in all)")
    args = ap.parse_args()
    if args.list:
        for name, (script, full, quick, _, _) in CASES.items():
            print(f"{name:13s} {script} {' '.join(full)}   | quick: {'skipped' if quick is None else ' '.join(quick)}")
        return 0
    names = [c.strip() for c in args.cases.split(",") if c.strip()] if args.cases else \
        [n for n, c in CASES.items() if not (args.quick and c[2] is None)]
    unknown = [n for n in names if n not in CASES]
    if unknown:
        ap.error(f"unknown case(s) {', '.join(unknown)}; choose from {', '.join(CASES)}")
    if args.quick and any(CASES[n][2] is None for n in names):
        ap.error(f"no quick mode for: {', '.join(n for n in names if CASES[n][2] is None)}")
    stamp = datetime.now(timezone.utc)
    out_dir = args.resume or os.path.join(args.out, stamp.strftime("%Y%m%dT%H%M%SZ") + ("-quick" if args.quick else ""))
    os.makedirs(out_dir, exist_ok=True)
    meta = {"date_utc": stamp.isoformat(timespec="seconds"), "quick": args.quick, "git": git_revision(),
            "machine": machine(), "versions": versions()}
    t0 = time.perf_counter()
    cases = {name: run_case(name, args.quick, out_dir, args.control_budgets, resume=bool(args.resume))
             for name in names}
    meta["total_wall_s"] = time.perf_counter() - t0
    rows = report(meta, cases, out_dir)
    with open(os.path.join(out_dir, "results.json"), "w") as fh:
        json.dump({**meta, "cases": cases, "rows": rows}, fh, indent=1, default=str)
    print("\n" + "\n".join(table(rows)))
    print(f"\n{sum(r['verdict'] == 'PASS' for r in rows)} PASS, {sum(r['verdict'] == 'FAIL' for r in rows)} FAIL, "
          f"{sum(r['verdict'] == 'ERROR' for r in rows)} ERROR in {meta['total_wall_s']:.0f} s; results in {out_dir}")
    return 1 if any("error" in c for c in cases.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
