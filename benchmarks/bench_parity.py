"""PPO parity: evograd's `train_ppo` against Stable-Baselines3's PPO, side by side at equal env steps.

Both libraries run rl-baselines3-zoo's hyperparameters (`_control_runs.sb3_settings`, the one source: our
PPOConfig takes SB3's names, so the same dict configures both) for exactly the same number of training env
steps, with the same seeds, each run in its own process with one torch thread. Seeds interleave across the
two libraries, so drift in the machine's load hits both alike.

"Final return" is the mean return of the final policy over EVAL_EPISODES fresh deterministic episodes (argmax
or the clipped Gaussian mean; observation statistics frozen), run by one function (`evograd.rl.loop.
run_episodes`) on envs reset with the same seeds for both libraries, never seen in training.
Training seconds are the wall-clock of construction plus training, minus the time evograd spends evaluating
inside `train_ppo` (one episode before and after training, switched as low as it goes); steps/s divides
the training env steps by them. CPU-hours add every run's process CPU time (user + system).

Printed per task: each seed's final return for both libraries, the mean ratio evograd / SB3 with a 95%
bootstrap interval (seeds resampled within each library, 10,000 draws), steps/s of both and their ratio,
and the CPU-hours. Targets: ratio >= 0.9 with an interval that contains 1 or lies above it (its upper end
>= 1); steps/s >= 1.5x SB3's (medians over seeds).

Full run: LunarLander-v3 1M steps x 10 seeds, HalfCheetah-v5 500k steps x 5 seeds (about 3 CPU-hours here).
Every finished run is appended to OUT/runs.jsonl as it ends; `--resume` skips the runs already there, so a
long run survives the end of a session:
  python benchmarks/bench_parity.py --out bench_results/parity --resume
  python benchmarks/bench_parity.py --quick                  (LunarLander 50k steps, 2 seeds: a smoke test)
  python benchmarks/bench_parity.py --one ENV LIB SEED STEPS (a single run, used internally)
The last stdout line is one JSON object.
"""
from __future__ import annotations

import os

for _v in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ[_v] = "1"

import argparse  # noqa: E402
import json  # noqa: E402
import resource  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
TASKS = {"LunarLander-v3": dict(steps=1_000_000, seeds=10), "HalfCheetah-v5": dict(steps=500_000, seeds=5)}
QUICK = {"LunarLander-v3": dict(steps=50_000, seeds=2)}
LIBS = ("evograd", "sb3")
EVAL_EPISODES = 20
TARGET_RATIO, TARGET_SPEED = 0.9, 1.5


def eval_seeds(seed: int) -> list[int]:
    """Evaluation resets: far from the training seeds (which are small integers) and from train_ppo's own."""
    return [1_000_000 + 1_000 * seed + i for i in range(EVAL_EPISODES)]


def evaluate(env_id: str, seed: int, act) -> list[float]:
    import gymnasium as gym
    import torch

    from evograd.rl.loop import run_episodes

    envs = [gym.make(env_id) for _ in range(EVAL_EPISODES)]
    with torch.no_grad():
        rets, _, _ = run_episodes(envs, eval_seeds(seed), act)
    for e in envs:
        e.close()
    return [float(r) for r in rets]


def evograd_settings(env_id: str) -> dict:
    """The zoo settings of `sb3_settings` in train_ppo's names (they are SB3's names)."""
    from _control_runs import sb3_settings

    s = sb3_settings(env_id)
    kw = dict(s["ppo"], n_envs=s["n_envs"], normalize_obs=s["normalize"], normalize_reward=s["normalize"])
    pk = s["policy_kwargs"] or {}
    if "net_arch" in pk:
        kw["hidden_sizes"] = tuple(pk["net_arch"]["pi"])
        kw["critic_hidden_sizes"] = tuple(pk["net_arch"]["vf"])
    if "activation_fn" in pk:
        kw["activation"] = pk["activation_fn"].__name__.lower()
    for key in ("log_std_init", "ortho_init"):
        if key in pk:
            kw[key] = pk[key]
    return kw


def run_evograd(env_id: str, seed: int, steps: int) -> dict:
    import evograd

    t0 = time.perf_counter()
    r = evograd.train_ppo(env_id, seed=seed, max_env_steps=steps, eval_every=10**12, eval_episodes=1,
                          torch_threads=1, **evograd_settings(env_id))
    train_s = time.perf_counter() - t0 - r.eval_s
    policy = r.last_policy
    rets = evaluate(env_id, seed, lambda o: policy.act(o, deterministic=True))
    return dict(train_s=train_s, env_steps=int(r.env_steps), stop_reason=r.stop_reason, eval_returns=rets)


