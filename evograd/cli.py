"""The `evograd` command: run, compare, report, eval, list, functions, schema."""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

DEFAULT_RUNS = "runs"


def _load(args) -> dict:
    from .experiments.config import load_config

    return load_config(args.config, args.set or [])


def _apply_worker_flags(config: dict, args) -> dict:
    """--workers/--dask override the config's `workers` section (also when resuming a run elsewhere)."""
    from .experiments.config import check_workers

    if args.workers is None and args.dask is None:
        return config
    w = dict(config.get("workers") or {})
    if args.workers is not None:
        w["n"] = args.workers
    if args.dask is not None:
        w["backend"], w["address"] = "dask", None if args.dask == "local" else args.dask
    return {**config, "workers": check_workers(w)}


def _apply_logging_flags(config: dict, args) -> dict:
    """--tensorboard [DIR] turns on the TensorBoard scalars of every job (the config's logging.tensorboard)."""
    if getattr(args, "tensorboard", None) is None:
        return config
    from .experiments.config_errors import validated
    from .experiments.config_models import Logging

    where = True if args.tensorboard is True else str(Path(args.tensorboard).resolve())
    logging = validated(Logging, {**(config.get("logging") or {}), "tensorboard": where}, "logging").model_dump()
    return {**config, "logging": logging}


def _meta() -> dict:
    return {"argv": sys.argv}


def _summarize(config: dict, out: Path, quiet: bool) -> str:
    from .experiments import report

    kind = "function" if "function" in config["task"] else "env"
    made = report.report(out, config.get("threshold"), task_kind=kind)
    from .experiments.html_report import write_html

    write_html(out, made["rows"], threshold=config.get("threshold"))  # report.html beside summary.md
    return Path(made["summary_md"]).read_text()


def _fresh_dir(name: str) -> Path:
    """runs/<name>, or runs/<name>-2, -3, ... when earlier runs are there (never overwrite results)."""
    base = Path(DEFAULT_RUNS) / name
    out, k = base, 2
    while out.exists() and any(out.iterdir()):
        out, k = base.with_name(f"{name}-{k}"), k + 1
    return out


def _check_checkpoints(out: Path) -> None:
    """Read every checkpoint of a run directory before resuming it: a damaged or hostile one stops the
    command with one line naming it (`StateError`), and nothing in the directory is touched."""
    from .core.serialization import load_state
    from .experiments.experiment import CHECKPOINT

    for path in sorted(Path(out).glob(f"*/seed*/{CHECKPOINT}")):
        load_state(path)


# ---------------------------------------------------------------------------------------------- compare
def _cmd_compare(args) -> int:
    from .experiments.compare import run_compare

    if args.resume and not args.config:
        config = json.loads((Path(args.resume) / "config.json").read_text())
        out = Path(args.resume)
    else:
        if not args.config:
            raise ValueError("compare needs a config file (or --resume RUN_DIR)")
        config = _load(args)
        out = Path(args.resume or args.out or _fresh_dir(config["name"]))
        if not args.resume and out.exists() and any(out.glob("*/seed*/result.json")):
            raise ValueError(f"{out} already holds results: pass --resume {out} to continue it, or another --out")
    config = _apply_logging_flags(_apply_worker_flags(config, args), args)
    from .experiments.compare import check_not_running
    from .experiments.config import dump_resolved

    check_not_running(config, out)  # a job left running (e.g. by a killed compare): refuse, naming its pid
    if args.resume:
        _check_checkpoints(out)  # before anything is started or written
    out.mkdir(parents=True, exist_ok=True)
    if not (args.resume and (out / "config.resolved.yaml").exists()):
        dump_resolved(config, out / "config.resolved.yaml", _meta())
    results = run_compare(config, out, resume=bool(args.resume), jobs=args.jobs, quiet=args.quiet)
    table = _summarize(config, out, args.quiet)
    print(table)
    print(f"\nRun directory: {out}  (summary.md, summary.csv, report.html, curves_*.png, <method>/seed<k>/)")
    return 0 if all(r.get("status") == "ok" for r in results) else 1


