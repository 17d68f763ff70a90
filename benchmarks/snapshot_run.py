"""Copy an unfinished comparison's run directory into the repository, so that a run of many hours survives the
end of a working session (processes and files outside the checkout may not), and `compare --resume` carries it
on from the copy in the next one.

What is copied: every file of every job, checkpoints of unfinished jobs included, except
- job.lock (a lock belongs to a live process);
- checkpoint.state of a finished job (result.json with status ok: `--resume` keeps it as it is);
- files over --max-mb (default 5: an SB3 replay buffer, tens of MB for SAC; that job then starts again, from a
  smaller checkpoint of its own or from the start). They are named on stderr.
Machine paths are rewritten in run_meta.json, config.resolved.yaml, result.json and job.log (the run directory
becomes `runs/<name>`, the evograd entry point `evograd`, evograd's and installed packages' source files in a
failed job's traceback `evograd/...` and `<site-packages>/...`), so the repository holds no path of the machine
that ran it.
DEST is replaced, never merged (a file that left the run must leave the copy), and gets a README saying how to
carry the run on; it must be new, empty of anything but an earlier snapshot, and outside the run directory.

  python benchmarks/snapshot_run.py RUN_DIR DEST [--max-mb 5] [--name lunarlander]

When every job has finished, publish_run.py writes the published comparison instead.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import math
import re
import shutil
import sys
import tempfile
from pathlib import Path

REWRITTEN = ("run_meta.json", "config.resolved.yaml", "result.json", "job.log")  # machine paths out, by file name
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
    """The absolute run-directory paths the run's own records hold (run_meta.json: `--out X`, `--resume X`,
    `--out=X`): a run copied or moved since still names the folder it ran in."""
    try:
        sessions = json.loads((run / "run_meta.json").read_text()).get("sessions", [])
    except (OSError, ValueError, AttributeError):
        return []
    found = []
    for session in sessions if isinstance(sessions, list) else []:
        argv = [a for a in (session.get("argv") if isinstance(session, dict) else None) or [] if isinstance(a, str)]
        pairs = list(zip(argv, argv[1:])) + [tuple(a.split("=", 1)) for a in argv if "=" in a]
        found += [value.rstrip("/") for flag, value in pairs
                  if flag in ("--out", "--resume") and value.startswith("/") and value.rstrip("/")]
    return found


_PATH_END = r"(?=[/\s\"',\]}):\\]|$)"  # a whole path, not the start of a longer name (run2, run.yaml)


def machine_free(text: str, run: Path, name: str) -> str:
    """Text without the paths of the machine that ran it: the run directory (as resolved, as given, and as its
    records name it) as runs/<name>, an absolute evograd entry point as `evograd`, evograd's source files from
    `evograd/` on and installed packages from `<site-packages>/` on (tracebacks of failed jobs)."""
    forms = {str(run.resolve()), str(run.absolute()), *recorded_run_paths(run)}
    for form in sorted((f for f in forms if f.strip("/")), key=len, reverse=True):  # longest first
        text = re.sub(re.escape(form) + _PATH_END, f"runs/{name}", text)
    text = re.sub(r"(?<![\w.-])/[^\s\"',\]]*/evograd/__main__\.py", "evograd", text)
    text = re.sub(r"(?<![\w.-])/[^\s\"',\]]*?/site-packages/", "<site-packages>/", text)
    return re.sub(r"(?<![\w.-])/[^\s\"',\]]*/(evograd/[\w.-]+(?:/[\w.-]+)*\.py)", r"\1", text)  # the last /evograd/


def copy_machine_free(src: Path, out: Path, run: Path, name: str) -> None:
    """Copy one file of the run; the files that hold machine paths (REWRITTEN) pass through machine_free."""
    if src.name in REWRITTEN:
        out.write_text(machine_free(src.read_text(errors="replace"), run, name))
    else:
        shutil.copy2(src, out)


@contextlib.contextmanager
def built_beside(dest: Path):
    """A fresh folder beside DEST to build the copy in, swapped in for DEST (replace_dir) when the block ends and
    removed when it raises: a failure leaves the earlier DEST as it was."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=dest.parent, prefix=f".{dest.resolve().name}.partial-"))
    try:
        yield tmp
        replace_dir(tmp, dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def replace_dir(new: Path, dest: Path) -> None:
    """Put the folder `new` (built beside DEST) in DEST's place: the earlier DEST stays whole until the new one is
    in, and comes back if that fails."""
    old = None
    if dest.exists():
        old = Path(tempfile.mkdtemp(dir=dest.parent, prefix=f".{dest.name}.old-"))
        old.rmdir()
        dest.rename(old)
    try:
        new.rename(dest)
    except BaseException:
        if old is not None:
            old.rename(dest)
        raise
    if old is not None:
        shutil.rmtree(old)


def overlaps(run: Path, dest: Path) -> bool:
    """DEST is the run directory, inside it or above it (replacing it would destroy the run)."""
    r, d = run.resolve(), dest.resolve()
    return d == r or r in d.parents or d in r.parents


def _check_dest(run: Path, dest: Path, name: str) -> str | None:
    """Why DEST cannot take the copy (it is replaced whole), or None."""
    if overlaps(run, dest):
        return f"{dest} is the run directory, inside it or above it"
    if dest.exists() and not dest.is_dir():
        return f"{dest} is a file"
    if not dest.exists() or not any(dest.iterdir()):
        return None
    readme = dest / "README.md"
    first = readme.read_text().split("\n", 1)[0] if readme.is_file() else ""
    if first != f"# {name}: an unfinished run, carried between sessions":
        return (f"{dest} holds files and is not an earlier snapshot of {name} (its README.md would begin "
                f"'# {name}: an unfinished run'): give a new folder")
    return None


def _shown(dest: Path) -> str:
    """DEST as the README shows it: relative to the working directory where it lies below it."""
    try:
        return dest.resolve().relative_to(Path.cwd().resolve()).as_posix()
    except ValueError:
        return dest.as_posix()


def snapshot(run: Path, dest: Path, max_mb: float = 5.0, name: str | None = None) -> list[tuple[str, str]]:
    """Replace `dest` by the copy (see the module docstring); returns (relative path, why) of each file left out.
    ValueError when DEST is the run, inside or above it, a file, or a folder other than an earlier snapshot."""
    name = name or run.resolve().name
    why_not = _check_dest(run, dest, name)
    if why_not is not None:
        raise ValueError(why_not)
    max_bytes = int(max_mb * 1e6)
    finished = {j.relative_to(run) for j in run.glob("*/seed*") if j.is_dir() and _finished(j)}
    left = []
    with built_beside(dest) as tmp:
        for path in sorted(p for p in run.rglob("*") if p.is_file()):
            rel = path.relative_to(run)
            try:
                why = _left_out(path, rel, max_bytes, finished)
                if why is not None:
                    left.append((rel.as_posix(), why))
                    continue
                out = tmp / rel
                out.parent.mkdir(parents=True, exist_ok=True)
                copy_machine_free(path, out, run, name)
            except FileNotFoundError:  # replaced or removed by the running job meanwhile (an atomic write)
                left.append((rel.as_posix(), "gone while copying"))
        big = [f"{p} ({why})" for p, why in left if "limit" in why]
        (tmp / "README.md").write_text(README.format(name=name, max_mb=max_mb, dest=_shown(dest),
                                                     left_out="; ".join(big) if big else "no checkpoint of a job "
                                                     "in progress"))
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
