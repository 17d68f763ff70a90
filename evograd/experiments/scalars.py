"""Live TensorBoard scalars of every job (the `tensorboard` extra), as SB3 users expect to watch a run.

Asked for by the config's `logging: {tensorboard: true | DIR}` or by `evograd compare/run --tensorboard [DIR]`:
`true` writes each job's event files into its own run folder (`<out>/<label>/seed<k>/`, so `tensorboard --logdir
<out>` shows one run per method and seed), a DIR into `DIR/<label>/seed<k>/`. Every numeric progress.csv column
(eval_return, eval_return_std, return_mean, return_max, wall_s, eval_env_steps, generation; best_value and
gen_mean on function tasks) is one scalar tag, indexed by training env steps (evaluations on function tasks).
Rows reach TensorBoard where they reach progress.csv (jobfiles.write_progress), for every kind of method, at the
same throttled moments. A resumed job writes its whole history again with `purge_step=0`, so TensorBoard shows
each step once. torch.utils.tensorboard is imported only when scalars are on.
"""
from __future__ import annotations

import contextlib
import importlib.util
import math
from pathlib import Path
from typing import Any

EXTRA = "pip install 'evograd[tensorboard]'"
_STEP_COLUMNS = ("env_steps", "evals")
_ACTIVE: dict[str, _Writer] = {}  # job directory -> its writer, while the job runs in this process


def installed() -> bool:
    """Whether the tensorboard package is importable (torch.utils.tensorboard needs it)."""
    return importlib.util.find_spec("tensorboard") is not None


def missing_message() -> str:
    return f"TensorBoard scalars need the tensorboard package, which is not installed: {EXTRA}"


def log_dir(config: dict, label: str, seed: int, d: str | Path) -> Path | None:
    """Where the job's event files go, or None when the config does not ask for scalars."""
    where = (config.get("logging") or {}).get("tensorboard")
    if not where:
        return None
    return Path(d) if where is True else Path(where) / label / f"seed{seed}"


@contextlib.contextmanager
def session(config: dict, label: str, seed: int, d: str | Path):
    """While the job in `d` runs: its rows written by `log_rows` also go to TensorBoard. Yields the event
    folder (None when scalars are off)."""
    where = log_dir(config, label, seed, d)
    if where is None:
        yield None
        return
    writer = _Writer(where)
    key = _key(d)
    _ACTIVE[key] = writer
    try:
        yield where
    finally:
        _ACTIVE.pop(key, None)
        writer.close()


def log_rows(d: str | Path, rows: list[dict], columns: list[str]) -> None:
    """The job's progress rows (all of them, as progress.csv gets them) as scalars; nothing when off."""
    writer = _ACTIVE.get(_key(d)) if _ACTIVE else None
    if writer is not None:
        writer.write(rows, columns)


def _key(d: str | Path) -> str:
    return str(Path(d).resolve())


class _Writer:
    """A SummaryWriter fed with history rows: each (row, column) value is written once, when it is finite
    (the last row written is looked at again: an evaluation may be added to it at the end of a run)."""

    def __init__(self, where: Path):
        if not installed():
            raise ModuleNotFoundError(missing_message(), name="tensorboard")
        from torch.utils.tensorboard import SummaryWriter

        where.mkdir(parents=True, exist_ok=True)
        self.writer = SummaryWriter(str(where), purge_step=0, flush_secs=10)
        self.written: set[tuple[int, str]] = set()
        self.seen = 0

    def write(self, rows: list[dict], columns: list[str]) -> None:
        step_key = next((c for c in _STEP_COLUMNS if c in columns), None)
        if step_key is None:
            return
        tags = [c for c in columns if c not in ("method", "seed", step_key)]
        for i in range(max(0, self.seen - 1), len(rows)):
            step = rows[i].get(step_key)
            if not _finite(step):
                continue
            for tag in tags:
                value = rows[i].get(tag)
                if (i, tag) not in self.written and _finite(value):
                    self.writer.add_scalar(tag, float(value), int(step))
                    self.written.add((i, tag))
        self.seen = len(rows)
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()


def _finite(v: Any) -> bool:
    try:
        return v is not None and not isinstance(v, bool) and math.isfinite(float(v))
    except (TypeError, ValueError):
        return False
