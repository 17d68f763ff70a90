"""Copy a comparison's run directory into docs/results/<task>/ as plain text and pictures, with a README
saying how it was made: the command, the revision, the machine, the dates and the CPU-hours.

What is copied: the run's config.resolved.yaml and run_meta.json (machine paths rewritten: the run directory as
runs/<DEST's name>, an absolute evograd entry point as `evograd`) and each job's progress.csv, result.json,
status.json and cpu.json (no checkpoints, no policies: they are large, and results must not carry anything that
a loader would execute). summary.md/.csv, the plots and report.html are then rebuilt from the copy alone (what
`evograd report DEST --html` does), so the published tables are exactly what the copied files say.

  python benchmarks/publish_run.py RUN_DIR DEST --command "evograd compare configs/x.yaml --out RUN_DIR" [--replace]
      [--notes NOTES.md]

DEST must not exist, or --replace replaces it whole (a stale file from an earlier copy must not enter the tables);
never the run directory, a folder in it or above it. The copy is built beside DEST and swapped in at the end.
The README lists every job of the config that has not finished, those never started included.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

TOP = ("config.resolved.yaml", "run_meta.json")  # machine paths rewritten; the rest is rebuilt from the copy
JOB = ("progress.csv", "result.json", "status.json", "cpu.json")


def copy_run(run: Path, dest: Path, name: str) -> list[tuple[str, int, str]]:
    """Copy the plain files (machine paths out: the run directory as runs/<name>); returns (label, seed, status)
    of every job found (the report's own reading of the run directory: status "ok", "failed" or "missing" for a
    job without a readable result.json), and of the config's jobs never started."""
    from snapshot_run import copy_machine_free  # a failed job's result.json holds its traceback

    from evograd.experiments.records import read_runs

    dest.mkdir(parents=True, exist_ok=True)
    for top in TOP:
        if (run / top).exists():
            copy_machine_free(run / top, dest / top, run, name)
    jobs = []
    for r in read_runs(run):
        out = dest / r.path.relative_to(run)
        out.mkdir(parents=True, exist_ok=True)
        for job_file in JOB:
            if (r.path / job_file).exists():
                copy_machine_free(r.path / job_file, out / job_file, run, name)
        jobs.append((r.label, r.seed, r.status))
    return jobs + _not_started(run, {(label, seed) for label, seed, _ in jobs})


def _not_started(run: Path, found: set[tuple[str, int]]) -> list[tuple[str, int, str]]:
    """The config's jobs without a directory yet (the run's config.json: methods x seeds)."""
    import json

    from evograd.experiments.compare import jobs_of

    try:
        config = json.loads((run / "config.json").read_text())
    except (OSError, ValueError):
        return []
    return [(label, seed, "not started") for label, seed in jobs_of(config) if (label, seed) not in found]


def readme(dest: Path, command: str, jobs: list[tuple[str, int, str]], name: str) -> str:
    from evograd.experiments.report import summarize
    from evograd.experiments.runmeta import read_run_meta

    sessions = read_run_meta(dest)
    rows = summarize(dest)
    cpu = {r["method"]: r.get("cpu_hours") for r in rows}
    pending = [f"{label} seed {seed} ({status})" for label, seed, status in jobs if status != "ok"]
    resumed = " (then resumed with `--resume`; every start is listed below)" if len(sessions) > 1 else ""
    lines = [f"# {name}: published comparison", "", f"Command: `{command}`{resumed}.",
             "", "| start | revision | machine | python | torch |", "|---|---|---|---|---|"]
    for s in sessions:
        m = s.get("machine") or {}
        v = s.get("versions") or {}
        rev = str(s.get("git_revision", "?"))[:10]
        lines.append(f"| {s.get('date', '?')}{' (resume)' if s.get('resume') else ''} | {rev} | "
                     f"{m.get('cpu', '?')}, {_cores(m)}, "
                     f"{m.get('memory_gib', '?')} GiB | {v.get('python', '?')} | {v.get('torch', '?')} |")
    total = sum(v for v in cpu.values() if v)
    lines += ["", f"CPU-hours (every job's process tree, workers included, over all its resumes): {total:.2f} in all; "
              + ", ".join(f"{k} {v:.2f}" for k, v in cpu.items() if v is not None) + ".", "",
              "Jobs not finished: " + ("none." if not pending else "; ".join(pending) + "."), "",
              "The tables, statistics and plots: [summary.md](summary.md) and report.html (one self-contained page); "
              "rebuild them from the copied job files with `evograd report <this folder> --html`."]
    return "\n".join(lines) + "\n"


def _cores(machine: dict) -> str:
    """"1 of 2 cores" where the run was pinned to fewer cores than the machine has."""
    used, total = machine.get("usable_cores"), machine.get("cores")
    if used is not None and total is not None and used != total:
        return f"{used} of {total} cores"
    n = used if used is not None else total
    return "? cores" if n is None else f"{n} core{'s' if n != 1 else ''}"


def rebuild_report(dest: Path) -> None:
    """summary.md/.csv, the plots and report.html from the copied files (what `evograd report DEST --html` does)."""
    from evograd.experiments.html_report import write_html
    from evograd.experiments.report import report

    made = report(dest)
    write_html(dest, made["rows"])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("run", type=Path)
    ap.add_argument("dest", type=Path)
    ap.add_argument("--command", required=True, help="the command that made the run (for the README)")
    ap.add_argument("--replace", action="store_true", help="replace DEST (whole) when it exists")
    ap.add_argument("--notes", type=Path, help="a markdown file appended to the README under '## Notes' (what a "
                    "reader must know that the tables do not say)")
    args = ap.parse_args()
    if args.notes is not None and not args.notes.is_file():
        print(f"--notes: {args.notes} is not a file", file=sys.stderr)
        return 2
    notes = args.notes.read_text().strip() if args.notes is not None else None  # before DEST is replaced
    if not (args.run / "config.resolved.yaml").exists():
        print(f"{args.run}: no config.resolved.yaml (not a comparison's run directory)", file=sys.stderr)
        return 2
    from snapshot_run import built_beside, overlaps

    if overlaps(args.run, args.dest):
        print(f"{args.dest} is the run directory, inside it or above it", file=sys.stderr)
        return 2
    if args.dest.exists() and not args.replace:
        print(f"{args.dest} exists: --replace replaces it", file=sys.stderr)
        return 2
    name = args.dest.resolve().name
    with built_beside(args.dest) as tmp:  # swapped in whole: a failure leaves the earlier DEST as it was
        jobs = copy_run(args.run, tmp, name)
        text = readme(tmp, args.command, jobs, name)
        if notes:
            text += "\n## Notes\n\n" + notes + "\n"
        (tmp / "README.md").write_text(text)
    rebuild_report(args.dest)  # in place: report.html names the folder it describes
    print(f"{args.dest}: {len(jobs)} jobs, {sum(s == 'ok' for *_, s in jobs)} finished")
    return 0


if __name__ == "__main__":
    sys.exit(main())
