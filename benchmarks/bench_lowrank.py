"""Low-rank population ES (EGGROLL, evograd.zo.LowRankES) against plain batch inference, in one run.

A 1.1M-parameter ReLU MLP (256-1024-512-512-128), popsize 256, k inputs per member (k = 16: 4,096 inputs;
k = 1: 256 inputs). Inputs per second of:
  (a) plain: the unperturbed model on all popsize * k inputs as one batch (model(x), and the same layers with
      in-place ReLU; the faster of the two is the reference);
  (b) lowrank r=1 and r=4: `ask()` (drawing every factor) + `evaluate(x)`, the whole population in one
      batched pass; `tell` is timed apart and reported as "with update" (the full-rank update and Adam);
  (c) dense: OpenAI-ES style, each member's W + sigma E materialized (E drawn per mirrored pair, as OpenAI-ES
      does) and that member's k inputs run through it.
Rounds interleave the methods; each ratio is taken within a round against that round's plain time, and the
median over rounds is reported. One torch thread by default; `--threads 1,2` adds two threads, which means
something only on an idle machine (with other processes on both cores, two-thread runs of these many short
kernels stall at every barrier: plain inference at k = 1 fell to a tenth of its one-thread rate here).
Ratios, not times, count: absolute times on the shared machine move by 2x between runs.
Targets (issue 16, CPU, k = 16, one thread): r=1 >= 0.7, r=4 >= 0.6 of plain inference.

Usage: python benchmarks/bench_lowrank.py [--quick] [--threads 1[,2]] [--device cpu|cuda]. Last stdout line: JSON.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

for _v in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ.setdefault(_v, "1")

import torch  # noqa: E402
from torch import nn  # noqa: E402

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from evograd.zo.lowrank import LowRankES  # noqa: E402

SIZES = (256, 1024, 512, 512, 128)
POPSIZE, SIGMA = 256, 0.01
TARGETS = {1: 0.7, 4: 0.6}


def make_model(device) -> nn.Sequential:
    torch.manual_seed(0)
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(SIZES[:-1], SIZES[1:])):
        layers += [nn.Linear(a, b)] + ([nn.ReLU()] if i < len(SIZES) - 2 else [])
    return nn.Sequential(*layers).to(device)


def plain_in_place(model: nn.Sequential, x: torch.Tensor) -> torch.Tensor:
    h = x
    for m in model:
        h = torch.addmm(m.bias, h, m.weight.t()) if isinstance(m, nn.Linear) else torch.relu_(h)
    return h


def dense_population(model: nn.Sequential, x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Per mirrored pair: draw E for every layer; per member: W +/- sigma E materialized, its k inputs run."""
    linears = [m for m in model if isinstance(m, nn.Linear)]
    outs = []
    for j in range(POPSIZE // 2):
        noise = [(torch.randn(m.weight.shape, generator=gen, device=x.device),
                  torch.randn(m.bias.shape, generator=gen, device=x.device)) for m in linears]
        for s, member in ((SIGMA, 2 * j), (-SIGMA, 2 * j + 1)):
            h = x[member]
            for li, m in enumerate(linears):
                W = torch.add(m.weight, noise[li][0], alpha=s)
                b = torch.add(m.bias, noise[li][1], alpha=s)
                h = torch.addmm(b, h, W.t())
                if li < len(linears) - 1:
                    h.relu_()
            outs.append(h)
    return torch.stack(outs)


def timed(fn, sync) -> float:
    sync()
    t = time.perf_counter()
    fn()
    sync()
    return time.perf_counter() - t


def measure(k: int, rounds: int, dense_rounds: int, device) -> dict:
    model = make_model(device)
    sync = torch.cuda.synchronize if torch.device(device).type == "cuda" else (lambda: None)
    x = torch.randn(POPSIZE, k, SIZES[0], device=device)
    flat = x.view(POPSIZE * k, SIZES[0])
    es = {r: LowRankES(model, popsize=POPSIZE, sigma0=SIGMA, rank=r, seed=r) for r in TARGETS}
    zeros = torch.zeros(POPSIZE)
    gen = torch.Generator(device=device)
    gen.manual_seed(0)
    t: dict[str, list[float]] = {n: [] for n in ("plain_model", "plain_inplace", "r1", "r4", "tell1", "tell4",
                                                  "dense")}
    with torch.inference_mode():
        for f in (lambda: model(flat), lambda: plain_in_place(model, flat)):
            f()  # warm-up
        for rnd in range(rounds):
            t["plain_model"].append(timed(lambda: model(flat), sync))
            t["plain_inplace"].append(timed(lambda: plain_in_place(model, flat), sync))
            for r, opt in es.items():
                t[f"r{r}"].append(timed(lambda: (opt.ask(), opt.evaluate(x)), sync))
                t[f"tell{r}"].append(timed(lambda: opt.tell(zeros), sync))  # zero utilities: the center stays
            if rnd < dense_rounds:
                t["dense"].append(timed(lambda: dense_population(model, x, gen), sync))
    return summarize(t, k, rounds, dense_rounds)


def summarize(t: dict, k: int, rounds: int, dense_rounds: int) -> dict:
    n = POPSIZE * k
    plain = [min(a, b) for a, b in zip(t["plain_model"], t["plain_inplace"])]
    med = statistics.median
    row = {"k": k, "inputs": n, "rounds": rounds, "dense_rounds": dense_rounds,
           "plain_ips": n / med(plain), "plain_model_ips": n / med(t["plain_model"]),
           "plain_inplace_ips": n / med(t["plain_inplace"])}
    for r in TARGETS:
        ev, tl = t[f"r{r}"], t[f"tell{r}"]
        row[f"lowrank_r{r}"] = {
            "ips": n / med(ev), "ratio": med([p / e for p, e in zip(plain, ev)]),
            "ratio_with_update": med([p / (e + u) for p, e, u in zip(plain, ev, tl)]), "tell_ms": 1e3 * med(tl)}
    dense = t["dense"]
    row["dense"] = {"ips": n / med(dense), "ratio": med([p / d for p, d in zip(plain, dense)])}
    return row


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--threads", default="1", help="comma-separated torch thread counts (CPU)")
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()
    rounds, dense_rounds = (3, 1) if args.quick else (9, 3)
    threads = [int(s) for s in args.threads.split(",")] if args.device == "cpu" else [torch.get_num_threads()]
    params = sum(p.numel() for p in make_model("cpu").parameters())
    print(f"MLP {'-'.join(map(str, SIZES))} ReLU, {params:,} parameters, popsize {POPSIZE}, device {args.device}")
    rows = []
    for th in threads:
        torch.set_num_threads(th)
        for k in (16, 1):
            row = dict(measure(k, rounds, dense_rounds, args.device), threads=th)
            rows.append(row)
            print(f"threads {th}, {k:2d} inputs/member ({row['inputs']:,} inputs): plain {row['plain_ips']:,.0f} "
                  f"inputs/s (model() {row['plain_model_ips']:,.0f}, in-place {row['plain_inplace_ips']:,.0f})")
            for r in TARGETS:
                lr = row[f"lowrank_r{r}"]
                goal = f"  target >= {TARGETS[r]}" if k == 16 else ""
                print(f"    lowrank r={r}: {lr['ips']:,.0f} inputs/s, ratio {lr['ratio']:.3f}{goal}; with the "
                      f"update (tell {lr['tell_ms']:.0f} ms) {lr['ratio_with_update']:.3f}")
            print(f"    dense per member: {row['dense']['ips']:,.0f} inputs/s, ratio {row['dense']['ratio']:.4f}")
    main_row = next(r for r in rows if r["k"] == 16 and r["threads"] == threads[0])
    passed = {str(r): main_row[f"lowrank_r{r}"]["ratio"] >= g for r, g in TARGETS.items()}
    print(json.dumps({"model": list(SIZES), "params": params, "popsize": POPSIZE, "device": args.device,
                      "targets": {str(r): g for r, g in TARGETS.items()}, "target_threads": threads[0],
                      "passed": passed, "rows": rows}))


if __name__ == "__main__":
    main()