# ---------------------------------------------------------------------------------------------- report
def _cmd_report(args) -> int:
    """Rebuild summary.md/.csv and the curves of a run directory from its files; --html (or --out): also the
    self-contained page (evograd.experiments.html_report)."""
    from .experiments import report

    out = Path(args.run_dir)
    if not out.is_dir() or not any(out.glob("*/seed*")):
        raise ValueError(f"{out} is not a run directory (no <method>/seed<k>/ folders in it)")
    made = report.report(out, args.threshold)
    print(Path(made["summary_md"]).read_text())
    if args.html or args.out:
        from .experiments.html_report import write_html

        print(f"wrote {write_html(out, made['rows'], path=args.out, threshold=args.threshold)}")
    return 0


# ---------------------------------------------------------------------------------------------- run
def _cmd_run(args) -> int:
    from .experiments.experiment import job_dir, run_job

    if args.resume and not args.config:
        config = json.loads((Path(args.resume) / "config.json").read_text())
    else:
        if not args.config:
            raise ValueError("run needs a config file (or --resume RUN_DIR)")
        config = _load(args)
    config = _apply_logging_flags(_apply_worker_flags(config, args), args)
    if args.method:
        if args.method not in (config.get("methods") or {}):
            raise ValueError(f"method {args.method!r} is not in the config's methods "
                             f"({', '.join(config.get('methods') or {}) or 'none'})")
        label, block = args.method, config["methods"][args.method]
    elif config.get("optimizer"):  # the config's own single-method block (what --set optimizer.* changes)
        label, block = config["optimizer"]["name"], config["optimizer"]
    else:
        label = next(iter(config["methods"]))
        block = config["methods"][label]
    config = {**config, "methods": {label: dict(block)}}
    seeds = [args.seed] if args.seed is not None else list(config["seeds"])[:1]
    config["seeds"] = seeds
    out = Path(args.resume or args.out or _fresh_dir(config["name"]))
    from .parallel.joblock import JobLock, check_free

    for seed in seeds:  # a job still running in this directory (a `compare` job, another `run`): refuse
        check_free(job_dir(out, label, seed))
    if args.resume:
        _check_checkpoints(out)  # before anything is written
    out.mkdir(parents=True, exist_ok=True)
    from .experiments.config import dump_resolved

    if not (args.resume and (out / "config.json").exists()):  # a resumed run keeps the files it was started with
        (out / "config.json").write_text(json.dumps(config, indent=2))
        dump_resolved(config, out / "config.resolved.yaml", _meta())
    status = 0
    for seed in seeds:
        if not args.quiet:
            print(f"{config['name']}: {label}, seed {seed} -> {job_dir(out, label, seed)}", flush=True)
        with JobLock(job_dir(out, label, seed)):  # held while the job runs: no second process starts it
            res = run_job(config, label, seed, out, resume=bool(args.resume), progress=not args.quiet)
        if res["status"] != "ok":
            print(f"evograd: job failed: {res['error']}\n{res.get('traceback', '')}", file=sys.stderr)
            status = 1
        else:
            keys = ("best_eval_return", "final_eval_return", "env_steps", "best_value", "evals", "wall_s",
                    "steps_to_threshold", "seconds_to_threshold", "evals_to_threshold")
            print(json.dumps({k: res[k] for k in keys if k in res}))
    from .experiments.runmeta import record_session

    # run_meta.json (versions, git revision, machine: report.html) is written once the jobs returned, not at
    # the start: a resume refused by a checkpoint that fails only when applied (a hostile CMA-ES engine) must
    # leave the directory untouched
    record_session(out, bool(args.resume))
    if status == 0 and not args.quiet:
        print(_summarize(config, out, args.quiet))
    return status


# ---------------------------------------------------------------------------------------------- eval
def _cmd_eval(args) -> int:
    import gymnasium as gym
    import numpy as np

    from .gym.policies import load_policy

    policy, meta = load_policy(args.checkpoint)
    env_id = args.env or meta.get("env")
    if not env_id:
        raise ValueError(f"{args.checkpoint} does not record its env; pass --env ID")
    kwargs = dict(meta.get("env_kwargs") or {})
    if meta.get("max_episode_steps"):
        kwargs["max_episode_steps"] = meta["max_episode_steps"]
    if args.video:
        modes = gym.spec(env_id).kwargs.get("render_modes") or getattr(
            gym.make(env_id, **kwargs).unwrapped, "metadata", {}).get("render_modes", [])
        if "rgb_array" not in modes:
            raise ValueError(f"{env_id} cannot render frames (render modes: {modes or 'none'}); drop --video")
        env = gym.make(env_id, render_mode="rgb_array", **kwargs)
    else:
        env = gym.make(env_id, **kwargs)
    returns, frames = [], []
    for ep in range(args.episodes):
        obs, _ = env.reset(seed=args.seed + ep)
        total, done = 0.0, False
        while not done:
            if args.video and ep == 0:
                frames.append(env.render())
            obs, r, term, trunc, _ = env.step(policy.act(obs))
            total += float(r)
            done = term or trunc
        returns.append(total)
    env.close()
    r = np.array(returns)
    print(json.dumps({"checkpoint": str(args.checkpoint), "env": env_id, "episodes": args.episodes,
                      "mean": float(r.mean()), "std": float(r.std()), "min": float(r.min()), "max": float(r.max()),
                      "returns": [round(x, 3) for x in returns]}))
    if args.video:
        from .gym.video import write_video

        write_video(frames, args.video, fps=args.fps)
        print(f"wrote {args.video} ({len(frames)} frames of episode 0)")
    return 0


