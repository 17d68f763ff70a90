"""One (method, seed) job of an experiment config, written to its own run directory.

A job leaves everything needed to trust and reproduce it under `<out>/<label>/seed<k>/`: progress.csv
(one row per generation or update), checkpoint.state (atomic; a population run resumed from it ends
exactly as an uninterrupted run), best.pt (the best *evaluated* policy) and result.json. Any exception is
caught and recorded in result.json with its traceback, so a failing job never loses the others' results.
An sb3 job (experiments/sb3_method.py) writes the same progress.csv, status.json and result.json, keeps its best
policy's weights in best_policy.npz and no checkpoint: it restarts on resume. The files' format is jobfiles.py's.
"""
from __future__ import annotations

import functools
import json
import math
import os
import time
import traceback
from pathlib import Path

import numpy as np

from ..core import serialization
from . import jobfiles, scalars
from .budgets import job_config
from .cputime import CPUMeter
from .jobfiles import (
    ENV_COLUMNS,
    FUNCTION_COLUMNS,
    RESULT,
    Throttle,
    atomic_write_text,
    first_reaching,
    num,
    write_progress,
    write_status,
)

CHECKPOINT, PROGRESS, STATUS = jobfiles.CHECKPOINT, jobfiles.PROGRESS, jobfiles.STATUS  # the run directory's file
# names (jobfiles.py), here too


def job_dir(out: str | os.PathLike, label: str, seed: int) -> Path:
    return Path(out) / label / f"seed{seed}"


def method_block(config: dict, label: str) -> dict:
    methods = config.get("methods") or {}
    if label in methods:
        return dict(methods[label])
    if config.get("optimizer") and (label == config["optimizer"].get("name") or label == "optimizer"):
        return dict(config["optimizer"])
    raise KeyError(f"no method {label!r} in the config (methods: {', '.join(methods) or 'none'})")


def env_spec(config: dict):
    """A Gymnasium id, or a picklable zero-argument constructor (kwargs bound, or "module:attribute")."""
    from .references import env_constructor

    return env_constructor(config["task"]["env"])


class _EnvCheckpoints:
    """The checkpoint callback of an env job (population or RL): progress.csv, best.pt when the best
    evaluation improved, checkpoint.state and status.json, throttled to one write per `seconds` and always
    written once the budget is reached. `best(loop)` gives (best return, what `save_best` saves)."""

    def __init__(self, d: Path, label: str, seed: int, budget_steps, seconds: float, best, save_best):
        self.d, self.label, self.seed, self.budget_steps = d, label, seed, budget_steps
        self.throttle, self.best, self.save_best, self.saved = Throttle(seconds), best, save_best, -math.inf

    def __call__(self, st: dict) -> None:
        hist = st["loop"]["history"]
        final = bool(self.budget_steps) and hist[-1]["env_steps"] >= self.budget_steps
        if not (self.throttle.due() or final):
            return
        write_progress(self.d, hist, ENV_COLUMNS, self.label, self.seed)
        ret, what = self.best(st["loop"])
        if what is not None and ret > self.saved:
            self.save_best(what, ret)
            self.saved = ret
        serialization.save_state(self.d / CHECKPOINT, st)
        write_status(self.d, env_steps=hist[-1]["env_steps"], budget=self.budget_steps, wall_s=hist[-1]["wall_s"],
                     best_eval_return=ret)


def run_job(config: dict, label: str, seed: int, out: str | os.PathLike, resume: bool = False,
            progress: bool = False, checkpoint_seconds: float = 2.0) -> dict:
    """Run one job and return its result dict (also written to result.json). Never raises for job errors."""
    import torch

    torch.set_num_threads(1)
    d = job_dir(out, label, seed)
    d.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    meter = CPUMeter(d, resume)  # CPU seconds of the job's process tree, summed over its resumes
    try:
        config = job_config(config, label)  # a method's own budget, where it has one
        block = method_block(config, label)
        with meter, scalars.session(config, label, seed, d):  # TensorBoard scalars of its rows, when asked for
            result = _run_method(config, label, block, seed, d, resume, progress, checkpoint_seconds)
        result.update(status="ok", error=None)
        result.setdefault("cpu_s", meter.total())  # a finished job resumed returns its result as it was
    except serialization.StateError as exc:  # a checkpoint that cannot be resumed: refused before the job
        where = str(d / CHECKPOINT)              # wrote anything, and left as it was
        raise serialization.StateError(str(exc) if where in str(exc) else f"{where}: {exc}") from None
    except Exception as exc:  # recorded, never propagated: one failing job must not lose the others
        result = {"method": label, "seed": seed, "status": "failed",
                  "error": f"{type(exc).__name__}: {exc}", "traceback": traceback.format_exc(),
                  "wall_s": time.perf_counter() - start, "cpu_s": meter.total()}
    atomic_write_text(d / RESULT, json.dumps(result, indent=2, default=_json_default))
    return result


