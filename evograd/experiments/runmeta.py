"""What a comparison ran on: run_meta.json in the run directory, one entry per `compare` invocation (the first
start and every resume, since a resumed run may continue on another machine or after an upgrade).

Each entry holds config.run_metadata() (versions of python/numpy/torch/gymnasium/cma/evograd, git revision,
date, command line), the machine (CPU model, logical and usable cores, memory, OS) and whether it resumed.
config.resolved.yaml's `_meta` holds the first start's versions and git revision but no machine; run
directories written before this file existed have neither, and the HTML report says "not recorded".
"""
from __future__ import annotations

import json
import os
import platform
from pathlib import Path
from typing import Any

from .config import run_metadata

RUN_META = "run_meta.json"


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text(errors="replace").splitlines():
            key, _, value = line.partition(":")
            if key.strip() in ("model name", "Hardware", "Processor") and value.strip():
                return value.strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def _memory_gib() -> float | None:
    try:
        return round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)
    except (AttributeError, ValueError, OSError):
        return None


def machine() -> dict[str, Any]:
    """CPU model, logical cores, cores this process may use, memory (GiB), OS and architecture."""
    try:
        usable = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        usable = os.cpu_count()
    return {"cpu": _cpu_model(), "cores": os.cpu_count(), "usable_cores": usable, "memory_gib": _memory_gib(),
            "os": platform.platform(), "arch": platform.machine()}


def read_run_meta(out_dir: str | os.PathLike) -> list[dict[str, Any]]:
    """The recorded sessions, oldest first; [] when the file is absent or unreadable."""
    try:
        data = json.loads((Path(out_dir) / RUN_META).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return []
    sessions = data.get("sessions") if isinstance(data, dict) else None
    return [s for s in sessions if isinstance(s, dict)] if isinstance(sessions, list) else []


def record_session(out_dir: str | os.PathLike, resume: bool = False) -> Path:
    """Append this invocation (versions, git revision, date, command line, machine) to run_meta.json."""
    path = Path(out_dir) / RUN_META
    sessions = read_run_meta(out_dir) + [{**run_metadata(), "machine": machine(), "resume": bool(resume)}]
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps({"sessions": sessions}, indent=2), encoding="utf-8")
    os.replace(tmp, path)
    return path
