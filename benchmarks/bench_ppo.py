"""evograd PPO against Stable-Baselines3 PPO, same settings, same machine, same run.

CartPole-v1 (rl-zoo settings: 8 envs, n_steps 32, batch 256, gae 0.8, gamma 0.98, 20 epochs, ent 0,
lr lin_1e-3, clip lin_0.2, MLP 64-64 tanh): both are evaluated every 5,000 training env steps on 10
deterministic episodes and stop at the first mean >= 475 or at 1e5 steps. SB3 is run exactly as
../shared/peers/sb3_ppo_cartpole.py runs it (EvalCallback + StopTrainingOnRewardThreshold), with
render_mode=None envs. The clock starts after construction (SB3: around learn(); evograd: the training
loop) and includes evaluation. SB3 evaluates inside a rollout (at multiples of 5,000 steps), evograd after
the update that crosses the multiple (5,120, 10,240, ...): each counts the env steps its policy has used.
Targets: evograd solves >= 4 of 5 seeds and its median wall-clock to 475 is <= 0.5x SB3's.

Pendulum-v1 (rl-zoo settings without gSDE: 4 envs, n_steps 1024, batch 64, gae 0.95, gamma 0.9,
10 epochs, lr 1e-3, clip 0.2, ent 0, 1e5 steps): the final policies of both are evaluated by the same code
(10 deterministic episodes, reset seeds 10_000 + seed + i). Target: evograd's median over seeds is not
worse than SB3's by more than 10% of |SB3's|.

Seeds of the two libraries alternate, so load on this shared machine hits both alike.
Usage: python benchmarks/bench_ppo.py [--quick] [--only cartpole|pendulum] [--seeds 0 1 2]
The last line of stdout is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
import warnings

for _v in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ.setdefault(_v, "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from evograd.rl.loop import run_episodes  # noqa: E402
from evograd.rl.ppo import train_ppo  # noqa: E402

warnings.filterwarnings("ignore")
THRESH = 475.0
CARTPOLE = dict(n_envs=8, n_steps=32, batch_size=256, gae_lambda=0.8, gamma=0.98, n_epochs=20, ent_coef=0.0,
                learning_rate="lin_1e-3", clip_range="lin_0.2")
PENDULUM = dict(n_envs=4, n_steps=1024, batch_size=64, gae_lambda=0.95, gamma=0.9, n_epochs=10, ent_coef=0.0,
                learning_rate=1e-3, clip_range=0.2)


def _lin(v0):
    return lambda progress_remaining: progress_remaining * v0


def _sb3_kwargs(cfg):
    out = dict(cfg)
    out.pop("n_envs")
    for k in ("learning_rate", "clip_range"):
        if isinstance(out[k], str):
            out[k] = _lin(float(out[k][4:]))
    return out


def sb3_cartpole(seed, max_steps=100_000):
    from stable_baselines3 import PPO
    from stable_baselines3.common.callbacks import EvalCallback, StopTrainingOnRewardThreshold
    from stable_baselines3.common.env_util import make_vec_env

    env = make_vec_env("CartPole-v1", n_envs=8, seed=seed, env_kwargs=dict(render_mode=None))
    eval_env = make_vec_env("CartPole-v1", n_envs=1, seed=seed + 10_000, env_kwargs=dict(render_mode=None))
    model = PPO("MlpPolicy", env, seed=seed, device="cpu", verbose=0, **_sb3_kwargs(CARTPOLE))
    st = dict(evals=[], hit=None)

    class Timed(EvalCallback):
        def _on_step(self):
            will = self.eval_freq > 0 and self.n_calls % self.eval_freq == 0
            cont = super()._on_step()
            if will:
                m = float(self.last_mean_reward)
                st["evals"].append((int(self.num_timesteps), m))
                if m >= THRESH and st["hit"] is None:
                    st["hit"] = (int(self.num_timesteps), time.perf_counter() - st["t0"],
                                 time.process_time() - st["c0"])
            return cont

    cb = Timed(eval_env, n_eval_episodes=10, eval_freq=5000 // 8, deterministic=True, verbose=0,
               callback_on_new_best=StopTrainingOnRewardThreshold(reward_threshold=THRESH, verbose=0))
    st["t0"], st["c0"] = time.perf_counter(), time.process_time()
    model.learn(total_timesteps=max_steps, callback=cb)
    wall = time.perf_counter() - st["t0"]
    hit = st["hit"]
    return dict(solved=hit is not None, steps_to_475=hit[0] if hit else None,
                wall_to_475=hit[1] if hit else None, cpu_to_475=hit[2] if hit else None,
                total_steps=int(model.num_timesteps), total_wall=wall, evals=st["evals"])


def evograd_cartpole(seed, max_steps=100_000):
    r = train_ppo("CartPole-v1", policy="mlp", seed=seed, max_env_steps=max_steps, eval_every=5000,
                  eval_episodes=10, target_return=THRESH, **CARTPOLE)
    # row 0 evaluates the initial policy (SB3 has no such evaluation); its time counts for evograd
    rows = [row for row in r.history[1:] if not np.isnan(row["eval_return"])]
    evals = [(row["env_steps"], row["eval_return"]) for row in rows]
    hit = next((row for row in rows if row["eval_return"] >= THRESH), None)
    return dict(solved=hit is not None, steps_to_475=hit["env_steps"] if hit else None,
                wall_to_475=hit["wall_s"] if hit else None, cpu_to_475=hit["cpu_s"] if hit else None,
                total_steps=r.env_steps, total_wall=r.wall_s, eval_s=r.eval_s, evals=evals)


def _pendulum_eval(act, seed, episodes=10):
    import gymnasium as gym

    envs = [gym.make("Pendulum-v1") for _ in range(episodes)]
    rets, _, _ = run_episodes(envs, [10_000 + seed + i for i in range(episodes)], act)
    return float(np.mean(rets))


def sb3_pendulum(seed, max_steps):
    from stable_baselines3 import PPO
    from stable_baselines3.common.env_util import make_vec_env

    env = make_vec_env("Pendulum-v1", n_envs=4, seed=seed, env_kwargs=dict(render_mode=None))
    model = PPO("MlpPolicy", env, seed=seed, device="cpu", verbose=0, **_sb3_kwargs(PENDULUM))
    t0 = time.perf_counter()
    model.learn(total_timesteps=max_steps)
    wall = time.perf_counter() - t0
    ret = _pendulum_eval(lambda o: model.predict(o, deterministic=True)[0], seed)
    return dict(final_return=ret, wall=wall, steps=int(model.num_timesteps))


def evograd_pendulum(seed, max_steps):
    r = train_ppo("Pendulum-v1", policy="mlp", seed=seed, max_env_steps=max_steps, eval_every=max_steps,
                  **PENDULUM)  # evaluated at the start and the end only, as SB3 here
    ret = _pendulum_eval(lambda o: r.last_policy.act(o, deterministic=True), seed)
    return dict(final_return=ret, wall=r.wall_s, steps=r.env_steps, own_eval=r.history[-1]["eval_return"])


def med(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def fmt(x, nd=2):
    return "-" if x is None else f"{x:.{nd}f}"


def run_cartpole(seeds):
    rows = {"evograd": [], "sb3": []}
    for s in seeds:
        for lib, fn in (("sb3", sb3_cartpole), ("evograd", evograd_cartpole)):
            r = fn(s)
            rows[lib].append(r)
            print(f"cartpole seed={s} {lib:8s} solved={r['solved']} steps={r['steps_to_475']} "
                  f"wall={fmt(r['wall_to_475'])} cpu={fmt(r['cpu_to_475'])} "
                  f"evals={[(n, round(v, 1)) for n, v in r['evals']]}",
                  flush=True)
    summ = {}
    for lib, rs in rows.items():
        ok = [r for r in rs if r["solved"]]
        summ[lib] = dict(
            solved=len(ok),
            runs=len(rs),
            median_steps_to_475=med([r["steps_to_475"] for r in ok]),
            median_wall_to_475=med([r["wall_to_475"] for r in ok]),
            median_cpu_to_475=med([r["cpu_to_475"] for r in ok]),
            steps=[r["steps_to_475"] for r in rs],
            walls=[None if r["wall_to_475"] is None else round(r["wall_to_475"], 2) for r in rs],
            cpus=[None if r["cpu_to_475"] is None else round(r["cpu_to_475"], 2) for r in rs],
            # k-th evaluation (about k * 5000 steps); solved runs keep their last value
            eval_at_k=[med([_kth(r["evals"], k) for r in rs]) for k in range(4)],
        )
    e, b = summ["evograd"], summ["sb3"]
    ratio = (e["median_wall_to_475"] / b["median_wall_to_475"]
             if e["median_wall_to_475"] and b["median_wall_to_475"] else None)
    need = max(1, int(np.ceil(0.8 * len(seeds))))
    summ["wall_ratio"] = ratio
    summ["cpu_ratio"] = (e["median_cpu_to_475"] / b["median_cpu_to_475"]
                         if e["median_cpu_to_475"] and b["median_cpu_to_475"] else None)
    summ["pass_solved"] = e["solved"] >= need
    summ["pass_speed"] = ratio is not None and ratio <= 0.5
    print("\nCartPole-v1 (zoo settings), evograd vs SB3 2.9.2")
    print(f"{'':10s}{'solved':>8s}{'steps to 475 (med)':>20s}{'wall s to 475 (med)':>21s}"
          f"{'cpu s to 475 (med)':>20s}{'eval@~5k/10k/15k/20k (med)':>30s}")
    for lib in ("evograd", "sb3"):
        s = summ[lib]
        print(f"{lib:10s}{s['solved']:>5d}/{s['runs']:<2d}{fmt(s['median_steps_to_475'], 0):>20s}"
              f"{fmt(s['median_wall_to_475']):>21s}{fmt(s['median_cpu_to_475']):>20s}"
              f"{'/'.join(fmt(v, 0) for v in s['eval_at_k']):>30s}")
    print(f"cpu-time ratio evograd/SB3 = {fmt(summ['cpu_ratio'], 3)} (process time, less sensitive to load)")
    print(
        f"wall ratio evograd/SB3 = {fmt(ratio, 3)} (target <= 0.5): "
        f"{'PASS' if summ['pass_speed'] else 'FAIL'}; "
        f"solved {e['solved']}/{len(seeds)} (target >= {need}): {'PASS' if summ['pass_solved'] else 'FAIL'}"
    )
    return summ


def _kth(evals, k):
    if not evals:
        return None
    return evals[k][1] if k < len(evals) else evals[-1][1]


def run_pendulum(seeds, max_steps):
    rows = {"evograd": [], "sb3": []}
    for s in seeds:
        for lib, fn in (("sb3", sb3_pendulum), ("evograd", evograd_pendulum)):
            r = fn(s, max_steps)
            rows[lib].append(r)
            print(f"pendulum seed={s} {lib:8s} final_return={r['final_return']:.1f} steps={r['steps']} "
                  f"wall={r['wall']:.1f}s", flush=True)
    e = med([r["final_return"] for r in rows["evograd"]])
    b = med([r["final_return"] for r in rows["sb3"]])
    ok = e >= b - 0.1 * abs(b)
    tw = med([r["wall"] for r in rows["evograd"]]) / med([r["wall"] for r in rows["sb3"]])
    print(f"\nPendulum-v1 (zoo settings, no gSDE), {max_steps} steps, {len(seeds)} seeds")
    print(f"evograd median final return {e:.1f} {[round(r['final_return'], 1) for r in rows['evograd']]}")
    print(f"sb3     median final return {b:.1f} {[round(r['final_return'], 1) for r in rows['sb3']]}")
    print(f"within 10% of SB3 (or better): {'PASS' if ok else 'FAIL'}; wall ratio evograd/SB3 = {tw:.3f}")
    return dict(evograd=rows["evograd"], sb3=rows["sb3"], median_evograd=e, median_sb3=b, pass_return=ok,
                wall_ratio=tw)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="CartPole 3 seeds, Pendulum 1 seed")
    ap.add_argument("--only", choices=["cartpole", "pendulum"])
    ap.add_argument("--seeds", type=int, nargs="+")
    ap.add_argument("--pendulum-steps", type=int, default=100_000)
    args = ap.parse_args()
    torch.set_num_threads(1)
    out = {"bench": "bench_ppo", "torch_threads": 1}
    if args.only in (None, "cartpole"):
        seeds = args.seeds or ([0, 1, 2] if args.quick else [0, 1, 2, 3, 4])
        out["cartpole"] = run_cartpole(seeds)
    if args.only in (None, "pendulum"):
        seeds = args.seeds or ([0] if args.quick else [0, 1, 2])
        out["pendulum"] = run_pendulum(seeds, args.pendulum_steps)
    try:
        out["loadavg_1m"] = os.getloadavg()[0]
    except OSError:
        pass
    print(json.dumps(out, default=float))


if __name__ == "__main__":
    main()
