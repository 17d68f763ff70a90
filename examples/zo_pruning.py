"""Sparse training (issue 16 item 5): how sparse can a network be and still reach the dense network's result?

Two tasks, three seeds each (with --full), every run from the same initialization of its seed:
- control: CartPole-v1, an MLP policy (4-16-2, tanh) trained by SNES through GymProblem (1 episode per
  candidate), scored by the mean return of 10 evaluation episodes of the final center;
- digits: scikit-learn's 8x8 digits (1437 train / 360 test, stratified), an MLP 64-32-10 (tanh) on flat
  parameters trained by SNES on the cross-entropy of a 256-sample minibatch per generation, scored by test
  accuracy of the final center.
Masks at densities 50/20/10/5% of the weights (biases always kept):
- "snr": Lange & Sprekeler's iterative signal-to-noise pruning (evograd.optim.pruning.snr_pruning): dense run,
  prune by |mean| / sigma of SNES's final distribution, rewind to the initialization, retrain; each density
  prunes the previous one's mask further;
- "zo_grasp" (digits): DeepZero's pruning at initialization, the top |-w * Hg| by forward passes only
  (evograd.zo.pruning.zo_grasp_mask); "zo_grasp_ratios": DeepZero's use of it, random masks at the ZO-GraSP
  mask's per-layer densities; "grasp_autograd": the same rule on the exact GraSP scores (backprop), the
  reference that separates GraSP as a criterion from the noise of its zeroth-order estimate;
- "random": a uniformly random mask at the same density (the control).
Every masked run starts from the rewound initialization (kept weights at their initial values, pruned ones 0),
with the popsize and generations of the dense run. Writes docs/zo/pruning.md and docs/zo/pruning.json.

Run: python examples/zo_pruning.py          (smoke run: 1 seed, 2 densities, short runs, about a minute)
     python examples/zo_pruning.py --full   (the docs run: about 10 minutes on one thread)
"""
from __future__ import annotations

import argparse
import datetime
import json
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

import evograd as eg
from evograd.optim.pruning import density_of, random_mask, rewind, search_distribution, snr_pruning
from evograd.zo.pruning import flat_params, grasp_scores, weight_mask, zo_grasp_mask, zo_grasp_scores

ROOT = Path(__file__).resolve().parents[1]
TOLERANCE = {"control": ("return", 0.05, "relative"), "digits": ("test accuracy", 0.01, "absolute")}


# ------------------------------------------------------------------ control: CartPole, SNES through GymProblem
def control_task(seed: int, gens: int, popsize: int):
    from evograd.gym.problem import GymProblem

    def make_problem():
        return GymProblem("CartPole-v1", policy="mlp", hidden_sizes=(16,), episodes=1, seed=seed)

    problem = make_problem()
    x_init, prunable = problem.initial_params(), weight_mask(problem.policy(problem.initial_params()))

    def train(x0, mask):
        prob = make_problem()  # fresh episode seeds: every run sees the same training episodes
        opt = eg.make("snes", x0=x0, sigma0=0.5, popsize=popsize, seed=seed, maximize=True, mask=mask)
        for _ in range(gens):
            opt.tell(prob.evaluate(opt.ask_candidates()))
        score = float(prob.evaluate_policy(opt.center, episodes=10).mean())
        return {"score": score, "env_steps": prob.env_steps}, *search_distribution(opt)

    return x_init, prunable, train, None


# ------------------------------------------------------------------ digits: an MLP on flat parameters
def digits_data():
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    d = load_digits()
    X, y = (d.data / 16.0).astype(np.float32), d.target
    Xtr, Xte, ytr, yte = train_test_split(X, y, test_size=0.2, random_state=0, stratify=y)
    return torch.from_numpy(Xtr), torch.from_numpy(ytr), torch.from_numpy(Xte), torch.from_numpy(yte)


def mlp_logits(P, X, hidden=32):
    """Logits of every row of P (n, dim) as a 64-hidden-10 MLP (torch.nn.Linear's flat layout), one batched pass."""
    P = torch.as_tensor(np.atleast_2d(P), dtype=torch.float32)
    n, i = P.shape[0], 0
    W1 = P[:, : hidden * 64].reshape(n, hidden, 64)
    i = hidden * 64
    b1, W2 = P[:, i: i + hidden], P[:, i + hidden: i + hidden + 10 * hidden].reshape(n, 10, hidden)
    b2 = P[:, i + hidden + 10 * hidden:]
    h = torch.tanh(torch.einsum("bd,nhd->nbh", X, W1) + b1[:, None])
    return torch.einsum("nbh,nch->nbc", h, W2) + b2[:, None]


