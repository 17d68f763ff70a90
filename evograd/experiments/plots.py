"""Learning-curve plots of a run directory: evaluation return against training env steps and against
wall-clock (best value against evaluations for function tasks), mean over seeds with a min-max band; and the
performance profile of the report's Statistics section (plot_profile); and plot_panels, one figure of several
env comparisons (a row each, both x axes), for a README.

Each seed's curve is a step function ("last evaluation so far") on the union of all seeds' x values, so
nothing is interpolated; the line is dotted where only some seeds have data. Drawn on a bare Agg Figure
(no pyplot), with matplotlib imported only here.
"""
from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Mapping

import numpy as np

from .records import RunRecord, detect_kind, read_config, read_runs, task_title

LOG_X_SPREAD = 10  # the x axis turns logarithmic when one method's curves end this many times further than another's


def _step_aggregate(curves: list[tuple[np.ndarray, np.ndarray]], center: str):
    """Each seed as a step function ("last evaluation so far", defined from its first to its last point)
    on the union of all seeds' x. Returns grid, center (mean/median over the seeds defined at each point),
    min, max, and `full`: whether every seed is defined over the whole interval [grid[i], grid[i+1]]."""
    grid = np.unique(np.concatenate([x for x, _ in curves]))
    vals = np.full((len(curves), grid.size), np.nan)
    for i, (x, y) in enumerate(curves):
        idx = np.searchsorted(x, grid, side="right") - 1
        inside = (idx >= 0) & (grid <= x[-1])
        vals[i, inside] = y[idx[inside]]
    mid = np.nanmedian(vals, axis=0) if center == "median" else np.nanmean(vals, axis=0)
    full_pt = np.isfinite(vals).all(axis=0)
    full = full_pt & np.r_[full_pt[1:], full_pt[-1]]  # a seed ending at grid[i] does not cover what follows
    return grid, mid, np.nanmin(vals, axis=0), np.nanmax(vals, axis=0), full


