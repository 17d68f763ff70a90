"""Peak memory of training without backpropagation: a MeZO step (evograd.zo.InPlaceMeZO, the step of
`eg.zo.fit`) against a plain forward pass and a backprop + Adam step, on a float32 MLP of >= 10M parameters.

Each figure is the peak resident set size (`resource.getrusage(RUSAGE_SELF).ru_maxrss`, KiB on Linux) of a
FRESH Python process that imports torch and evograd, builds the model (seeded, parameters included) and a
batch of 64, does its work and reads the peak: (a) nothing more (the baseline), (b) one forward pass under
torch.no_grad, (c) one MeZO step (2 forward passes, 4 in-place passes over the parameters, sgd), (d) one
forward + backward + torch.optim.Adam step (gradients 1x and Adam's moments 2x the parameters). tracemalloc
does not see torch's allocations; the process's peak RSS does. Ratios are of whole peaks (parameters and the
interpreter included), the issue's target being MeZO / forward <= 1.1; the increments over (a) are printed too.
After the peak is read, each process times a few more of its steps (median) for the time ratios.

Usage: python benchmarks/bench_zo_memory.py [--quick] [--reps N] [--widths 1024,2048,2048,2048,1024]
The last line of stdout is one JSON object.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STAGES = ("baseline", "forward", "mezo", "backprop")
TARGET = 1.1
BATCH = 64


def child(stage: str, widths: list[int], timing_reps: int) -> dict:
    """Runs in the fresh process: build, work, read the peak RSS, then time more steps."""
    import resource
    import time

    import torch

    torch.set_num_threads(1)
    torch.manual_seed(0)
    layers = []
    for i, (a, b) in enumerate(zip(widths[:-1], widths[1:])):
        layers += [torch.nn.Linear(a, b)] + ([torch.nn.ReLU()] if i < len(widths) - 2 else [])
    model = torch.nn.Sequential(*layers)
    x, y = torch.randn(BATCH, widths[0]), torch.randn(BATCH, widths[-1])
    params = sum(p.numel() for p in model.parameters())

    def loss():
        return torch.nn.functional.mse_loss(model(x), y)

    work = _work(stage, model, loss)
    work()
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    times = []
    for _ in range(timing_reps if stage != "baseline" else 0):
        t = time.perf_counter()
        work()
        times.append(time.perf_counter() - t)
    return {"stage": stage, "peak_kib": peak_kib, "params": params, "step_s": statistics.median(times) if times
            else None}


def _work(stage: str, model, loss):
    """The stage's work as a function of no arguments."""
    import torch

    from evograd.zo import InPlaceMeZO

    if stage == "baseline":
        return lambda: None
    if stage == "forward":
        return torch.no_grad()(loss)
    if stage == "mezo":
        opt = InPlaceMeZO(model, lr=1e-6, mu=1e-3, seed=0)
        return lambda: opt.step(loss)
    adam = torch.optim.Adam(model.parameters(), lr=1e-4)

    def step():
        adam.zero_grad(set_to_none=True)
        loss().backward()
        adam.step()

    return step


def measure(stage: str, widths: list[int], timing_reps: int) -> dict:
    code = (f"import json, sys; sys.path.insert(0, {ROOT!r}); sys.path.insert(0, {os.path.dirname(__file__)!r}); "
            f"from bench_zo_memory import child; print(json.dumps(child({stage!r}, {widths!r}, {timing_reps})))")
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env, cwd=ROOT)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="1 process per stage, 2 timed steps")
    ap.add_argument("--reps", type=int, default=3, help="fresh processes per stage (median peak)")
    ap.add_argument("--widths", default="1024,2048,2048,2048,1024", help="MLP layer widths (ReLU between)")
    args = ap.parse_args()
    reps, timing = (1, 2) if args.quick else (args.reps, 5)
    widths = [int(w) for w in args.widths.split(",")]
    runs = {s: [] for s in STAGES}
    for _ in range(reps):  # interleaved, so a change in the machine's load touches every stage alike
        for s in STAGES:
            runs[s].append(measure(s, widths, timing))
    params = runs["baseline"][0]["params"]
    peak = {s: statistics.median(r["peak_kib"] for r in runs[s]) / 1024 for s in STAGES}
    step_s = {s: statistics.median(r["step_s"] for r in runs[s]) for s in STAGES[1:]}
    above = {s: peak[s] - peak["baseline"] for s in STAGES[1:]}
    res = {"model": "MLP " + "-".join(map(str, widths)) + " (ReLU), float32", "params": params,
           "param_mib": params * 4 / 2**20, "batch": BATCH, "reps": reps, "peak_mib": peak, "above_baseline_mib": above,
           "ratio_mezo_forward": peak["mezo"] / peak["forward"],
           "ratio_backprop_forward": peak["backprop"] / peak["forward"], "target": TARGET,
           "step_s": step_s, "time_ratio_mezo_forward": step_s["mezo"] / step_s["forward"],
           "time_ratio_backprop_forward": step_s["backprop"] / step_s["forward"]}
    res["passed"] = res["ratio_mezo_forward"] <= TARGET
    print(f"{res['model']}: {params:,} parameters ({res['param_mib']:.1f} MiB), batch {BATCH}, "
          f"median of {reps} fresh process(es) per stage")
    for s in STAGES:
        extra = "" if s == "baseline" else (f"  (+{above[s]:.1f} MiB over import+model; step "
                                            f"{step_s[s] * 1e3:.1f} ms)")
        print(f"  peak RSS {s:9s} {peak[s]:8.1f} MiB{extra}")
    print(f"MeZO step / forward: {res['ratio_mezo_forward']:.3f} (target <= {TARGET}: "
          f"{'PASS' if res['passed'] else 'FAIL'});  backprop+Adam / forward: {res['ratio_backprop_forward']:.3f};  "
          f"time: MeZO {res['time_ratio_mezo_forward']:.1f}x, backprop+Adam {res['time_ratio_backprop_forward']:.1f}x "
          f"a forward pass")
    print(json.dumps(res))


if __name__ == "__main__":
    main()