def digits_task(seed: int, gens: int, popsize: int, q: int):
    Xtr, ytr, Xte, yte = digits_data()
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = torch.nn.Sequential(torch.nn.Linear(64, 32), torch.nn.Tanh(), torch.nn.Linear(32, 10))
    x_init, prunable = flat_params(model), weight_mask(model)

    def train(x0, mask):
        opt = eg.make("snes", x0=x0, sigma0=0.05, popsize=popsize, seed=seed, mask=mask)
        rng = np.random.default_rng(seed)
        for _ in range(gens):
            idx = torch.from_numpy(rng.choice(len(Xtr), 256, replace=False))
            L = mlp_logits(opt.ask(), Xtr[idx])
            n = L.shape[0]
            loss = torch.nn.functional.cross_entropy(L.reshape(n * 256, 10), ytr[idx].repeat(n), reduction="none")
            opt.tell(loss.reshape(n, 256).mean(1).numpy())
        acc = float((mlp_logits(opt.center, Xte)[0].argmax(1) == yte).float().mean())
        return {"score": acc}, *search_distribution(opt)

    # ZO-GraSP's data: 25 training samples per class, as DeepZero's fetch_data
    pick = torch.cat([torch.nonzero(ytr == c).reshape(-1)[:25] for c in range(10)])
    batch = (Xtr[pick], ytr[pick])

    def loss_fn(m, b):
        return torch.nn.functional.cross_entropy(m(b[0]), b[1])

    t = time.perf_counter()
    scores = zo_grasp_scores(model, loss_fn, batch, q=q, seed=seed)
    exact = grasp_scores(model, loss_fn, batch)
    grasp = {"scores": scores, "exact": exact, "seconds": time.perf_counter() - t, "q": q, "forward_passes": 6 * q,
             "spearman_vs_autograd": spearman(np.abs(scores[prunable]), np.abs(exact[prunable])),
             "spearman_magnitude_vs_autograd": spearman(np.abs(x_init[prunable]), np.abs(exact[prunable]))}
    return x_init, prunable, train, (model, loss_fn, batch, grasp)


def spearman(a, b) -> float:
    ra, rb = np.argsort(np.argsort(a)), np.argsort(np.argsort(b))
    return float(np.corrcoef(ra, rb)[0, 1])


# ------------------------------------------------------------------ one seed of one task
def run_seed(task: str, seed: int, densities, cfg) -> dict:
    if task == "control":
        x_init, prunable, train, extra = control_task(seed, cfg["control_gens"], cfg["control_popsize"])
    else:
        x_init, prunable, train, extra = digits_task(seed, cfg["digits_gens"], cfg["digits_popsize"], cfg["q"])
    out = {"dim": int(x_init.size), "weights": int(prunable.sum()), "runs": []}
    dense_dist = {}

    def record(method, nominal, mask, result, seconds):
        out["runs"].append({"method": method, "density": nominal, "actual_density": density_of(mask, prunable),
                            "score": result["score"],
                            "kept": int(prunable.sum()) if mask is None else int((mask & prunable).sum()),
                            "seconds": round(seconds, 2)})
        print(f"  {task} seed {seed} {method:16s} density {out['runs'][-1]['density']:.3f}: "
              f"{result['score']:.4g} ({seconds:.1f} s)", flush=True)

    def timed_train(x0, mask):
        t = time.perf_counter()
        result, mean, std = train(x0, mask)
        if mask is None:
            dense_dist.update(mean=mean, std=std)
        result["seconds"] = time.perf_counter() - t
        return result, mean, std

    for r in snr_pruning(timed_train, x_init, densities, prunable=prunable):
        record("dense" if r.mask is None else "snr", r.density, r.mask, r.result, r.result["seconds"])
    snr = np.abs(dense_dist["mean"]) / dense_dist["std"]
    out["snr_vs_magnitude_spearman"] = spearman(snr[prunable], np.abs(dense_dist["mean"])[prunable])
    masks = {"random": [random_mask(x_init.size, d, seed=(seed, i), prunable=prunable)
                        for i, d in enumerate(densities)]}
    if extra is not None:
        model, loss_fn, batch, grasp = extra
        out["zo_grasp"] = {k: v for k, v in grasp.items() if k not in ("scores", "exact")}
        masks["zo_grasp"] = [zo_grasp_mask(model, loss_fn, batch, d, scores=grasp["scores"]) for d in densities]
        masks["grasp_autograd"] = [zo_grasp_mask(model, loss_fn, batch, d, scores=grasp["exact"]) for d in densities]
        masks["zo_grasp_ratios"] = [zo_grasp_mask(model, loss_fn, batch, d, scores=grasp["scores"],
                                                  layer_ratios=True, seed=(seed, i)) for i, d in enumerate(densities)]
    for method, ms in masks.items():
        for d, mask in zip(densities, ms):
            t = time.perf_counter()
            result, _, _ = train(rewind(x_init, mask), mask)
            record(method, d, mask, result, time.perf_counter() - t)
    return out


