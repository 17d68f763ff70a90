"""Live TensorBoard scalars (the tensorboard extra): every kind of job writes its progress rows as scalars, read
back here with TensorBoard's own EventAccumulator."""
import csv
import math
import sys
import textwrap

import pytest

pytest.importorskip("tensorboard", reason="TensorBoard scalars need the tensorboard extra")

from tensorboard.backend.event_processing.event_accumulator import EventAccumulator  # noqa: E402

from evograd.experiments.config import ConfigError, load_config  # noqa: E402
from evograd.experiments.experiment import run_job  # noqa: E402

ENV_TAGS = {"generation", "eval_env_steps", "wall_s", "eval_return", "eval_return_std", "return_mean", "return_max"}
CARTPOLE = """\
task: {env: {id: CartPole-v1}}
budget: {env_steps: 1024}
evaluation: {every: 512, episodes: 2}
policy: {type: mlp, hidden_sizes: [8]}
logging: {tensorboard: true}
methods:
  cmaes: {name: cmaes, popsize: 8}
  ppo: {name: ppo, n_envs: 2, n_steps: 128, batch_size: 64}
  sb3: {name: sb3, algo: PPO, hyperparams: {n_envs: 2, n_steps: 128, batch_size: 64}}
"""
LQR = """\
task: {env: {id: evograd/LQR-v0, kwargs: {state_dim: 2, action_dim: 1, horizon: 20}}}
policy: {type: linear, bias: false}
budget: {env_steps: 400}
evaluation: {every: 200, episodes: 2}
logging: {tensorboard: true}
methods:
  adam: {name: adam, lr: 0.01, episodes: 2}
"""
SPHERE = """\
task: {function: {fn: "evograd.core.functions:sphere", dim: 3, x0: 1.0}}
budget: {evals: 300}
seeds: 1
methods:
  cmaes: {name: cmaes, popsize: 10}
"""


@pytest.fixture(autouse=True)
def _isolated(tmp_path, monkeypatch):
    monkeypatch.setattr(sys, "path", list(sys.path))
    monkeypatch.chdir(tmp_path)


def write(tmp_path, text, name="exp.yaml"):
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def scalars(folder) -> dict[str, list[tuple[int, float]]]:
    acc = EventAccumulator(str(folder))
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


def progress(folder) -> list[dict]:
    with open(folder / "progress.csv") as fh:
        return list(csv.DictReader(fh))


def assert_rows_are_scalars(folder, step_key: str, tags: set[str]) -> None:
    got, rows = scalars(folder), progress(folder)
    assert tags <= set(got), (sorted(got), tags)
    for tag in tags:  # each finite value of the column, at its row's step, once
        want = [(int(r[step_key]), float(r[tag])) for r in rows if r[tag] != "" and math.isfinite(float(r[tag]))]
        assert [(s, pytest.approx(v, rel=1e-6)) for s, v in want] == got[tag], tag


@pytest.mark.parametrize("text, label", [
    (CARTPOLE, "cmaes"), (CARTPOLE, "ppo"), (CARTPOLE, "sb3"), (LQR, "adam")], ids=["es", "ppo", "sb3", "gradient"])
def test_every_kind_of_env_job_writes_its_rows_as_scalars(tmp_path, text, label):
    if label == "sb3":
        pytest.importorskip("stable_baselines3", reason="sb3 methods need the sb3 extra")
    else:
        text = text.replace("  sb3: {name: sb3, algo: PPO, hyperparams: {n_envs: 2, n_steps: 128, batch_size: 64}}\n",
                            "")
    cfg = load_config(write(tmp_path, text))
    res = run_job(cfg, label, 0, tmp_path / "out")
    assert res["status"] == "ok", res.get("traceback")
    folder = tmp_path / "out" / label / "seed0"
    assert_rows_are_scalars(folder, "env_steps", ENV_TAGS)
    evals = scalars(folder)["eval_return"]
    assert evals[0][0] == 0 and evals[-1][0] == res["env_steps"]  # from the initial policy to the last one


def test_a_compare_writes_each_jobs_scalars_into_its_run_folder(tmp_path):
    from evograd.experiments.compare import run_compare

    cfg = load_config(write(tmp_path, SPHERE + "logging: {tensorboard: true}\n"))
    assert cfg["logging"] == {"tensorboard": True}
    [res] = run_compare(cfg, tmp_path / "run", quiet=True)
    assert res["status"] == "ok", res
    folder = tmp_path / "run" / "cmaes" / "seed0"
    assert_rows_are_scalars(folder, "evals", {"best_value", "gen_mean", "wall_s", "generation"})
    assert scalars(folder)["best_value"][-1][0] == res["evals"]


def test_the_cli_flag_takes_a_folder_and_a_resumed_job_shows_each_step_once(tmp_path):
    from evograd.cli import main

    path = write(tmp_path, SPHERE)
    assert main(["run", str(path), "--out", "r", "--quiet", "--tensorboard", "tb"]) == 0
    folder = tmp_path / "tb" / "cmaes" / "seed0"  # DIR/<label>/seed<k>
    first = scalars(folder)["best_value"]
    assert first and len({s for s, _ in first}) == len(first)
    assert "tensorboard: " + str(tmp_path / "tb") in (tmp_path / "r" / "config.resolved.yaml").read_text()
    assert main(["run", "--resume", "r", "--quiet"]) == 0  # the whole history written again, purging the old
    assert len(list(folder.glob("events.out.tfevents.*"))) == 2 and scalars(folder)["best_value"] == first
    assert main(["run", "--quiet", "--tensorboard", str(path), "--out", "r2"]) == 0  # no DIR: the run folder
    assert scalars(tmp_path / "r2" / "cmaes" / "seed0")["best_value"] == first


def test_a_missing_tensorboard_names_the_extra(tmp_path, monkeypatch, capsys):
    from evograd.cli import main
    from evograd.experiments import scalars as tb

    monkeypatch.setitem(sys.modules, "tensorboard", None)
    with pytest.raises(ConfigError, match=r"logging.tensorboard: TensorBoard scalars need the tensorboard package, "
                                          r"which is not installed: pip install 'evograd\[tensorboard\]'"):
        load_config(write(tmp_path, SPHERE + "logging: {tensorboard: true}\n"))
    assert main(["run", str(write(tmp_path, SPHERE)), "--out", "r", "--quiet", "--tensorboard"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "pip install 'evograd[tensorboard]'" in err, err
    with pytest.raises(ModuleNotFoundError, match=r"evograd\[tensorboard\]"):
        with tb.session({"logging": {"tensorboard": True}}, "m", 0, tmp_path):
            pass
    load_config(write(tmp_path, SPHERE + "logging: {tensorboard: false}\n"))  # off: nothing is needed
