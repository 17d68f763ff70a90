"""One fixed-wall-clock training run per call, for evograd and its peers, under ONE evaluation protocol.

Used by bench_control.py (each run in its own process). What is identical for every library:
  * the clock: training seconds, i.e. wall-clock from the end of construction (envs, model, Ray start-up;
    worker pools and Ray actors start inside it, in the first generation) minus the time spent in the
    evaluations below. The budget is in training seconds and is checked at generation / update
    boundaries (SB3: every env step). Evaluations are left out because an env-step schedule evaluates a
    fast learner more often per second than a slow one: with evaluation inside the clock, the 5 x 1000
    HalfCheetah evaluation steps took 15% of an evolution strategy's time and 2% of SB3's. Wall-clock
    with evaluations is kept too (curve_wall_s, wall_s);
  * the schedule: the initial policy is evaluated, then the policy current at the first generation or
    update boundary after every `eval_every` training env steps, and the final policy at the end;
  * the evaluation: `evograd.rl.loop.run_episodes` on EVAL_EPISODES fresh `gym.make(env)` envs reset with
    seeds 10_000 + seed + i, deterministic actions (argmax for Discrete, the clipped mean for Box), in the
    main process. evograd's PPO evaluates with exactly this function and these seeds inside `train_ppo`
    (`eval_seed`), because its policy is not reachable between updates from the outside;
  * threads: one torch/BLAS thread per process (Ray actors and loky workers inherit OMP_NUM_THREADS=1).
Training env steps count every step the learner used; evaluation steps are never counted.
Curve rows are [train_s, train_env_steps, eval_return], taken when the evaluated policy existed;
curve_wall_s[i] is the wall-clock at that moment (earlier evaluations included).
"""
from __future__ import annotations

import os

for _v in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ[_v] = "1"

import time  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402

# imported before any clock starts (importing evograd takes seconds on a busy machine): every library's
# evaluations run through this one function
from evograd.rl.loop import run_episodes  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EVAL_EPISODES = 5
PRESETS = {
    # eval_every: LunarLander = 2 zoo PPO rollouts (16 envs x 1024), HalfCheetah = 40 zoo PPO rollouts of 512
    "LunarLander-v3": dict(threshold=200.0, eval_every=32_768, config="configs/lunarlander_linear.yaml",
                           evotorch_stdev_init=1.0),
    "HalfCheetah-v5": dict(threshold=3430.0, eval_every=20_480, config="configs/halfcheetah_linear.yaml",
                           evotorch_stdev_init=0.1),
}
ES_METHODS = ("openai_es", "snes", "cmaes", "ars")
EVOGRAD_METHODS = ES_METHODS + ("ppo",)
PEER_METHODS = ("evotorch_snes", "sb3_ppo")


class Recorder:
    """The shared clock, evaluation schedule and curve."""

    def __init__(self, env_id: str, seed: int, eval_every: int, budget: float):
        import gymnasium as gym

        self.envs = [gym.make(env_id) for _ in range(EVAL_EPISODES)]
        self.seeds = [10_000 + seed + i for i in range(EVAL_EPISODES)]
        self.eval_every, self.budget, self.next_eval = eval_every, budget, 0
        self.curve, self.curve_wall, self.eval_s, self.t0 = [], [], 0.0, None

    def start(self) -> None:
        self.t0 = time.perf_counter()

    def wall(self) -> float:
        return time.perf_counter() - self.t0

    def train_s(self) -> float:
        return self.wall() - self.eval_s

    def over(self) -> bool:
        return self.train_s() >= self.budget

    def due(self, steps: int) -> bool:
        return steps >= self.next_eval

    def evaluate(self, steps: int, act) -> float:
        t = time.perf_counter()
        w = t - self.t0
        with torch.no_grad():
            rets, _, _ = run_episodes(self.envs, self.seeds, act)
        self.curve.append([round(w - self.eval_s, 3), int(steps), round(float(np.mean(rets)), 2)])
        self.curve_wall.append(round(w, 3))
        self.eval_s += time.perf_counter() - t
        while self.next_eval <= steps:
            self.next_eval += self.eval_every
        return self.curve[-1][2]


def _config(env_id: str) -> dict:
    from evograd.experiments.config import load_config

    return load_config(os.path.join(ROOT, PRESETS[env_id]["config"]))


def _block(env_id: str, name: str) -> tuple[dict, dict, dict]:
    """(method block, its policy block, its hyperparameters) from the task's config in configs/."""
    cfg = _config(env_id)
    block = dict(cfg["methods"]["ppo_mlp" if name == "ppo" else name])
    pol = {**cfg.get("policy", {}), **(block.get("policy") or {})}
    from evograd.experiments.config import method_kwargs

    return block, pol, method_kwargs(block)  # (a method's own `budget` is not a hyperparameter)