# ------------------------------------------------------------------ summary, table, files
def summarize(task: str, seeds: list[dict], densities) -> dict:
    """Mean and std over seeds per (method, density), and the lowest density whose mean reaches the dense mean
    within the task's tolerance."""
    what, tol, how = TOLERANCE[task]
    rows: dict[tuple[str, float], list[float]] = {}
    for s in seeds:
        for r in s["runs"]:
            key = ("dense", 1.0) if r["method"] == "dense" else (r["method"], round(r["density"], 3))
            rows.setdefault(key, []).append(r["score"])
    dense = float(np.mean(rows[("dense", 1.0)]))
    bar = dense * (1 - tol) if how == "relative" else dense - tol
    table = {f"{m}@{d}": {"mean": float(np.mean(v)), "std": float(np.std(v)), "n": len(v), "reached": bool(
        np.mean(v) >= bar)} for (m, d), v in rows.items()}
    order = ["snr", "zo_grasp", "zo_grasp_ratios", "grasp_autograd", "random"]
    methods = [m for m in order if any(mm == m for mm, _ in rows)]
    lowest = {}
    for m in methods:
        ok = [d for (mm, d), v in rows.items() if mm == m and np.mean(v) >= bar]
        lowest[m] = min(ok) if ok else None
    return {"metric": what, "dense": dense, "bar": bar, "tolerance": f"{tol:g} {how}", "table": table,
            "lowest_density_reaching_dense": lowest, "methods": methods,
            "densities": [round(d, 3) for d in densities]}


def markdown(result: dict) -> str:
    meta = result["meta"]
    lines = ["# Sparse training: pruning density against the dense result", "",
             f"Command: `{meta['command']}`  ", f"Revision: {meta['revision']}  ", f"Machine: {meta['machine']}  ",
             f"Date: {meta['date']}; wall time {meta['wall_s']:.0f} s, torch threads {meta['threads']}", "",
             "Generated by examples/zo_pruning.py (its docstring has the setup); raw numbers in pruning.json. "
             "Density = kept weights / weights (biases always kept); every pruned run starts from the rewound "
             "initialization with the dense run's popsize and generations. Mean (std) over seeds; a bold cell "
             "reaches the dense result within the tolerance.", ""]
    for task in ("control", "digits"):
        if task not in result["tasks"]:
            continue
        s = result["tasks"][task]["summary"]
        cfg = result["tasks"][task]["setup"]
        lines += [f"## {task}: {cfg}", "",
                  f"Dense {s['metric']}: {s['dense']:.4g}; reached = mean >= {s['bar']:.4g} "
                  f"(tolerance {s['tolerance']}).", ""]
        head = "| density | " + " | ".join(s["methods"]) + " |"
        lines += [head, "|" + "---|" * (len(s["methods"]) + 1)]
        for d in s["densities"]:
            cells = []
            for m in s["methods"]:
                c = s["table"].get(f"{m}@{d}")
                txt = "" if c is None else f"{c['mean']:.4g} ({c['std']:.2g})"
                cells.append(f"**{txt}**" if c and c["reached"] else txt)
            lines.append(f"| {d:.0%} | " + " | ".join(cells) + " |")
        low = ", ".join(f"{m}: {'none' if v is None else f'{v:.0%}'}" for m, v in
                        s["lowest_density_reaching_dense"].items())
        lines += ["", f"Lowest density reaching the dense result: {low}.", ""]
        extra = result["tasks"][task]["extra"]
        lines += [f"- {k}: {v}" for k, v in extra.items()] + [""]
    return "\n".join(lines + NOTES)


NOTES = [
    "## Notes", "",
    "- snr: each density is pruned from the previous one's mask (50% -> 20% -> 10% -> 5%), each a full retraining "
    "from the rewound initialization; random, zo_grasp and grasp_autograd masks are drawn once per density from "
    "the initialization. Pruning is global over the weights (one ranking over all layers).",
    "- SNES adapts its step sizes slowly at this dimension, so |mean| / sigma orders the weights almost as |mean| "
    "does (the Spearman figures above): here SNR pruning is close to iterative magnitude pruning. For openai_es "
    "and ars (one sigma) it is exactly that.",
    "- ZO-GraSP as implemented (evograd/zo/pruning.py): DeepZero's score -w * Hg and its global top-|score| rule, "
    "with central differences, common directions for the Hessian-vector difference and float64 losses where "
    "DeepZero's code uses forward differences and two independent RGE estimates. zo_grasp_ratios is DeepZero's "
    "own use of the mask (only its per-layer densities, with random masks).",
    "- A cell is bold when the mean over seeds is within the tolerance of the dense mean; with 3 seeds and 360 "
    "test images (one image = 0.28 points) the digits bar is a coarse one: read the whole column.",
    "",
]


