"""Copy an unfinished comparison's run directory into the repository, so that a run of many hours survives the
end of a working session (processes and files outside the checkout may not), and `compare --resume` carries it
on from the copy in the next one.

What is copied: every file of every job, checkpoints of unfinished jobs included, except
- job.lock (a lock belongs to a live process);
- checkpoint.state of a finished job (result.json with status ok: `--resume` keeps it as it is);
- files over --max-mb (default 5: an SB3 replay buffer, tens of MB for SAC; that job then starts again, from a
  smaller checkpoint of its own or from the start). They are named on stderr.
Machine paths are rewritten in run_meta.json and config.resolved.yaml (the run directory becomes
`runs/<name>`, the evograd entry point `evograd`), so the repository holds no path of the machine that ran it.
DEST is replaced, never merged (a file that left the run must leave the copy), and gets a README saying how to
carry the run on; it must be new, empty of anything but an earlier snapshot, and outside the run directory.

  python benchmarks/snapshot_run.py RUN_DIR DEST [--max-mb 5] [--name lunarlander]

When every job has finished, publish_run.py writes the published comparison instead.
"""
from __future__ import annotations

import argparse
import json
import math
import re
import shutil
import sys
from pathlib import Path

REWRITTEN = ("run_meta.json", "config.resolved.yaml")
README = """# {name}: an unfinished run, carried between sessions

This folder is the run directory of the {name} comparison while it is still running: every job's files,
checkpoints of the jobs in progress included, except files over {max_mb:g} MB (a Stable-Baselines3 replay buffer:
that job then starts again from the start). Nothing here is a result yet. Carry it on with

    cp -r {dest} RUN && evograd compare --resume RUN --jobs 1

and copy it back with `python benchmarks/snapshot_run.py RUN {dest}`. When every job has finished,
`python benchmarks/publish_run.py RUN docs/results/{name} --command "..." --replace` writes the published
comparison in its place. Left out of this copy: {left_out}.
"""


def _finished(job: Path) -> bool:
    try:
        return json.loads((job / "result.json").read_text()).get("status") == "ok"
    except (OSError, ValueError, AttributeError):
        return False


def _left_out(path: Path, rel: Path, max_bytes: int, finished: set[Path]) -> str | None:
    """Why a file of the run is not copied, or None."""
    if path.name == "job.lock":
        return "a live process's lock"
    if path.name.startswith(".tmp-"):
        return "a file being written"
    if path.name == "checkpoint.state" and rel.parent in finished:
        return "the checkpoint of a finished job"
    if path.stat().st_size > max_bytes:
        return f"{path.stat().st_size / 1e6:.3g} MB, over the limit"
    return None


def recorded_run_paths(run: Path) -> list[str]:
    """The absolute run-directory paths the run's own records hold (run_meta.json: `--out X`, `--resume X`): a
    run copied or moved since still names the folder it ran in."""
    try:
        sessions = json.loads((run / "run_meta.json").read_text()).get("sessions", [])
    except (OSError, ValueError, AttributeError):
        return []
    found = []
    for session in sessions if isinstance(sessions, list) else []:
        argv = session.get("argv") if isinstance(session, dict) else None
        for flag, value in zip(argv or [], (argv or [])[1:]):
            if flag in ("--out", "--resume") and isinstance(value, str) and value.startswith("/"):
                found.append(value.rstrip("/"))
    return found


def machine_free(text: str, run: Path, name: str) -> str:
    """The run directory's path (as resolved, as given, and as its records name it) as runs/<name>, and an
    absolute evograd entry point as `evograd`."""
    forms = {str(run.resolve()), str(run.absolute()), *recorded_run_paths(run)}
    for form in sorted(forms, key=len, reverse=True):  # longest first: no form is cut by a shorter one
        text = text.replace(form, f"runs/{name}")
    return re.sub(r"(?<![\w.-])/[^\s\"',\]]*/evograd/__main__\.py", "evograd", text)