def run_sb3(env_id: str, seed: int, steps: int) -> dict:
    from _control_runs import sb3_settings
    from stable_baselines3 import PPO
    from stable_baselines3.common.env_util import make_vec_env
    from stable_baselines3.common.vec_env import VecNormalize

    s = sb3_settings(env_id)
    t0 = time.perf_counter()
    env = make_vec_env(env_id, n_envs=s["n_envs"], seed=seed, env_kwargs=dict(render_mode=None))
    if s["normalize"]:
        env = VecNormalize(env, gamma=s["ppo"]["gamma"])
    model = PPO("MlpPolicy", env, policy_kwargs=s["policy_kwargs"], seed=seed, device="cpu", verbose=0, **s["ppo"])
    model.learn(total_timesteps=steps)
    train_s = time.perf_counter() - t0

    def act(o):  # normalize_obs reads the statistics without updating them
        return model.predict(env.normalize_obs(o) if s["normalize"] else o, deterministic=True)[0]

    rets = evaluate(env_id, seed, act)
    return dict(train_s=train_s, env_steps=int(model.num_timesteps), stop_reason="total_timesteps",
                eval_returns=rets)


def one(env_id: str, lib: str, seed: int, steps: int) -> dict:
    import torch

    torch.set_num_threads(1)
    out = (run_evograd if lib == "evograd" else run_sb3)(env_id, seed, steps)
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return dict(env=env_id, lib=lib, seed=seed, budget_steps=steps, final_return=float(np.mean(out["eval_returns"])),
                steps_per_s=out["env_steps"] / max(out["train_s"], 1e-9), cpu_s=ru.ru_utime + ru.ru_stime,
                **out)


def run_one(env_id: str, lib: str, seed: int, steps: int) -> dict:
    cmd = [sys.executable, os.path.abspath(__file__), "--one", env_id, lib, str(seed), str(steps)]
    with tempfile.TemporaryDirectory(prefix="evograd-parity-") as tmp:  # MuJoCo writes MUJOCO_LOG.TXT to cwd
        p = subprocess.run(cmd, cwd=tmp, capture_output=True, text=True)
    lines = [ln for ln in p.stdout.splitlines() if ln.startswith("{")]
    if p.returncode != 0 or not lines:
        return dict(env=env_id, lib=lib, seed=seed, budget_steps=steps, error=f"exit {p.returncode}",
                    stderr_tail=p.stderr[-1500:])
    return json.loads(lines[-1])


def ratio_interval(ours: np.ndarray, ref: np.ndarray, draws: int = 10_000, seed: int = 0) -> tuple[float, float]:
    """95% percentile bootstrap interval of mean(ours) / mean(ref), resampling seeds within each library."""
    rng = np.random.default_rng(seed)
    a = ours[rng.integers(0, len(ours), (draws, len(ours)))].mean(axis=1)
    b = ref[rng.integers(0, len(ref), (draws, len(ref)))].mean(axis=1)
    r = a / b
    return float(np.percentile(r, 2.5)), float(np.percentile(r, 97.5))


def summarize(env_id: str, runs: list[dict]) -> dict:
    by = {lib: sorted((r for r in runs if r["env"] == env_id and r["lib"] == lib and "error" not in r),
                      key=lambda r: r["seed"]) for lib in LIBS}
    ours, ref = (np.array([r["final_return"] for r in by[lib]]) for lib in LIBS)
    out = dict(env=env_id, seeds={lib: [r["seed"] for r in by[lib]] for lib in LIBS},
               final_return={lib: [round(r["final_return"], 1) for r in by[lib]] for lib in LIBS},
               env_steps={lib: [r["env_steps"] for r in by[lib]] for lib in LIBS},
               train_s={lib: [round(r["train_s"], 1) for r in by[lib]] for lib in LIBS},
               errors=[r for r in runs if r["env"] == env_id and "error" in r],
               cpu_hours=sum(r.get("cpu_s", 0.0) for r in runs if r["env"] == env_id) / 3600)
    if len(ours) == 0 or len(ref) == 0:
        return out
    speed = {lib: float(np.median([r["steps_per_s"] for r in by[lib]])) for lib in LIBS}
    # per CPU second as well: unlike wall-clock, it does not move when the machine is shared or a run is paused
    cpu_speed = {lib: float(np.median([r["env_steps"] / r["cpu_s"] for r in by[lib] if r.get("cpu_s")] or [np.nan]))
                 for lib in LIBS}
    # a ratio of returns means something only when SB3's mean is positive (as both tasks' are at these
    # budgets); otherwise the verdict is left undecided and the means speak for themselves
    defined = ref.mean() > 0
    ratio = float(ours.mean() / ref.mean()) if defined else float("nan")
    lo, hi = ratio_interval(ours, ref) if defined and min(len(ours), len(ref)) > 1 else (float("nan"),) * 2
    short = [f"{r['lib']} seed {r['seed']}: {r['env_steps']} of {r['budget_steps']}" for lib in LIBS
             for r in by[lib] if r["env_steps"] < r["budget_steps"]]
    out.update(mean={lib: float(v.mean()) for lib, v in zip(LIBS, (ours, ref))}, ratio=ratio, ratio_ci95=[lo, hi],
               steps_per_s=speed, speed_ratio=speed["evograd"] / speed["sb3"], short_runs=short,
               steps_per_cpu_s=cpu_speed, cpu_speed_ratio=cpu_speed["evograd"] / cpu_speed["sb3"],
               pass_return=bool(ratio >= TARGET_RATIO and hi >= 1.0) if defined else None,
               pass_speed=bool(speed["evograd"] / speed["sb3"] >= TARGET_SPEED))
    return out