def _run_method(config, label, block, seed, d: Path, resume, progress, checkpoint_seconds) -> dict:
    if "function" in config["task"]:
        return _run_function_job(config, label, block, seed, d, resume, progress, checkpoint_seconds)
    if block["name"] in ("ppo", "reinforce"):
        return _run_rl_job(config, label, block, seed, d, resume, progress, checkpoint_seconds)
    if block["name"] == "sb3":  # Stable-Baselines3 (the sb3 extra): its checkpoint is sb3_state.py's plain data
        from .sb3_method import run_sb3_job

        return run_sb3_job(config, label, block, seed, d, resume, progress, checkpoint_seconds)
    return _run_population_job(config, label, block, seed, d, resume, progress, checkpoint_seconds)


def _json_default(o):
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, np.generic):
        return o.item()
    return str(o)


def _load_checkpoint(d: Path, keys: tuple[str, ...]) -> dict:
    """The job's checkpoint as plain data (`StateError` if damaged or hostile), with the top-level keys
    this kind of job resumes from; deeper mismatches surface as `StateError` when the state is applied."""
    path = d / CHECKPOINT
    state = serialization.load_state(path)
    if not (isinstance(state, dict) and all(k in state for k in keys) and isinstance(state["loop"], dict)):
        raise serialization.StateError(f"{path} is not a checkpoint of this kind of job (it needs the keys "
                                       f"{', '.join(keys)})")
    return state


def _policy_block(config: dict, block: dict) -> dict:
    return {**config.get("policy", {}), **(block.get("policy") or {})}


DASK_ADDRESS_ENV = "EVOGRAD_DASK_ADDRESS"  # set by `compare` for the local cluster its jobs share


def _worker_kwargs(config: dict) -> dict:
    """GymProblem/minimize keyword arguments from the config's `workers` section."""
    w = config.get("workers") or {}
    backend, address = w.get("backend", "joblib"), w.get("address")
    if backend == "dask" and address is None:
        address = os.environ.get(DASK_ADDRESS_ENV)
    return {"n_jobs": w.get("n", 1), "backend": backend, "address": address, "timeout": w.get("timeout"),
            "retries": w.get("retries", 2)}


def _hyper(block: dict) -> dict:
    return {k: v for k, v in block.items() if k not in ("name", "episodes", "policy")}


def _run_population_job(config, label, block, seed, d: Path, resume, progress, checkpoint_seconds) -> dict:
    from ..gym.problem import GymProblem
    from ..gym.train import train
    from ..optim.registry import make
    from .gradient import train_gradient

    pol = _policy_block(config, block)
    env = config["task"]["env"]
    problem = GymProblem(env_spec(config), policy=pol.get("type", "linear"), episodes=block.get("episodes", 1),
                         seed=seed, max_episode_steps=env.get("max_episode_steps"), **_worker_kwargs(config),
                         obs_norm=pol.get("obs_norm", False), hidden_sizes=pol.get("hidden_sizes", (64, 64)),
                         activation=pol.get("activation", "tanh"), box_head=pol.get("box_head", "clip"),
                         bias=pol.get("bias", True))
    optimizer = make(block["name"], x0=problem.initial_params(), seed=seed, **_hyper(block))
    budget, ev = config["budget"], config.get("evaluation", {})
    state = None
    if resume and (d / CHECKPOINT).exists():
        state = _load_checkpoint(d, ("loop", "optimizer", "problem"))
    meta = {"method": label, "optimizer": block["name"], "seed": seed, **_env_meta(config)}
    budget_steps = budget.get("env_steps")
    checkpoint = _EnvCheckpoints(
        d, label, seed, budget_steps, checkpoint_seconds, best=lambda loop: (loop["best_ret"], loop["best_x"]),
        save_best=lambda x, ret: problem.save_policy(d / "best.pt", x, {**meta, "eval_return": ret}))

    # a gradient optimizer learns from the env's differentiable rollout (see experiments/gradient.py)
    fit = train_gradient if optimizer.needs_grad else train
    with problem:  # releases the workers (and a Dask cluster the problem started) however the run ends
        res = fit(problem, optimizer, max_env_steps=budget_steps, max_seconds=budget.get("seconds"),
                  eval_every=ev.get("every"), eval_episodes=ev.get("episodes", 10), checkpoint=checkpoint,
                  resume=state, progress=progress)
    write_progress(d, res.history, ENV_COLUMNS, label, seed)
    problem.save_policy(d / "best.pt", res.best_x, {**meta, "eval_return": res.best_eval_return})
    thr = config.get("threshold")
    extra = {"generations": res.generations, "eval_env_steps": res.eval_env_steps, "stop_reason": res.stop_reason,
             "failed_evaluations": problem.failed_evaluations, "timed_out_evaluations": len(problem.timed_out)}
    gap = _lqr_gap(config, pol, problem, res.best_x)
    if gap is not None:
        extra["gap_to_optimal"] = gap
    return {"method": label, "seed": seed, "best_eval_return": num(res.best_eval_return),
            "final_eval_return": num(res.final_eval_return), "env_steps": res.env_steps, "wall_s": res.wall_s,
            "steps_to_threshold": first_reaching(res.history, "eval_return", thr, "env_steps"),
            "seconds_to_threshold": first_reaching(res.history, "eval_return", thr, "wall_s"), "extra": extra}


