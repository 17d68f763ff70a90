"""PPO's loss and gradient: the hand-written MLP backward pass (evograd.rl.mlp_backprop) against torch autograd.

The hand-written path stays only for network shapes where it pays: loss+gradient at least 1.3x faster than
autograd on the same minibatch (issue: "keep it for a network shape only where a benchmark shows it").
Each case builds the same ActorCritic as train_ppo (SB3's orthogonal init), one minibatch of random
observations, actions, advantages and returns, and times `ppo_loss_and_grads` against the autograd loss
that PPO uses for any other module, interleaved in rounds (the best round of each counts), in this process,
one torch thread. It also checks that both give the same gradient (to float32 rounding).

Usage: python benchmarks/bench_mlp_backprop.py [--quick]. The last line of stdout is one JSON object.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

for _v in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ.setdefault(_v, "1")

import gymnasium as gym  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from evograd.rl.common import ActorCritic  # noqa: E402
from evograd.rl.mlp_backprop import ppo_loss_and_grads  # noqa: E402
from evograd.rl.ppo import autograd_loss_and_grads  # noqa: E402

TARGET = 1.3
# (label, obs dim, action space, hidden sizes, activation, minibatch): the zoo's shapes and a wide ReLU net
CASES = [
    ("CartPole zoo 64-64 tanh, batch 256", 4, gym.spaces.Discrete(2), (64, 64), "tanh", 256),
    ("LunarLander zoo 64-64 tanh, batch 64", 8, gym.spaces.Discrete(4), (64, 64), "tanh", 64),
    ("HalfCheetah zoo 64-64 tanh, batch 64", 17, gym.spaces.Box(-1, 1, (6,)), (64, 64), "tanh", 64),
    ("HalfCheetah 256-256 relu, batch 64", 17, gym.spaces.Box(-1, 1, (6,)), (256, 256), "relu", 64),
    ("LunarLander 256-256 relu, batch 64", 8, gym.spaces.Discrete(4), (256, 256), "relu", 64),
]


def _batch(ac, obs_dim, space, n, rng):
    obs = torch.as_tensor(rng.normal(size=(n, obs_dim)), dtype=torch.float32)
    if isinstance(space, gym.spaces.Discrete):
        actions = torch.as_tensor(rng.integers(space.n, size=n))
    else:
        actions = torch.as_tensor(rng.normal(size=(n, space.shape[0])), dtype=torch.float32)
    with torch.no_grad():
        old_logp = ac.evaluate(obs, actions)[0] + torch.as_tensor(rng.normal(0, 0.05, n), dtype=torch.float32)
    adv = torch.as_tensor(rng.normal(size=n), dtype=torch.float32)
    ret = torch.as_tensor(rng.normal(size=n), dtype=torch.float32)
    return obs, actions, old_logp, adv, ret


def _time(fn, reps: int) -> float:
    t = time.perf_counter()
    for _ in range(reps):
        fn()
    return (time.perf_counter() - t) / reps


def run_case(label, obs_dim, space, hidden, act, n, reps, rounds) -> dict:
    rng = np.random.default_rng(0)
    obs_space = gym.spaces.Box(-np.inf, np.inf, (obs_dim,))
    ac = ActorCritic("bench", (obs_space, space), "mlp", 0, hidden, act, None, 0.0, True)
    ac.flatten_parameters()  # as train_ppo does: one flat parameter vector and gradient buffer
    assert ac.pi_layers is not None and ac.v_layers is not None
    args = _batch(ac, obs_dim, space, n, rng)
    manual = lambda: ppo_loss_and_grads(ac, ac.pi_layers, ac.v_layers, *args, 0.2, 0.5, 0.01, True)
    auto = lambda: autograd_loss_and_grads(ac, *args, 0.2, 0.5, 0.01)
    manual()
    g_manual = ac.flat_grad().clone()
    auto()
    g_auto = ac.flat_grad().clone()
    err = float((g_manual - g_auto).abs().max() / g_auto.abs().max())
    best_m, best_a = float("inf"), float("inf")
    for _ in range(rounds):
        best_m = min(best_m, _time(manual, reps))
        best_a = min(best_a, _time(auto, reps))
    return {"case": label, "params": int(sum(p.numel() for p in ac.parameters())), "manual_us": best_m * 1e6,
            "autograd_us": best_a * 1e6, "speedup": best_a / best_m, "grad_rel_err": err,
            "keep": best_a / best_m >= TARGET}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(1)
    reps, rounds = (50, 3) if args.quick else (300, 7)
    rows = [run_case(*case, reps, rounds) for case in CASES]
    print(f"{'case':42s} {'params':>8s} {'manual us':>10s} {'autograd us':>12s} {'speedup':>8s}  keep (>= {TARGET}x)")
    for r in rows:
        print(f"{r['case']:42s} {r['params']:8d} {r['manual_us']:10.1f} {r['autograd_us']:12.1f} "
              f"{r['speedup']:7.2f}x  {'yes' if r['keep'] else 'no'}   (grad rel. diff {r['grad_rel_err']:.1e})")
    print(json.dumps({"target": TARGET, "rows": rows}))


if __name__ == "__main__":
    main()
