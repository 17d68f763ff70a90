"""The files every job writes, in one format whatever ran it: progress.csv (one row per generation or update),
status.json (what `compare` polls for its progress display), result.json (written by experiment.run_job), and the
helpers the job runners share to fill it (first row reaching a threshold, JSON-safe numbers) and to throttle
writes.

`write_progress` is the one place progress rows reach disk, so it also feeds the job's live TensorBoard
scalars when the config asks for them (experiments/scalars.py).
"""
from __future__ import annotations

import csv
import io
import json
import math
import time
from pathlib import Path

from ..core import serialization
from . import scalars

PROGRESS = "progress.csv"
STATUS = "status.json"
RESULT = "result.json"
CHECKPOINT = "checkpoint.state"
ENV_COLUMNS = ["method", "seed", "generation", "env_steps", "eval_env_steps", "wall_s", "return_mean", "return_max",
               "eval_return", "eval_return_std"]
FUNCTION_COLUMNS = ["method", "seed", "generation", "evals", "wall_s", "best_value", "gen_mean"]


def atomic_write_text(path: Path, text: str) -> None:
    data = text.encode()
    serialization.atomic_write(path, lambda fh: fh.write(data))


def _csv_text(rows: list[dict], columns: list[str], method: str, seed: int) -> str:
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(columns)
    for r in rows:
        full = {"method": method, "seed": seed, **r}
        w.writerow(["" if _missing(full.get(c)) else full.get(c) for c in columns])
    return buf.getvalue()


def _missing(v) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v))


def write_progress(d: Path, rows, columns, label, seed) -> None:
    """progress.csv of the job in `d` (atomic), and its rows as TensorBoard scalars when they are on."""
    atomic_write_text(d / PROGRESS, _csv_text(rows, columns, label, seed))
    scalars.log_rows(d, rows, columns)


def write_status(d: Path, **fields) -> None:
    atomic_write_text(d / STATUS, json.dumps({k: num(v) if isinstance(v, float) else v for k, v in fields.items()}))


def first_reaching(history: list[dict], key: str, threshold: float | None, at: str, maximize: bool = True):
    """`at` of the first row whose `key` reaches `threshold` (None if none does, or no threshold)."""
    if threshold is None:
        return None
    for r in history:
        v = r.get(key)
        if v is not None and not (isinstance(v, float) and math.isnan(v)):
            if (v >= threshold) if maximize else (v <= threshold):
                return r.get(at)
    return None


def num(v):
    """A float for result.json: None for None, NaN and infinities."""
    if v is None:
        return None
    v = float(v)
    return None if math.isnan(v) or math.isinf(v) else v


class Throttle:
    """Call at most every `seconds` (checkpoint writes on fast tasks would otherwise dominate)."""

    def __init__(self, seconds: float):
        self.seconds, self.last = seconds, -math.inf

    def due(self) -> bool:
        now = time.perf_counter()
        if now - self.last >= self.seconds:
            self.last = now
            return True
        return False