def _lqr_gap(config, pol, problem, x) -> float | None:
    """Relative gap of a bias-free linear policy's exact expected cost to the Riccati optimum."""
    env_id = config["task"]["env"]["id"]
    if not str(env_id).startswith("evograd/LQR") or pol.get("type", "linear") != "linear" or pol.get("bias", True):
        return None
    import gymnasium as gym

    lqr = gym.make(env_id, **(config["task"]["env"].get("kwargs") or {})).unwrapped
    if pol.get("obs_norm"):
        return None  # the normalized policy is affine in the state, not the pure gain the formula takes
    gain = -np.asarray(x).reshape(lqr.action_space.shape[0], lqr.observation_space.shape[0])
    return float(lqr.expected_cost(gain) / lqr.optimal_cost() - 1.0)


def _env_meta(config: dict) -> dict:
    """What `evograd eval` needs to rebuild the env of a saved policy."""
    env = config["task"]["env"]
    return {"env": env["id"], "env_kwargs": dict(env.get("kwargs") or {}),
            "max_episode_steps": env.get("max_episode_steps")}


def _time_limited(make_env, max_episode_steps: int):
    import gymnasium as gym

    return gym.wrappers.TimeLimit(make_env(), max_episode_steps)


def _run_rl_job(config, label, block, seed, d: Path, resume, progress, checkpoint_seconds: float = 2.0) -> dict:
    from ..gym.policies import save_policy
    from ..rl import ppo as ppo_mod
    from ..rl import reinforce as reinforce_mod
    from ..rl.loop import policy_from_payload

    fn = ppo_mod.train_ppo if block["name"] == "ppo" else reinforce_mod.train_reinforce
    pol = _policy_block(config, block)
    budget, ev, env = config["budget"], config.get("evaluation", {}), config["task"]["env"]
    kwargs = dict(_hyper(block))
    kwargs.setdefault("policy", pol.get("type", "mlp"))
    if pol.get("type") == "mlp" and "hidden_sizes" in pol:
        kwargs.setdefault("hidden_sizes", pol["hidden_sizes"])
    if "activation" in pol:
        kwargs.setdefault("activation", pol["activation"])
    if pol.get("obs_norm") and block["name"] == "ppo":  # the policy block's ARS-style flag is PPO's VecNormalize obs
        kwargs.setdefault("normalize_obs", True)
    env_arg, extra_env = env_spec(config), {}
    if env.get("max_episode_steps"):
        if isinstance(env_arg, str):
            extra_env["env_kwargs"] = {"max_episode_steps": int(env["max_episode_steps"])}
        else:
            env_arg = functools.partial(_time_limited, env_arg, int(env["max_episode_steps"]))
    state = None
    if resume and (d / CHECKPOINT).exists():
        state = _load_checkpoint(d, ("loop", "params", "optimizer"))
    meta = {"method": label, "algorithm": block["name"], "seed": seed, **_env_meta(config)}
    budget_steps = budget.get("env_steps")
    checkpoint = _EnvCheckpoints(
        d, label, seed, budget_steps, checkpoint_seconds, best=lambda loop: (loop["best_return"], loop["best_policy"]),
        save_best=lambda payload, ret: save_policy(d / "best.pt", policy_from_payload(payload),
                                                   {**meta, "eval_return": num(ret)}))

    res = fn(env_arg, seed=seed,
             max_env_steps=budget_steps, max_seconds=budget.get("seconds"),
             eval_every=ev.get("every"), eval_episodes=ev.get("episodes", 10), progress=progress,
             checkpoint=checkpoint, resume=state, **extra_env, **kwargs)
    history = res.history
    write_progress(d, history, ENV_COLUMNS, label, seed)
    save_policy(d / "best.pt", res.policy, {**meta, "eval_return": num(res.best_eval_return)})
    thr = config.get("threshold")
    return {"method": label, "seed": seed, "best_eval_return": num(res.best_eval_return),
            "final_eval_return": num(res.final_eval_return), "env_steps": res.env_steps, "wall_s": res.wall_s,
            "steps_to_threshold": first_reaching(history, "eval_return", thr, "env_steps"),
            "seconds_to_threshold": first_reaching(history, "eval_return", thr, "wall_s"),
            "extra": {"eval_env_steps": res.eval_env_steps, "stop_reason": res.stop_reason,
                      "n_updates": res.n_updates}}