def meta(argv) -> dict:
    """Command, revision (taken when the run starts), machine, date; the caller adds the wall time."""
    def git(*a):
        try:
            return subprocess.run(["git", *a], cwd=ROOT, capture_output=True, text=True, check=True).stdout.strip()
        except (OSError, subprocess.CalledProcessError):
            return "?"

    used = ["evograd/optim", "evograd/core", "evograd/zo/pruning.py", "evograd/gym", "examples/zo_pruning.py"]
    dirty = " (with uncommitted changes to the code it runs)" if git("status", "--porcelain", "--", *used) else ""
    cpu = platform.processor() or platform.machine()
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                   if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return {"command": "python examples/zo_pruning.py " + " ".join(argv), "revision": git("rev-parse", "HEAD") + dirty,
            "machine": f"{cpu}, {platform.system()} {platform.release()}, python {platform.python_version()}, "
                       f"torch {torch.__version__}, numpy {np.__version__}",
            "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            "threads": torch.get_num_threads()}


def extras(task: str, seeds: list[dict]) -> dict:
    out = {"parameters": f"{seeds[0]['dim']} ({seeds[0]['weights']} prunable weights)",
           "Spearman(|mean| / sigma, |mean|) of the dense SNES runs (1 = SNR pruning is magnitude pruning)":
               ", ".join(f"{s['snr_vs_magnitude_spearman']:.3f}" for s in seeds)}
    if "zo_grasp" in seeds[0]:
        g = seeds[0]["zo_grasp"]
        out[f"ZO-GraSP: q = {g['q']} ({g['forward_passes']} forward passes of 250 samples), Spearman(|ZO score|, "
            "|autograd GraSP score|) over the weights, per seed"] = ", ".join(
            f"{s['zo_grasp']['spearman_vs_autograd']:.3f}" for s in seeds)
        out["Spearman(|w|, |autograd GraSP score|) at the initialization (what magnitude alone gets), per seed"] = (
            ", ".join(f"{s['zo_grasp']['spearman_magnitude_vs_autograd']:.3f}" for s in seeds))
        out["ZO-GraSP seconds per seed"] = ", ".join(f"{s['zo_grasp']['seconds']:.1f}" for s in seeds)
    return out


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--full", action="store_true", help="the docs run: 3 seeds, 4 densities, full-length runs")
    p.add_argument("--tasks", default="control,digits")
    p.add_argument("--out", default=None, help="markdown path (default docs/zo/pruning.md with --full, else "
                                                "pruning_smoke.md in the working directory)")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    if args.full:
        cfg = dict(seeds=[0, 1, 2], densities=[0.5, 0.2, 0.1, 0.05], control_gens=50, control_popsize=16,
                   digits_gens=600, digits_popsize=32, q=4000)
    else:
        cfg = dict(seeds=[0], densities=[0.5, 0.1], control_gens=15, control_popsize=8, digits_gens=100,
                   digits_popsize=16, q=100)
    out = Path(args.out) if args.out else (ROOT / "docs/zo/pruning.md" if args.full else Path("pruning_smoke.md"))
    t0, result = time.perf_counter(), {"config": cfg, "tasks": {}, "meta": meta(sys.argv[1:] if argv is None else argv)}
    for task in args.tasks.split(","):
        seeds = [run_seed(task, s, cfg["densities"], cfg) for s in cfg["seeds"]]
        setup = (f"CartPole-v1, MLP 4-16-2, SNES popsize {cfg['control_popsize']}, {cfg['control_gens']} generations"
                 if task == "control" else
                 f"digits, MLP 64-32-10, SNES popsize {cfg['digits_popsize']}, {cfg['digits_gens']} generations")
        result["tasks"][task] = {"setup": setup, "seeds": seeds, "summary": summarize(task, seeds, cfg["densities"]),
                                 "extra": extras(task, seeds)}
    result["meta"]["wall_s"] = time.perf_counter() - t0
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(markdown(result))
    out.with_suffix(".json").write_text(json.dumps(result, indent=1, default=float))
    print(f"wrote {out} and {out.with_suffix('.json')} in {result['meta']['wall_s']:.0f} s")


if __name__ == "__main__":
    main()
