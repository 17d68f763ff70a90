"""Return against time (training seconds for the control case) and against env steps (matplotlib, Agg).

One figure per env, two panels sharing the y axis; one colour per method, one line per seed, the
threshold dashed. The curves are the evaluations of the shared protocol (bench_control / bench_paper).
"""
from __future__ import annotations

import os

COLORS = {"openai_es": "tab:blue", "snes": "tab:orange", "cmaes": "tab:green", "ars": "tab:red",
          "ppo": "tab:purple", "evotorch_snes": "tab:brown", "sb3_ppo": "tab:gray"}


def _figure(title: str, series: dict, threshold: float | None, path: str, xlabel: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_t, ax_s) = plt.subplots(1, 2, figsize=(12, 4.5), sharey=True)
    for label, curves in series.items():
        color = COLORS.get(label.split(" ")[0])
        for i, curve in enumerate(curves):
            if not curve:
                continue
            w, s, r = zip(*curve)
            kw = dict(color=color, alpha=0.8, lw=1.2, marker=".", ms=3, label=label if i == 0 else None)
            ax_t.plot(w, r, **kw)
            ax_s.plot(s, r, **kw)
    for ax, xl in ((ax_t, xlabel), (ax_s, "training env steps")):
        if threshold is not None:
            ax.axhline(threshold, color="k", ls="--", lw=0.8)
        ax.set_xlabel(xl)
        ax.grid(alpha=0.3)
    ax_t.set_ylabel("evaluation return (5 deterministic episodes)")
    ax_s.legend(fontsize=8, loc="lower right")
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_control(result: dict, out_dir: str) -> list[str]:
    files = []
    runs = [r for r in result["runs"] if "error" not in r]
    for env in sorted({r["env"] for r in runs}):
        series: dict[str, list] = {}
        for r in runs:
            if r["env"] == env:
                series.setdefault(f"{r['method']} ({r['workers']})", []).append(r["curve"])
        thr = next(r["threshold"] for r in runs if r["env"] == env)
        name = f"control_{env}.png"
        _figure(f"{env}, budget {result['budgets_s'][env]:g} training s per run", series, thr,
                os.path.join(out_dir, name), "training s (wall-clock minus evaluations)")
        files.append(name)
    return files


def plot_paper(result: dict, out_dir: str) -> list[str]:
    files = []
    for env, r in result["results"].items():
        name = f"paper_{env}.png"
        _figure(f"{env}: {r['method']['name']} to {r['threshold']:g} (paper: {r['paper_steps']:,} steps)",
                {r["method"]["name"]: [x["curve"] for x in r["runs"]]}, r["threshold"], os.path.join(out_dir, name),
                "wall-clock s (evaluations included)")
        files.append(name)
    return files