def run_evograd_es(env_id, method, seed, budget, rec: Recorder, n_jobs=2) -> dict:
    import evograd

    block, pol, hyper = _block(env_id, method)
    problem = evograd.GymProblem(env_id, policy=pol["type"], episodes=block.get("episodes", 1), seed=seed,
                                 n_jobs=n_jobs, obs_norm=pol["obs_norm"], hidden_sizes=pol["hidden_sizes"],
                                 activation=pol["activation"], box_head=pol["box_head"], bias=pol["bias"])
    opt = evograd.make(block["name"], x0=problem.initial_params(), seed=seed, **hyper)

    def act():
        pol_ = problem.policy(opt.center)
        return lambda o: pol_.act(o, deterministic=True)

    def callback(row):
        if rec.due(problem.env_steps):
            rec.evaluate(problem.env_steps, act())
        return rec.over()  # the budget is in training seconds: train stops after this generation

    rec.start()
    rec.evaluate(0, act())
    # train's own evaluation is switched off (one episode at the start and the end, inside the clock);
    # max_seconds is only a safety net
    evograd.train(problem, opt, max_seconds=10 * budget + 600, eval_every=10**15, eval_episodes=1,
                  callback=callback)
    wall = rec.wall()
    rec.evaluate(problem.env_steps, act())
    problem.close()
    return dict(wall_s=wall, train_env_steps=problem.env_steps, generations=opt.generation,
                workers=f"{n_jobs} loky workers", settings={k: _plain(v) for k, v in block.items()})


def run_evograd_ppo(env_id, seed, budget, rec: Recorder) -> dict:
    import evograd

    block, pol, hyper = _block(env_id, "ppo")
    kw = dict(hyper, policy=pol["type"], activation=pol["activation"], normalize_obs=bool(pol["obs_norm"]))
    if pol["type"] == "mlp":
        kw["hidden_sizes"] = tuple(pol["hidden_sizes"])
    # stop after the update that ends the training-seconds budget (train_ppo then evaluates the final
    # policy); max_seconds is only a safety net (the zoo settings here have no schedules it could stretch)
    r = evograd.train_ppo(env_id, seed=seed, max_seconds=10 * budget + 600, eval_every=rec.eval_every,
                          eval_episodes=EVAL_EPISODES, eval_seed=rec.seeds[0], torch_threads=1,
                          callback=lambda row: row["wall_s"] - row["eval_s"] >= budget, **kw)
    prev_eval = 0.0
    for row in r.history:  # a row's wall_s and eval_s are taken after its evaluation
        if not np.isnan(row["eval_return"]):
            rec.curve.append([round(row["wall_s"] - row["eval_s"], 3), int(row["env_steps"]),
                              round(row["eval_return"], 2)])
            rec.curve_wall.append(round(row["wall_s"] - (row["eval_s"] - prev_eval), 3))
        prev_eval = row["eval_s"]
    rec.eval_s = r.eval_s
    return dict(wall_s=r.wall_s, train_env_steps=r.env_steps, updates=r.n_updates, workers="1 process",
                settings={k: _plain(v) for k, v in block.items()})


def run_evotorch_snes(env_id, seed, budget, rec: Recorder, num_actors=2, popsize=100) -> dict:
    """EvoTorch's best configuration measured on this machine class: GymNE + SNES, popsize 100, linear
    policy with observation normalization, Ray actors (RESULTS.md section 9)."""
    import logging

    import gymnasium as gym

    logging.getLogger("evotorch").setLevel(logging.WARNING)
    torch.manual_seed(seed)
    t0 = time.perf_counter()
    if num_actors > 0:
        import ray

        ray.init(num_cpus=num_actors, include_dashboard=False, log_to_driver=False, logging_level=logging.ERROR)
    from evotorch.algorithms import SNES
    from evotorch.neuroevolution import GymNE

    problem = GymNE(env_id, "Linear(obs_length, act_length)", observation_normalization=True, num_episodes=1,
                    num_actors=num_actors if num_actors > 0 else None)
    stdev = PRESETS[env_id]["evotorch_stdev_init"]
    searcher = SNES(problem, popsize=popsize, stdev_init=stdev)
    setup_s = time.perf_counter() - t0
    discrete = isinstance(gym.make(env_id).action_space, gym.spaces.Discrete)

    def act():
        net = problem.to_policy(searcher.status["center"])  # obs normalization and action clipping included

        def f(o):
            out = net(torch.as_tensor(o, dtype=torch.float32)).numpy()
            return out.argmax(-1) if discrete else out
        return f

    rec.start()
    rec.evaluate(0, act())
    gens, steps = 0, 0
    while not rec.over():
        searcher.step()
        gens += 1
        steps = int(searcher.status["total_interaction_count"])
        if rec.due(steps):
            rec.evaluate(steps, act())
    wall = rec.wall()
    rec.evaluate(steps, act())
    try:
        problem.kill_actors()
    except Exception:
        pass
    if num_actors > 0:
        import ray

        ray.shutdown()
    return dict(wall_s=wall, train_env_steps=steps, generations=gens, setup_s=round(setup_s, 2),
                workers=f"{num_actors} Ray actors" if num_actors else "1 process",
                settings=dict(problem="GymNE", algo="SNES", popsize=popsize, stdev_init=stdev,
                              network="Linear(obs_length, act_length)", observation_normalization=True,
                              num_actors=num_actors))