def report(s: dict) -> None:
    print(f"\n== {s['env']}: final return of the final policy, {EVAL_EPISODES} deterministic episodes")
    for lib in LIBS:
        print(f"  {lib:8s} seeds {s['seeds'][lib]}: " + ", ".join(f"{v:.1f}" for v in s["final_return"][lib]))
    if "ratio" not in s:
        print("  (not enough runs for a ratio)")
        return
    lo, hi = s["ratio_ci95"]
    print(f"  mean evograd {s['mean']['evograd']:.1f} vs SB3 {s['mean']['sb3']:.1f}: ratio {s['ratio']:.3f} "
          f"(95% bootstrap {lo:.3f}-{hi:.3f}), target >= {TARGET_RATIO} with upper end >= 1: "
          f"{({True: 'PASS', False: 'FAIL'}).get(s['pass_return'], 'UNDECIDED (SB3 mean not positive)')}")
    sp = s["steps_per_s"]
    print(f"  steps/s (median) evograd {sp['evograd']:,.0f} vs SB3 {sp['sb3']:,.0f}: {s['speed_ratio']:.2f}x, "
          f"target >= {TARGET_SPEED}x: {'PASS' if s['pass_speed'] else 'FAIL'}")
    cs = s["steps_per_cpu_s"]
    print(f"  steps per CPU second (median) evograd {cs['evograd']:,.0f} vs SB3 {cs['sb3']:,.0f}: "
          f"{s['cpu_speed_ratio']:.2f}x (unaffected by a shared machine)")
    print(f"  CPU-hours {s['cpu_hours']:.2f}; runs short of their budget: {s['short_runs'] or 'none'}; "
          f"errors: {len(s['errors'])}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--one", nargs=4, metavar=("ENV", "LIB", "SEED", "STEPS"), help=argparse.SUPPRESS)
    ap.add_argument("--quick", action="store_true", help="LunarLander 50k steps x 2 seeds")
    ap.add_argument("--envs", nargs="+", choices=list(TASKS))
    ap.add_argument("--seeds", type=int, help="seeds per task (default 10 LunarLander, 5 HalfCheetah)")
    ap.add_argument("--out", help="folder for runs.jsonl (every finished run, appended as it ends)")
    ap.add_argument("--resume", action="store_true", help="skip the runs already in OUT/runs.jsonl")
    args = ap.parse_args()
    sys.path.insert(0, HERE)
    if args.one:
        import warnings

        warnings.filterwarnings("ignore")
        env_id, lib, seed, steps = args.one
        print(json.dumps(one(env_id, lib, int(seed), int(steps))))
        return
    if args.resume and not args.out:
        ap.error("--resume needs --out")
    tasks = {k: v for k, v in (QUICK if args.quick else TASKS).items() if not args.envs or k in args.envs}
    log = os.path.join(args.out, "runs.jsonl") if args.out else None
    runs = []
    if log:
        os.makedirs(args.out, exist_ok=True)
        if args.resume and os.path.exists(log):
            with open(log) as fh:
                runs = [json.loads(ln) for ln in fh if ln.strip()]
            runs = [r for r in runs if "error" not in r]  # a failed run is tried again
    done = {(r["env"], r["lib"], r["seed"], r["budget_steps"]) for r in runs}
    for env_id, t in tasks.items():
        for seed in range(args.seeds or t["seeds"]):
            for lib in LIBS:  # interleaved: load drift hits both libraries alike
                if (env_id, lib, seed, t["steps"]) in done:
                    continue
                r = run_one(env_id, lib, seed, t["steps"])
                runs.append(r)
                if log:
                    with open(log, "a") as fh:
                        fh.write(json.dumps(r) + "\n")
                msg = r.get("error") or (f"final {r['final_return']:8.1f}  steps {r['env_steps']:,}  "
                                         f"{r['steps_per_s']:,.0f} steps/s  cpu {r['cpu_s']:.0f} s")
                print(f"{env_id:15s} {lib:8s} seed {seed}: {msg}", flush=True)
    summary = [summarize(env_id, [r for r in runs if r["budget_steps"] == t["steps"]]) for env_id, t in tasks.items()]
    for s in summary:
        report(s)
    print(json.dumps({"bench": "parity", "quick": args.quick, "eval_episodes": EVAL_EPISODES, "summary": summary,
                      "runs": runs, "loadavg_1m": round(os.getloadavg()[0], 2)}))


if __name__ == "__main__":
    main()