def _check_dest(run: Path, dest: Path) -> str | None:
    """Why DEST cannot take the copy (it is replaced whole), or None."""
    r, d = run.resolve(), dest.resolve()
    if d == r or r in d.parents or d in r.parents:
        return f"{dest} is the run directory, inside it or above it"
    if not d.exists() or not any(d.iterdir()):
        return None
    readme = d / "README.md"
    if not (readme.is_file() and "an unfinished run, carried between sessions" in readme.read_text()):
        return f"{dest} holds files and is not an earlier snapshot (its README.md says so): give a new folder"
    return None


def snapshot(run: Path, dest: Path, max_mb: float = 5.0, name: str | None = None) -> list[tuple[str, str]]:
    """Replace `dest` by the copy (see the module docstring); returns (relative path, why) of each file left out.
    ValueError when DEST is the run, inside or above it, or a folder other than an earlier snapshot."""
    name = name or run.resolve().name
    why_not = _check_dest(run, dest)
    if why_not is not None:
        raise ValueError(why_not)
    max_bytes = int(max_mb * 1e6)
    finished = {j.relative_to(run) for j in run.glob("*/seed*") if j.is_dir() and _finished(j)}
    tmp, old = dest.with_name(dest.name + ".partial"), dest.with_name(dest.name + ".old")
    shutil.rmtree(tmp, ignore_errors=True)
    left = []
    try:
        for path in sorted(p for p in run.rglob("*") if p.is_file()):
            rel = path.relative_to(run)
            try:
                why = _left_out(path, rel, max_bytes, finished)
                if why is not None:
                    left.append((rel.as_posix(), why))
                    continue
                out = tmp / rel
                out.parent.mkdir(parents=True, exist_ok=True)
                if rel.as_posix() in REWRITTEN:
                    out.write_text(machine_free(path.read_text(), run, name))
                else:
                    shutil.copy2(path, out)
            except FileNotFoundError:  # replaced or removed by the running job meanwhile (an atomic write)
                left.append((rel.as_posix(), "gone while copying"))
        big = [f"{p} ({why})" for p, why in left if "limit" in why]
        (tmp / "README.md").write_text(README.format(name=name, max_mb=max_mb, dest=dest.as_posix(),
                                                     left_out="; ".join(big) if big else "no checkpoint of a job "
                                                     "in progress"))
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    shutil.rmtree(old, ignore_errors=True)
    if dest.exists():
        dest.rename(old)  # the earlier snapshot stays whole until the new one is in place
    tmp.rename(dest)
    shutil.rmtree(old, ignore_errors=True)
    return left


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("run", type=Path)
    ap.add_argument("dest", type=Path)
    ap.add_argument("--max-mb", type=float, default=5.0, help="files larger than this are left out (default 5)")
    ap.add_argument("--name", help="the run's name in rewritten paths and the README (default: RUN_DIR's name)")
    args = ap.parse_args(argv)
    if not (args.run / "config.json").is_file():
        print(f"{args.run}: no config.json (not a comparison's run directory)", file=sys.stderr)
        return 2
    if not (math.isfinite(args.max_mb) and args.max_mb > 0):
        print(f"--max-mb must be a number > 0, got {args.max_mb:g}", file=sys.stderr)
        return 2
    if args.name is not None and not re.fullmatch(r"[A-Za-z0-9._-]+", args.name):
        print(f"--name: letters, digits, '.', '_' and '-' only, got {args.name!r}", file=sys.stderr)
        return 2
    try:
        left = snapshot(args.run, args.dest, args.max_mb, args.name)
    except ValueError as exc:
        print(exc, file=sys.stderr)
        return 2
    for rel, why in left:
        if "limit" in why:
            print(f"left out {rel}: {why}", file=sys.stderr)
    counts = {why: sum(w == why for _, w in left) for why in dict.fromkeys(w for _, w in left if "limit" not in w)}
    print(f"{args.dest}: copied; left out " + ", ".join(f"{n} x {why}" for why, n in counts.items()) if counts
          else f"{args.dest}: copied")
    return 0


if __name__ == "__main__":
    sys.exit(main())