def sb3_settings(env_id: str) -> dict:
    """rl-baselines3-zoo hyperparameters (hyperparams/ppo.yml; LunarLander-v2 and HalfCheetah-v3/v4)."""
    if env_id == "LunarLander-v3":
        return dict(n_envs=16, normalize=False, policy_kwargs=None,
                    ppo=dict(n_steps=1024, batch_size=64, gae_lambda=0.98, gamma=0.999, n_epochs=4, ent_coef=0.01))
    return dict(n_envs=1, normalize=True,
                policy_kwargs=dict(log_std_init=-2, ortho_init=False, activation_fn=torch.nn.ReLU,
                                   net_arch=dict(pi=[256, 256], vf=[256, 256])),
                ppo=dict(batch_size=64, n_steps=512, gamma=0.98, learning_rate=2.0633e-05, ent_coef=0.000401762,
                         clip_range=0.1, n_epochs=20, gae_lambda=0.92, max_grad_norm=0.8, vf_coef=0.58096))


def run_sb3_ppo(env_id, seed, budget, rec: Recorder) -> dict:
    from stable_baselines3 import PPO
    from stable_baselines3.common.callbacks import BaseCallback
    from stable_baselines3.common.env_util import make_vec_env
    from stable_baselines3.common.vec_env import VecNormalize

    s = sb3_settings(env_id)
    # make_vec_env's default render_mode="rgb_array" makes LunarLander progressively slower (Box2D
    # particles are only freed by render()), so the envs are made without rendering
    env = make_vec_env(env_id, n_envs=s["n_envs"], seed=seed, env_kwargs=dict(render_mode=None))
    if s["normalize"]:
        env = VecNormalize(env, gamma=s["ppo"]["gamma"])
    model = PPO("MlpPolicy", env, policy_kwargs=s["policy_kwargs"], seed=seed, device="cpu", verbose=0, **s["ppo"])

    def act():
        return lambda o: model.predict(env.normalize_obs(o) if s["normalize"] else o, deterministic=True)[0]

    class Schedule(BaseCallback):
        def _on_rollout_start(self):  # after each update: the policy only changes there
            if rec.due(self.model.num_timesteps):
                rec.evaluate(self.model.num_timesteps, act())

        def _on_step(self):
            return not rec.over()

    rec.start()
    model.learn(total_timesteps=int(1e10), callback=Schedule())
    wall = rec.wall()
    rec.evaluate(model.num_timesteps, act())
    net = "64-64 tanh" if s["policy_kwargs"] is None else "256-256 ReLU, log_std_init=-2, ortho_init=False"
    settings = dict(s["ppo"], n_envs=s["n_envs"], normalize=s["normalize"], render_mode="None",
                    policy="MlpPolicy " + net)
    return dict(wall_s=wall, train_env_steps=int(model.num_timesteps), workers="1 process (DummyVecEnv)",
                settings=settings)


def _plain(v):
    return v if isinstance(v, (int, float, str, bool, type(None), list, dict)) else str(v)


def run(env_id: str, method: str, seed: int, budget: float) -> dict:
    """One run; the result holds the curve and the bookkeeping bench_control summarizes."""
    torch.set_num_threads(1)
    rec = Recorder(env_id, seed, PRESETS[env_id]["eval_every"], budget)
    if method in ES_METHODS:
        out, lib = run_evograd_es(env_id, method, seed, budget, rec), "evograd"
    elif method == "ppo":
        out, lib = run_evograd_ppo(env_id, seed, budget, rec), "evograd"
    elif method == "evotorch_snes":
        out, lib = run_evotorch_snes(env_id, seed, budget, rec), "evotorch"
    elif method == "sb3_ppo":
        out, lib = run_sb3_ppo(env_id, seed, budget, rec), "stable-baselines3"
    else:
        raise ValueError(f"unknown method {method!r}")
    for e in rec.envs:
        e.close()
    return dict(env=env_id, method=method, library=lib, seed=seed, budget_s=budget, train_s=rec.curve[-1][0],
                threshold=PRESETS[env_id]["threshold"], eval_every_env_steps=rec.eval_every,
                eval_episodes=EVAL_EPISODES, eval_s=round(rec.eval_s, 3), curve_cols=["train_s", "env_steps", "return"],
                curve=rec.curve, curve_wall_s=rec.curve_wall, torch_threads=torch.get_num_threads(),
                **{k: (round(v, 3) if isinstance(v, float) else v) for k, v in out.items()})
