"""Reading a run directory: one record per (method, seed) job from what the runner wrote (progress.csv,
result.json, config.json), for the report and the plots alike."""
from __future__ import annotations

import csv
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

_SEED_DIR = re.compile(r"^seed(-?\d+)$")


@dataclass
class RunRecord:
    """One (method label, seed) job. status: "ok" | "failed" | "missing" (no readable result.json)."""

    label: str
    seed: int
    path: Path
    status: str
    error: str | None = None
    result: dict[str, Any] | None = None
    progress: dict[str, np.ndarray] = field(default_factory=dict)
    dropped_partial_line: bool = False

    def column(self, name: str) -> np.ndarray:
        """A numeric progress.csv column (NaN where empty); empty when the column is absent."""
        return self.progress.get(name, np.empty(0))

    def value(self, key: str) -> float:
        """A number from result.json, NaN when absent or null."""
        return num((self.result or {}).get(key))


def num(v: Any) -> float:
    try:
        return float("nan") if v is None or isinstance(v, bool) else float(v)
    except (TypeError, ValueError):
        return float("nan")


def _read_progress(path: Path) -> tuple[dict[str, np.ndarray], bool]:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return {}, False
    lines = text.splitlines()
    partial = bool(text) and not text.endswith("\n")
    if partial:
        lines = lines[:-1]
    if not lines:
        return {}, partial
    header = next(csv.reader([lines[0]]))
    cols: dict[str, list[float]] = {h: [] for h in header if h != "method"}
    for rec in csv.reader(lines[1:]):
        if len(rec) != len(header):  # a torn row carries no trustworthy numbers
            continue
        for h, v in zip(header, rec):
            if h in cols:
                cols[h].append(num(v))  # empty cell (no evaluation at this row) -> NaN
    return {h: np.asarray(v, dtype=float) for h, v in cols.items()}, partial


def _read_result(path: Path) -> tuple[dict | None, str, str | None]:
    if not path.exists():
        return None, "missing", None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:  # half-written by a job killed mid-write
        return None, "missing", f"result.json unreadable ({type(exc).__name__}: {exc})"
    status = data.get("status", "ok") if isinstance(data, dict) else None
    if status not in ("ok", "failed"):
        return None, "failed", f"result.json has no valid status (got {status!r})"
    return data, status, data.get("error")


def read_config(out_dir: Path) -> dict:
    """config.resolved.yaml when present and readable; the report works without it."""
    path = out_dir / "config.resolved.yaml"
    try:
        import yaml
    except ImportError:
        return {}
    try:
        cfg = yaml.safe_load(path.read_text(encoding="utf-8")) if path.exists() else {}
    except (OSError, yaml.YAMLError):  # half-written: the run data alone still make a report
        return {}
    return cfg if isinstance(cfg, dict) else {}


def read_runs(out_dir: str | Path) -> list[RunRecord]:
    """Every `<label>/seed<k>/` job, labels in the config's `methods` order (others sorted after)."""
    out_dir = Path(out_dir)
    found: dict[str, list[RunRecord]] = {}
    for label_dir in sorted(p for p in out_dir.iterdir() if p.is_dir()):
        for seed_dir in label_dir.iterdir():
            m = _SEED_DIR.match(seed_dir.name)
            if not (m and seed_dir.is_dir()):
                continue
            result, status, error = _read_result(seed_dir / "result.json")
            progress, partial = _read_progress(seed_dir / "progress.csv")
            found.setdefault(label_dir.name, []).append(RunRecord(
                label_dir.name, int(m.group(1)), seed_dir, status, error, result, progress, partial))
    methods = read_config(out_dir).get("methods")
    order = [k for k in (methods if isinstance(methods, dict) else {}) if k in found]
    order += sorted(k for k in found if k not in order)
    return [r for k in order for r in sorted(found[k], key=lambda r: r.seed)]


def detect_kind(records: list[RunRecord], cfg: dict) -> str:
    task = cfg.get("task")
    if isinstance(task, dict) and ("function" in task or "env" in task):
        return "function" if "function" in task else "env"
    for r in records:
        if "evals" in r.progress or "best_value" in (r.result or {}):
            return "function"
    return "env"


def task_title(cfg: dict, out_dir: Path) -> str:
    task = cfg.get("task") if isinstance(cfg.get("task"), dict) else {}
    what = (task.get("env") or {}).get("id") or (task.get("function") or {}).get("fn")
    name = cfg.get("name") or out_dir.resolve().name
    return f"{name}: {what}" if what else str(name)