def _step_line(grid: np.ndarray, y: np.ndarray, keep: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Polyline of a post-step function on the intervals in `keep` (NaN breaks elsewhere); each kept
    interval also draws the jump into it, so solid and dotted parts join."""
    xs = np.stack([grid, grid, np.r_[grid[1:], grid[-1]]], axis=1)
    ys = np.stack([np.r_[y[0], y[:-1]], y, y], axis=1)
    xs[~keep] = np.nan
    return xs.ravel(), ys.ravel()


def _figure(rows: int = 1, cols: int = 1, size: tuple[float, float] = (9, 5.4)):
    """A bare Figure on an Agg canvas, not pyplot: no global backend switch, no figure registry to leak."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg  # lazily: `import evograd` must not pay for it
    from matplotlib.figure import Figure

    fig = Figure(figsize=(size[0] * cols, size[1] * rows), dpi=120, layout="constrained")
    FigureCanvasAgg(fig)
    return fig, fig.subplots(rows, cols, squeeze=False)


def _draw_curves(ax, records: list[RunRecord], xcol: str, ycol: str, xlabel: str, ylabel: str,
                 threshold: float | None, center: str, log_y: bool, legend_size: float = 9) -> str:
    """One axes of learning curves: per method, its `center` over seeds with a min-max band. Returns the note
    on the x scale for the subtitle."""
    import matplotlib
    from matplotlib.ticker import EngFormatter

    colors = [c["color"] for c in matplotlib.rcParams["axes.prop_cycle"]]
    partial_any, all_y, ends = False, [], []
    for k, label in enumerate(dict.fromkeys(r.label for r in records)):
        curves = []
        for r in (r for r in records if r.label == label):
            x, y = r.column(xcol), r.column(ycol)
            n = min(len(x), len(y))
            m = np.isfinite(x[:n]) & np.isfinite(y[:n])
            if m.any():
                order = np.argsort(x[:n][m], kind="stable")
                curves.append((x[:n][m][order], y[:n][m][order]))
        if not curves:
            continue
        color = colors[k % len(colors)]
        grid, mid, lo, hi, full = _step_aggregate(curves, center)
        all_y.append(np.concatenate([lo, hi]))
        ends.append(float(grid[-1]))
        runs = [r for r in records if r.label == label]
        bad = sum(r.status != "ok" for r in runs)
        text = f"{len(curves)} seeds" if len(curves) == len(runs) else f"{len(curves)} of {len(runs)} seeds"
        text += f", {bad} failed/incomplete" if bad else ""
        ax.plot(*_step_line(grid, mid, full), color=color, lw=2, label=f"{label} ({text})")
        if (~full).any():
            partial_any = True
            ax.plot(*_step_line(grid, mid, ~full), color=color, lw=1.5, ls=":")
        band = full | np.r_[False, full[:-1]]
        if len(curves) > 1:
            ax.fill_between(grid, lo, hi, where=band, step="post", color=color, alpha=0.18, lw=0)
    if partial_any:
        ax.plot([], [], color="0.35", lw=1.5, ls=":", label="fewer seeds have data")
    if threshold is not None:
        ax.axhline(threshold, color="0.25", ls="--", lw=1.2, label=f"threshold {threshold:g}")
    if not all_y:
        ax.text(0.5, 0.5, "no evaluations recorded yet", ha="center", va="center", transform=ax.transAxes)
    elif log_y and all(np.all(v > 0) for v in all_y) and (threshold is None or threshold > 0):
        ax.set_yscale("log")
    note = _x_scale(ax, ends)
    ax.xaxis.set_major_formatter(EngFormatter(sep=""))
    ax.set_xlabel(xlabel, fontsize=11)
    ax.set_ylabel(ylabel, fontsize=11)
    ax.grid(True, alpha=0.3)
    ax.set_xlim(left=0)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(loc="best", fontsize=legend_size, framealpha=0.85)
    return note


def _plot_one(path: Path, records: list[RunRecord], xcol: str, ycol: str, xlabel: str, ylabel: str,
              title: str, threshold: float | None, center: str, log_y: bool) -> Path:
    fig, axes = _figure()
    ax = axes[0, 0]
    note = _draw_curves(ax, records, xcol, ycol, xlabel, ylabel, threshold, center, log_y)
    fig.suptitle(title, fontsize=13, fontweight="bold")
    ax.set_title(f"line: {center} over seeds, band: min–max over seeds "
                 f"(each seed held at its last evaluation){note}", fontsize=9.5, color="0.3")
    fig.savefig(path)
    return path


def _x_scale(ax, ends: list[float]) -> str:
    """When the methods' curves end 10x or more apart (budgets orders of magnitude apart, SAC at 300k env steps
    beside ES at 5M; or wall-clock, an hour-long DQN run beside 2-minute ES runs), the short ones are a sliver at
    the left of a linear axis, so it turns logarithmic beyond a tenth of the shortest curve's end. Returns the
    note for the plot's subtitle ("" when the axis stays linear)."""
    from matplotlib.ticker import EngFormatter

    if not (min(ends, default=0) > 0 and max(ends) >= LOG_X_SPREAD * min(ends)):
        return ""
    ax.set_xscale("symlog", linthresh=min(ends) / 10, linscale=0.5)
    return f"; x logarithmic above {EngFormatter(sep='')(float(f'{min(ends) / 10:.2g}'))}"  # 6.9, 30k


def plot_curves(out_dir: str | Path, threshold: float | None = None, task_kind: str | None = None, *,
                title: str | None = None, records: list[RunRecord] | None = None) -> list[Path]:
    """Env tasks: curves_env_steps.png and curves_wall_clock.png (mean eval return); function tasks:
    curves_evals.png and curves_wall_clock.png (median best value, log y when all values are positive)."""
    out_dir = Path(out_dir)
    cfg = read_config(out_dir)
    records = read_runs(out_dir) if records is None else records
    threshold = cfg.get("threshold") if threshold is None else threshold
    kind = task_kind or detect_kind(records, cfg)
    title = title or task_title(cfg, out_dir)
    env = kind == "env"
    ycol, ylabel, center = (("eval_return", "evaluation return", "mean") if env else
                            ("best_value", "best value (minimized)", "median"))
    specs = [("curves_env_steps.png", "env_steps", "training env steps") if env else
             ("curves_evals.png", "evals", "function evaluations"),
             ("curves_wall_clock.png", "wall_s", "wall-clock seconds")]
    return [_plot_one(out_dir / f, records, x, ycol, xl, ylabel, title, threshold, center, not env)
            for f, x, xl in specs]


def plot_profile(path: str | Path, profiles: Mapping, title: str, convention: str,
                 labels: list[str] | None = None, runs: Mapping[str, int] | None = None) -> Path:
    """performance_profile.png: per method, the fraction of runs whose normalized score is above tau, with its
    band (profiles: label -> evograd.experiments.stats.Profile); dashed lines at 0 (the random-policy score) and
    1 (the threshold). labels: every method in the curves' order, so a method keeps its color; runs: how many
    runs each profile covers (for the legend)."""
    import matplotlib

    fig, axes = _figure()
    ax = axes[0, 0]
    colors = [c["color"] for c in matplotlib.rcParams["axes.prop_cycle"]]
    order = list(labels or profiles)
    for label, prof in profiles.items():
        color = colors[order.index(label) % len(colors)] if label in order else None
        n = (runs or {}).get(label)
        ax.plot(prof.taus, prof.fraction, color=color, lw=2, drawstyle="steps-post",
                label=label if n is None else f"{label} ({n} run{'s' * (n != 1)})")
        ax.fill_between(prof.taus, prof.low, prof.high, step="post", color=color, alpha=0.18, lw=0)
    ax.axvline(0.0, color="0.45", ls="--", lw=1.1, label="0: random-policy score R")
    ax.axvline(1.0, color="0.25", ls="--", lw=1.2, label="1: threshold")
    ax.set_ylim(-0.02, 1.05)
    ax.set_xlabel("normalized final return τ", fontsize=11)
    ax.set_ylabel("fraction of runs with score > τ", fontsize=11)
    ax.grid(True, alpha=0.3)
    fig.suptitle(f"{title}: performance profile", fontsize=13, fontweight="bold")
    ax.set_title("\n".join(textwrap.wrap(convention + "; band: 95% stratified-bootstrap interval", 120)),
                 fontsize=8.5, color="0.3")
    ax.legend(loc="best", fontsize=9, framealpha=0.85)
    fig.savefig(path)
    return Path(path)


def plot_panels(path: str | Path, run_dirs: list[str | Path], titles: list[str] | None = None,
                y_floors: list[float | None] | None = None) -> Path:
    """One figure of several env comparisons (a README's figure): a row per run directory, its mean evaluation
    return against training env steps (left) and wall-clock seconds (right), drawn as plot_curves draws them.
    y_floors (one per run directory, None for none): the lowest return shown, so that a collapsed method or a
    wide band does not squeeze the others into a sliver; the row's title says where it is cut."""
    if not run_dirs:
        raise ValueError("plot_panels needs at least one run directory")
    if y_floors is not None and len(y_floors) != len(run_dirs):
        raise ValueError(f"y_floors: {len(y_floors)} given for {len(run_dirs)} run directories")
    if y_floors is not None and not all(f is None or np.isfinite(f) for f in y_floors):
        raise ValueError(f"y_floors must be finite numbers or None, got {y_floors}")
    fig, axes = _figure(len(run_dirs), 2, size=(7.5, 4.6))
    for i, out_dir in enumerate(map(Path, run_dirs)):
        records, cfg = read_runs(out_dir), read_config(out_dir)
        if detect_kind(records, cfg) != "env":
            raise ValueError(f"{out_dir}: plot_panels draws env tasks (evaluation return); this run is a "
                             "function task")
        title = titles[i] if titles else task_title(cfg, out_dir)
        for ax, (xcol, xlabel) in zip(axes[i], [("env_steps", "training env steps"),
                                                 ("wall_s", "wall-clock seconds")]):
            note = _draw_curves(ax, records, xcol, "eval_return", xlabel, "evaluation return",
                                cfg.get("threshold"), "mean", False, legend_size=7.5)
            floor = y_floors[i] if y_floors else None
            if floor is not None and floor >= ax.get_ylim()[1]:
                raise ValueError(f"y_floors[{i}] = {floor:g} is above every return drawn for {out_dir} (the axis "
                                 f"tops at {ax.get_ylim()[1]:g})")
            if floor is not None and ax.get_ylim()[0] < floor:
                ax.set_ylim(bottom=floor)
                note += f"; y cut at {floor:g}"
            ax.set_title(f"{title}{note}", fontsize=10.5)
    fig.suptitle("mean over seeds, band: min–max over seeds (each seed held at its last evaluation)",
                 fontsize=10, color="0.3")
    fig.savefig(path)
    return Path(path)