# ---------------------------------------------------------------------------------------------- list
def _cmd_list(args) -> int:
    import gymnasium as gym

    from .core import functions as F
    from .optim.registry import available, get, hyperparameters, usable

    print("optimizers (evograd.make(name, ...) / config `name:`):")
    for name in available():
        params = [p for p in hyperparameters(get(name)) if p not in ("x0", "seed", "maximize")]
        note = "" if usable(name) else f"  [needs pip install 'evograd[{get(name).requires}]']"
        print(f"  {name:10s} {', '.join(params)}{note}")
    print("  ppo        evograd.train_ppo (SB3 hyperparameter names)")
    print("  reinforce  evograd.train_reinforce")
    from importlib.util import find_spec

    sb3_note = "" if find_spec("stable_baselines3") else "  [needs pip install 'evograd[sb3]']"
    print(f"  sb3        Stable-Baselines3: algo PPO, A2C, SAC, TD3, DQN; hyperparams zoo or a mapping{sb3_note}")
    print("envs (evograd's own):")
    for env_id in sorted(i for i in gym.registry if i.startswith("evograd/")):
        print(f"  {env_id}")
    print("  ...and every Gymnasium id (CartPole-v1, LunarLander-v3, HalfCheetah-v5, ...)")
    print("benchmark functions (evograd functions):\n  " + ", ".join(F.FUNCTIONS))
    cfg_dir = Path(args.configs)
    if cfg_dir.is_dir():
        print(f"configs ({cfg_dir}/):")
        for path in sorted(cfg_dir.glob("*.yaml")):
            first = next((ln.lstrip("# ").strip() for ln in path.read_text().splitlines() if ln.startswith("#")), "")
            print(f"  {path.name:28s} {first}")
    return 0


# ---------------------------------------------------------------------------------------------- functions
def _cmd_functions(args) -> int:
    from .experiments.functions import compare, format_table

    results = compare(
        optimizers=args.optimizers, functions=args.functions, dim=args.dim, seeds=args.seeds,
        max_evals=args.max_evals, n_jobs=args.n_jobs, progress=not args.quiet,
    )
    print(f"\nBest value reached in {args.max_evals:,} evaluations, d={args.dim}, x0 = 2*ones, {args.seeds} seeds "
          f"(solved: best value <= 1e-3)\n")
    print(format_table(results))
    return 1 if any(r.error for r in results) else 0


# ---------------------------------------------------------------------------------------------- schema
def _cmd_schema(args) -> int:
    from .experiments.config import schema

    print(json.dumps(schema(), indent=args.indent))
    return 0


