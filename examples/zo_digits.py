"""Zeroth-order training against backprop: test accuracy against forward passes on scikit-learn's digits (an MLP
and a small CNN) and on a synthetic teacher-student task with a 10M-parameter MLP.

Methods: mezo, rge, cge + a random 10% mask, forward_grad, lowrank_es, openai_es and backprop Adam
(evograd.zo.compare; cge only on the digits models, lowrank_es only on the MLPs). Forward passes are counted
in forward-pass equivalents: one forward of one minibatch through one set of parameters = 1, a backward pass 2
(a backprop step 3), a jvp 3.

Run:  python examples/zo_digits.py            (digits MLP, 1 seed, small budgets: about 30 s)
      python examples/zo_digits.py --full     (the docs/zo/ run: 3 models, 3 seeds, about 25 CPU-minutes)
Needs scikit-learn (pip install 'evograd[sklearn]') and, for the plot, matplotlib.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

from evograd.zo import compare, tasks

MODELS = {"mlp": ("digits MLP 64-64-10", tasks.digits_mlp), "cnn": ("digits CNN", tasks.digits_cnn),
          "big": ("10M MLP (synthetic)", tasks.big_mlp)}
NOT_ON = {"cge": {"big"}, "lowrank_es": {"cnn"}}  # cge: 2 forwards per unmasked coordinate; lowrank: Linear only
THRESHOLDS = {"mlp": (0.9, 0.95), "cnn": (0.9, 0.95), "big": (0.5,)}  # accuracies whose cost is tabled
FILES = ("comparison.md", "comparison.json", "comparison.png")  # written to --out


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--full", action="store_true", help="the docs run: every model, seeds 0 1 2, full budgets")
    p.add_argument("--models", nargs="+", choices=list(MODELS), default=None)
    p.add_argument("--methods", nargs="+", choices=list(compare.METHODS), default=list(compare.METHODS))
    p.add_argument("--seeds", nargs="+", type=int, default=None)
    p.add_argument("--budget", type=float, default=None, help="zeroth-order budget on digits (fwd-eq)")
    p.add_argument("--adam-budget", type=float, default=None, help="backprop's budget on digits (fwd-eq)")
    p.add_argument("--big-budget", type=float, default=None, help="every method's budget on the 10M MLP")
    p.add_argument("--out", type=Path, default=None, help="write comparison.md/.json/.png here (--full: docs/zo)")
    p.add_argument("--from-json", type=Path, default=None, help="no training: table and plot from a saved JSON")
    a = p.parse_args(argv)
    full = {"models": ["mlp", "cnn", "big"], "seeds": [0, 1, 2], "budget": 20_000, "adam_budget": 6_000,
            "big_budget": 240, "out": Path("docs/zo")}
    small = {"models": ["mlp"], "seeds": [0], "budget": 4_000, "adam_budget": 1_500, "big_budget": 60,
             "out": None}
    for key, value in (full if a.full else small).items():
        if getattr(a, key) is None:
            setattr(a, key, value)
    return a


def checkpoints(budget: float, n: int) -> list[float]:
    """n test evaluations, log-spaced from budget / 30 (at most 10) to the budget."""
    return list(np.unique(np.round(np.geomspace(min(10.0, budget / 30), budget, n))))


def runs_of(a: argparse.Namespace) -> list[dict]:
    torch.set_num_threads(1)
    out = []
    for model in a.models:
        big = model == "big"
        split = tasks.synthetic(0) if big else tasks.digits(0)
        for method in a.methods:
            if model in NOT_ON.get(method, ()):
                continue
            budget = a.big_budget if big else (a.adam_budget if method == "adam" else a.budget)
            for seed in a.seeds:
                r = compare.run(method, MODELS[model][1], split, seed=seed, budget=budget,
                                checkpoints=checkpoints(budget, 8 if big else 24), batch_size=64 if big else 128,
                                scale="big" if big else "small")
                r.pop("model")
                r["model"] = model
                out.append(r)
                print(f"{model:4s} {method:12s} seed {seed}: test acc {r['rows'][-1]['test_acc']:.3f} after "
                      f"{r['fwd_eq']:,} fwd-eq, {r['wall_s']:.1f} s", flush=True)
    return out


def cost_ratios(model: str) -> dict[str, float]:
    """Measured wall time of a backprop step (forward + backward) and of a jvp, per forward pass."""
    torch.manual_seed(0)
    net = MODELS[model][1]()
    x = torch.randn(64 if model == "big" else 128, 256 if model == "big" else 64)
    y = torch.randint(0, 10, (x.shape[0],))
    params = {n: p.detach() for n, p in net.named_parameters()}
    tangent = {n: torch.randn_like(p) for n, p in params.items()}

    def fwd():
        with torch.no_grad():
            net(x)

    def fwd_bwd():
        net.zero_grad()
        compare.loss_of(net, (x, y)).backward()

    def jvp():
        torch.func.jvp(lambda p: compare.loss_of(lambda z: torch.func.functional_call(net, p, (z,)), (x, y)),
                       (params,), (tangent,))

    t = {name: _seconds(f) for name, f in (("forward", fwd), ("backprop_step", fwd_bwd), ("jvp", jvp))}
    return {"backprop_step": t["backprop_step"] / t["forward"], "jvp": t["jvp"] / t["forward"],
            "forward_ms": 1000 * t["forward"]}


def _seconds(f, reps: int = 20) -> float:
    f()
    best = float("inf")
    for _ in range(3):
        t0 = time.perf_counter()
        for _ in range(reps):
            f()
        best = min(best, (time.perf_counter() - t0) / reps)
    return best


def acc_at(rows: list[dict], budget: float) -> float:
    """Test accuracy of the last evaluation at or below `budget` forward-pass equivalents."""
    return [r["test_acc"] for r in rows if r["fwd_eq"] <= budget][-1]


def reached(rows: list[dict], level: float) -> float | None:
    return next((r["fwd_eq"] for r in rows if r["test_acc"] >= level), None)


def summary(runs: list[dict], models: list[str]) -> list[dict]:
    """One row per (model, method): accuracy at the common and final budgets, forward passes to the threshold."""
    table = []
    for model in models:
        mine = [r for r in runs if r["model"] == model]
        common = min(r["fwd_eq"] for r in mine)
        for method in dict.fromkeys(r["method"] for r in mine):
            rs = [r for r in mine if r["method"] == method]
            table.append({"model": model, "method": method, "seeds": len(rs), "common": common,
                          "acc_common": [acc_at(r["rows"], common) for r in rs],
                          "acc_final": [r["rows"][-1]["test_acc"] for r in rs], "fwd_eq": rs[0]["fwd_eq"],
                          "reached": {level: [h for h in (reached(r["rows"], level) for r in rs) if h is not None]
                                      for level in THRESHOLDS[model]}, "wall_s": [r["wall_s"] for r in rs],
                          "settings": rs[0]["settings"]})
    return table


def _pm(values: list[float], scale: float = 100.0) -> str:
    v = np.asarray(values) * scale
    return f"{v.mean():.1f} ± {v.std(ddof=1) if len(v) > 1 else 0.0:.1f}"


def markdown(table: list[dict], meta: dict) -> str:
    lines = ["| model | method | test acc % at common budget | test acc % at final budget | final budget "
             "(fwd-eq) | fwd-eq to reach (seeds that did) | training wall s | settings |",
             "|---|---|---|---|---|---|---|---|"]
    for t in table:
        reach = "; ".join(f"{level:.0%}: " + (f"{np.mean(hits):,.0f} ({len(hits)}/{t['seeds']})" if hits
                                                else f"not reached (0/{t['seeds']})")
                          for level, hits in t["reached"].items())
        settings = ", ".join(f"{k}={v}" for k, v in t["settings"].items())
        lines.append(f"| {MODELS[t['model']][0]} | {t['method']} | {_pm(t['acc_common'])} at {t['common']:,} | "
                     f"{_pm(t['acc_final'])} | {t['fwd_eq']:,} | {reach} | "
                     f"{np.mean(t['wall_s']):.1f} | {settings} |")
    head = ["# Zeroth-order training against backprop: test accuracy against forward passes", "",
            f"Command: `{meta['command']}`  ", f"Revision: {meta['revision']}  ", f"Machine: {meta['machine']}  ",
            f"Date: {meta['date']}; torch {meta['torch']}, one CPU thread." +
            (f" Total {meta['total_s'] / 60:.1f} min." if "total_s" in meta else ""), "",
            f"![test accuracy against forward passes]"
            f"({FILES[2]})", ""]
    return "\n".join(head + lines + [""] + notes(meta)) + "\n"


def notes(meta: dict) -> list[str]:
    cost, ratios = meta["cost"], meta.get("measured_cost_ratios", {})
    measured = "; ".join(f"{MODELS[m][0]}: backprop step {r['backprop_step']:.1f}x, jvp {r['jvp']:.1f}x a forward "
                         f"({r['forward_ms']:.2f} ms)" for m, r in ratios.items())
    return [
        "Notes:",
        f"- Forward-pass equivalents (fwd-eq): a forward pass of one minibatch through one set of parameters = "
        f"{cost['forward']} (a population of P members on a minibatch = P; mezo 2 per direction; rge q + 1 per "
        f"step; cge 2 per unmasked coordinate), a backward pass {cost['backward']} (a backprop step "
        f"{cost['forward'] + cost['backward']}), a forward-mode jvp {cost['jvp']}. Measured here, per forward "
        f"pass: {measured}. The raw counts (forward, backward, jvp) are in {FILES[1]}.",
        "- Data: digits split once (seed 0, stratified, 1,437 train / 360 test, standardized), minibatches of 128; "
        "the 10M MLP (256-3072-3072-10, 10,260,490 parameters) learns a random linear teacher's labels "
        "(16,384 train / 2,048 test Gaussian inputs), minibatches of 64. Seeds 0-2 set the initial weights, the "
        "minibatch order, the methods' noise and cge's mask.",
        "- Common budget: the smallest final budget in the model's rows (backprop's, or one step of the "
        "coarsest method). 'fwd-eq to reach': mean over the seeds that reached the accuracy, at 24 (digits) or 8 "
        "(10M) test evaluations log-spaced over the budget, so to within one grid step (1.4x, 1.6x).",
        "- Settings (evograd/zo/compare.py SETTINGS): learning rates chosen on a validation split of the training "
        "images (seed 100), the digits MLP's reused for the CNN; cge keeps a random 10% of every parameter "
        "tensor (no pruning criterion). Not run: cge on the 10M MLP (2 forwards per unmasked coordinate), "
        "lowrank_es on the CNN (nn.Linear layers only).",
        "- Training wall s excludes the test evaluations; the first run of a process includes warm-up.",
    ]


def plot(runs: list[dict], models: list[str], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(models), figsize=(5.2 * len(models), 4.2), squeeze=False)
    for ax, model in zip(axes[0], models):
        mine = [r for r in runs if r["model"] == model]
        for method in dict.fromkeys(r["method"] for r in mine):
            i = compare.METHODS.index(method)  # one colour per method across the panels
            rs = [r for r in mine if r["method"] == method]
            grid = sorted({row["fwd_eq"] for r in rs for row in r["rows"] if row["fwd_eq"] > 0})
            acc = np.array([[acc_at(r["rows"], b) for b in grid] for r in rs])
            mean, std = acc.mean(axis=0), acc.std(axis=0)
            style = "-" if method != "adam" else "--"
            ax.plot(grid, mean, style, color=f"C{i}", label=method, lw=2 if method == "adam" else 1.4)
            ax.fill_between(grid, mean - std, mean + std, color=f"C{i}", alpha=0.15, lw=0)
        ax.set_xscale("log")
        ax.set_title(MODELS[model][0])
        ax.set_xlabel("forward-pass equivalents (backprop step = 3, jvp = 3)")
        ax.set_ylabel("test accuracy (mean ± std over seeds)")
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def meta_of(argv: list[str] | None, ratios: dict) -> dict:
    rev = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor()) if Path("/proc/cpuinfo").exists() else ""
    return {"command": " ".join(["python examples/zo_digits.py", *(sys.argv[1:] if argv is None else argv)]),
            "revision": rev or "unknown",
            "machine": f"{cpu} ({os.cpu_count()} CPUs), {platform.system()} {platform.release()}",
            "date": datetime.datetime.now().isoformat(timespec="seconds"), "torch": torch.__version__,
            "cost": dict(compare.COST), "measured_cost_ratios": ratios, "thresholds": THRESHOLDS}


def main(argv: list[str] | None = None) -> list[dict]:
    a = parse(argv)
    if a.from_json is not None:
        saved = json.loads(a.from_json.read_text())
        meta, runs = saved["meta"], saved["runs"]
        a.models = list(dict.fromkeys(r["model"] for r in runs))
    else:
        t0 = time.perf_counter()
        runs = runs_of(a)
        ratios = {m: cost_ratios(m) for m in a.models}
        meta = {**meta_of(argv, ratios), "total_s": time.perf_counter() - t0}
    table = summary(runs, a.models)
    text = markdown(table, meta)
    print(text)
    if a.out is not None:
        a.out.mkdir(parents=True, exist_ok=True)
        (a.out / FILES[0]).write_text(text)
        if a.from_json is None or a.from_json.resolve() != (a.out / FILES[1]).resolve():
            (a.out / FILES[1]).write_text(json.dumps({"meta": meta, "runs": runs}, indent=1))
        plot(runs, a.models, a.out / FILES[2])
    return table

if __name__ == "__main__":
    main()
