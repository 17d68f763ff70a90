"""evograd.zo.tasks (digits, the models, the synthetic 10M task) and evograd.zo.compare, the core loop of
examples/zo_digits.py: forward passes charged as documented, a smoke run of two methods and of the script."""
from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from evograd.core.validation import ParameterError
from evograd.zo import compare, tasks

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "zo_digits.py"


def n_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def test_digits_split_shapes_standardization_and_reproducibility():
    pytest.importorskip("sklearn", reason="the digits data set ships with scikit-learn (the 'sklearn' extra)")
    a, b, c = tasks.digits(0), tasks.digits(0), tasks.digits(1)
    assert a.x_train.shape == (1437, 64) and a.x_test.shape == (360, 64) and a.features == 64
    assert a.x_train.dtype == torch.float32 and a.y_train.dtype == torch.int64
    assert torch.equal(a.x_train, b.x_train) and torch.equal(a.y_test, b.y_test)
    assert not torch.equal(a.y_test, c.y_test)
    mean, std = a.x_train.mean(dim=0), a.x_train.std(dim=0, unbiased=False)
    assert mean.abs().max() < 1e-5
    varying = std > 0  # constant pixels (always 0 in the training images) stay 0
    assert torch.allclose(std[varying], torch.ones(int(varying.sum())), atol=1e-4) and varying.sum() >= 60
    assert torch.equal(torch.bincount(a.y_test), torch.bincount(b.y_test)) and a.y_test.unique().numel() == 10


def test_digits_without_scikit_learn_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "sklearn", None)  # makes `import sklearn...` raise ImportError
    monkeypatch.setitem(sys.modules, "sklearn.datasets", None)
    with pytest.raises(ParameterError, match=r"pip install 'evograd\[sklearn\]'"):
        tasks.digits(0)


def test_model_sizes():
    assert n_params(tasks.digits_mlp()) == 4810 == tasks.mlp_parameters((64, 64, 10))
    assert n_params(tasks.digits_cnn()) == 3818
    assert tasks.digits_cnn()(torch.zeros(5, 64)).shape == (5, 10)
    with torch.device("meta"):  # no memory for the 10M parameters
        big = tasks.big_mlp()
    assert n_params(big) == tasks.mlp_parameters(tasks.BIG_SIZES) == 10_260_490 >= 10_000_000
    assert big[0].weight.is_meta


def test_synthetic_teacher_student_and_holdout():
    a, b = tasks.synthetic(3, n_train=500, n_test=100), tasks.synthetic(3, n_train=500, n_test=100)
    assert a.x_train.shape == (500, 256) and a.x_test.shape == (100, 256)
    assert torch.equal(a.x_train, b.x_train) and torch.equal(a.y_train, b.y_train)
    assert a.y_train.min() >= 0 and a.y_train.max() <= 9 and a.y_train.unique().numel() == 10
    v = tasks.holdout(a, 0.2)
    assert v.x_train.shape[0] == 400 and torch.equal(v.x_test, a.x_train[400:])


def test_batches_are_seeded_epochs_dropping_the_partial_batch():
    x, y = torch.arange(10.0).view(10, 1), torch.arange(10)
    batches = tasks.Batches(x, y, 3, seed=0)
    assert len(batches) == 3
    epoch = [yb for _, yb in batches]
    assert [len(yb) for yb in epoch] == [3, 3, 3] and len(torch.cat(epoch).unique()) == 9
    again = [yb for _, yb in tasks.Batches(x, y, 3, seed=0)]
    assert all(torch.equal(p, q) for p, q in zip(epoch, again))
    with pytest.raises(ParameterError):
        tasks.Batches(x, y, 11)


def test_meter_charges_forward_pass_equivalents():
    evals = []
    m = compare.Meter(10, [4], lambda: evals.append(1) or 0.5)
    m.add(forward=1, backward=1)  # a backprop step: 3
    assert m.spent == 3 and len(m.rows) == 1 and not m.done
    m.add(jvp=1)  # 6: crosses the checkpoint at 4
    assert len(m.rows) == 2 and m.rows[-1]["fwd_eq"] == 6 and m.rows[-1]["jvp"] == 1
    m.add(forward=4)
    assert m.done and m.rows[-1]["fwd_eq"] == 10 and len(evals) == 3


@pytest.mark.parametrize("method", ["adam", "mezo"])
def test_smoke_run_two_methods(method):
    split = tasks.synthetic(0, n_train=256, n_test=128, features=64)
    r = compare.run(method, tasks.digits_mlp, split, seed=0, budget=300, checkpoints=[30, 100], batch_size=32)
    assert r["fwd_eq"] >= 300 and r["rows"][-1]["fwd_eq"] == r["fwd_eq"] and len(r["rows"]) == 4
    if method == "adam":
        assert r["counts"]["forward"] == r["counts"]["backward"] == r["fwd_eq"] // 3
        assert r["rows"][-1]["test_acc"] > r["rows"][0]["test_acc"]
    else:
        assert r["counts"]["forward"] == r["fwd_eq"] and r["counts"]["backward"] == 0
    again = compare.run(method, tasks.digits_mlp, split, seed=0, budget=300, checkpoints=[30, 100], batch_size=32)
    assert [row["test_acc"] for row in again["rows"]] == [row["test_acc"] for row in r["rows"]]


def test_unknown_method_and_missing_scale_are_refused():
    split = tasks.synthetic(0, n_train=64, n_test=16, features=64)
    with pytest.raises(ParameterError, match="method"):
        compare.run("sgd", tasks.digits_mlp, split, seed=0, budget=10)
    with pytest.raises(ParameterError, match="no 'big' settings"):
        compare.run("cge", tasks.digits_mlp, split, seed=0, budget=10, scale="big")


@pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated")  # torch's own, at its first jvp
def test_the_example_script_writes_its_table_json_and_plot(tmp_path):
    pytest.importorskip("sklearn")
    pytest.importorskip("matplotlib")
    spec = importlib.util.spec_from_file_location("zo_digits", EXAMPLE)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    table = mod.main(["--methods", "adam", "rge", "--budget", "110", "--adam-budget", "30", "--out", str(tmp_path)])
    assert [t["method"] for t in table] == ["adam", "rge"] and table[0]["common"] == 30
    saved = json.loads((tmp_path / "comparison.json").read_text())
    assert {r["method"] for r in saved["runs"]} == {"adam", "rge"} and saved["meta"]["cost"]["backward"] == 2
    text = (tmp_path / "comparison.md").read_text()
    assert "| digits MLP 64-64-10 | rge |" in text and "90%: " in text and "95%: " in text
    assert (tmp_path / "comparison.png").stat().st_size > 1000
    assert np.isfinite(saved["meta"]["measured_cost_ratios"]["mlp"]["jvp"])
    again = tmp_path / "again"
    mod.main(["--from-json", str(tmp_path / "comparison.json"), "--out", str(again)])  # no training
    assert (again / "comparison.md").read_text() == text and (again / "comparison.png").exists()