def _add_report_parser(sub) -> None:
    p = sub.add_parser("report", help="rebuild a run directory's summary.md/.csv and plots; --html: one page")
    p.add_argument("run_dir", metavar="RUN_DIR", help="a directory written by compare or run")
    p.add_argument("--threshold", type=float, help="threshold for the to-threshold columns (default: the config's)")
    p.add_argument("--html", action="store_true",
                   help="also write one self-contained HTML page (tables, plots, config, versions, machine)")
    p.add_argument("--out", metavar="FILE", help="where the HTML page goes (default: RUN_DIR/report.html; implies "
                   "--html)")
    p.set_defaults(func=_cmd_report)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="evograd", description="Evolution strategies, CMA-ES, GA, CBO and PPO on the same policies, one protocol.")
    sub = parser.add_subparsers(dest="command", required=True)

    def common(p, config_optional=True):
        p.add_argument("config", nargs="?" if config_optional else None, help="YAML experiment config")
        p.add_argument("--set", action="append", metavar="KEY=VALUE",
                       help="override any config key, e.g. --set optimizer.sigma=0.05 (repeatable)")
        p.add_argument("--out", help=f"run directory (default: {DEFAULT_RUNS}/<name>, or <name>-2, ... if taken)")
        p.add_argument("--resume", metavar="RUN_DIR", help="continue a killed run from its last checkpoints")
        p.add_argument("--quiet", action="store_true", help="no progress bars")
        p.add_argument("--workers", type=int, metavar="N",
                       help="worker processes per run (workers.n; with --dask local: the local cluster's size)")
        p.add_argument("--dask", metavar="ADDRESS",
                       help="evaluate on a Dask cluster: a scheduler address (tcp://host:8786) or 'local'")
        p.add_argument("--tensorboard", nargs="?", const=True, metavar="DIR",
                       help="TensorBoard scalars of every job, in its run folder or in DIR/<label>/seed<k> (the "
                            "config's logging.tensorboard; needs the tensorboard extra)")

    p = sub.add_parser("compare", help="run every method x seed of a config in parallel; table + plots")
    common(p)
    p.add_argument("--jobs", type=int, help="parallel jobs (default: the config's `jobs`)")
    p.set_defaults(func=_cmd_compare)

    p = sub.add_parser("run", help="train one method (the config's `optimizer`, or --method) for one seed")
    common(p)
    p.add_argument("--method", help="a label from the config's methods")
    p.add_argument("--seed", type=int, help="seed (default: the config's first seed)")
    p.set_defaults(func=_cmd_run)

    _add_report_parser(sub)
    p = sub.add_parser("eval", help="evaluate a saved policy (best.pt): returns, optional video")
    p.add_argument("checkpoint", help="a best.pt written by run/compare")
    p.add_argument("--episodes", type=int, default=10)
    p.add_argument("--seed", type=int, default=12345, help="first episode's reset seed")
    p.add_argument("--env", help="env id (default: the one recorded in the checkpoint)")
    p.add_argument("--video", metavar="PATH", help="write episode 0 as a .gif (or .mp4 with the [video] extra)")
    p.add_argument("--fps", type=int, default=30)
    p.set_defaults(func=_cmd_eval)

    p = sub.add_parser("list", help="optimizers, envs and configs")
    p.add_argument("--configs", default="configs", help="folder of configs to list")
    p.set_defaults(func=_cmd_list)

    p = sub.add_parser("functions", help="every optimizer on the benchmark functions (quick sanity table)")
    p.add_argument("--optimizers", nargs="+", default=None, help="names (default: all registered)")
    p.add_argument("--functions", nargs="+", default=None, help="sphere rosenbrock rastrigin ackley (default: all)")
    p.add_argument("--dim", type=int, default=10)
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--max-evals", type=int, default=10_000)
    p.add_argument("--n-jobs", type=int, default=2, help="parallel runs (joblib workers)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_functions)

    p = sub.add_parser("schema", help="print the JSON schema of experiment configs (sections and method blocks)")
    p.add_argument("--indent", type=int, default=2, help="JSON indentation (default: 2)")
    p.set_defaults(func=_cmd_schema)
    return parser


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    sys.path.insert(0, os.getcwd())  # "module:attribute" references in configs resolve from here
    args = build_parser().parse_args(argv)
    if getattr(args, "config", 0) is None and str(getattr(args, "tensorboard", None)).endswith((".yaml", ".yml")):
        args.config, args.tensorboard = args.tensorboard, True  # `--tensorboard CONFIG`: the flag without a DIR
    try:
        return args.func(args)
    except ModuleNotFoundError as exc:
        extra = _EXTRAS.get((exc.name or "").split(".")[0])
        if extra is None:
            raise
        print(f"evograd: error: this needs {exc.name}, which is not installed: pip install 'evograd[{extra}]'",
              file=sys.stderr)
        return 2
    except (ValueError, RuntimeError, OSError, KeyError) as exc:
        print(f"evograd: error: {exc}", file=sys.stderr)
        return 2


# the optional extra that brings each optional package (pyproject.toml's optional-dependencies)
_EXTRAS = {"torch": "rl", "gymnasium": "rl", "pygame": "rl", "Box2D": "box2d", "mujoco": "mujoco",
           "matplotlib": "plots", "distributed": "dask", "dask": "dask", "imageio": "video", "evotorch": "evotorch",
           "stable_baselines3": "sb3", "tensorboard": "tensorboard"}


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