def _run_function_job(config, label, block, seed, d: Path, resume, progress, checkpoint_seconds: float = 2.0) -> dict:
    """A custom-fitness job. It checkpoints the optimizer state and the progress rows after generations
    (throttled, and after the last), so a killed job resumed with `resume=True` runs the remaining budget
    and ends exactly as an uninterrupted one: the evaluator's values depend only on the candidates."""
    from ..minimize import minimize
    from ..optim.registry import make
    from .references import resolve_attr

    task = config["task"]["function"]
    fn = resolve_attr(task["fn"])
    dim = int(task["dim"])
    x0 = np.broadcast_to(np.asarray(task.get("x0", 0.0), dtype=np.float64), (dim,)).copy()
    optimizer = make(block["name"], x0=x0, seed=seed, **_hyper(block))
    budget = config["budget"]
    loop = {"rows": [], "elapsed": 0.0, "stop_reason": None}
    if resume and (d / CHECKPOINT).exists():
        state = _load_checkpoint(d, ("loop", "optimizer"))
        with serialization.applying("the resume state"):
            optimizer.load_state_dict(state["optimizer"])
            loop = {"rows": [dict(r) for r in state["loop"]["rows"]], "elapsed": float(state["loop"]["elapsed"]),
                    "stop_reason": state["loop"].get("stop_reason")}
    throttle = Throttle(checkpoint_seconds)
    elapsed0 = loop["elapsed"]

    def save() -> None:
        write_progress(d, loop["rows"], FUNCTION_COLUMNS, label, seed)
        serialization.save_state(d / CHECKPOINT, {"version": 1, "kind": "function", "loop": loop,
                                                  "optimizer": optimizer.state_dict()})
        last = loop["rows"][-1] if loop["rows"] else {}
        write_status(d, evals=optimizer.evals, budget=budget.get("evals"), wall_s=loop["elapsed"],
                best_value=last.get("best_value"))

    def record(row) -> None:  # never stops the run: minimize's budget is the job's
        loop["rows"].append({"generation": row["generation"], "evals": row["evals"], "wall_s": elapsed0 + row["wall_s"],
                             "best_value": row["best_value"], "gen_mean": row["gen_mean"]})
        loop["elapsed"] = elapsed0 + row["wall_s"]
        if throttle.due():
            save()

    remaining_evals = None if budget.get("evals") is None else int(budget["evals"]) - optimizer.evals
    remaining_s = None if budget.get("seconds") is None else float(budget["seconds"]) - elapsed0
    if loop["stop_reason"] is None and _budget_left(optimizer, remaining_evals, remaining_s):
        res = minimize(fn, optimizer, max_evals=remaining_evals, max_seconds=remaining_s,
                       vectorized=bool(task.get("vectorized", False)), callback=record, progress=progress,
                       **_worker_kwargs(config))
        loop["stop_reason"], loop["elapsed"] = res.stop_reason, elapsed0 + res.wall_s
    else:
        loop["stop_reason"] = loop["stop_reason"] or ("max_evals" if remaining_evals is not None else "max_seconds")
    save()
    rows, best, thr = loop["rows"], optimizer.best, config.get("threshold")
    return {"method": label, "seed": seed, "best_value": num(best.value), "x": best.x, "evals": optimizer.evals,
            "wall_s": loop["elapsed"], "evals_to_threshold": first_reaching(rows, "best_value", thr, "evals", False),
            "seconds_to_threshold": first_reaching(rows, "best_value", thr, "wall_s", False),
            "extra": {"nonfinite": optimizer.nonfinite, "stop_reason": loop["stop_reason"]}}


def _budget_left(optimizer, evals: int | None, seconds: float | None) -> bool:
    """Whether one more generation fits (a resumed job may have stopped right at its budget)."""
    if seconds is not None and seconds <= 0:
        return False
    return evals is None or evals >= len(optimizer.ask_candidates())
