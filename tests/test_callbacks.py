"""The one callback form, `callback(row) -> bool | None`, and its one stop rule, in every loop: minimize, train,
train_ppo and train_reinforce. True stops after that generation (or update), None and False continue, anything
else is an error naming the callback; the old `callback(optimizer, row)` warns and still works."""
from __future__ import annotations

import functools
import math

import numpy as np
import pytest

import evograd as eg
from evograd.core.callbacks import CallbackReturnError, takes_optimizer_and_row
from evograd.core.validation import ParameterError
from evograd.optim.base import Optimizer

TINY_PPO = dict(n_envs=2, n_steps=32, batch_size=32, n_epochs=2, eval_every=10**9, eval_episodes=2)


def _minimize(callback, max_generations=8):
    return eg.minimize(eg.functions.sphere, eg.make("snes", x0=np.ones(3), seed=0), max_generations=max_generations,
                       callback=callback)


def _train(callback, max_generations=4):
    problem = eg.GymProblem("CartPole-v1", policy="linear", episodes=1, seed=0, n_jobs=1)
    try:
        return eg.train(problem, eg.make("snes", x0=problem.initial_params(), popsize=6, seed=0),
                        max_generations=max_generations, eval_episodes=2, eval_every=10**9, callback=callback)
    finally:
        problem.close()


def _ppo(callback, updates=3):
    return eg.train_ppo("CartPole-v1", policy="linear", seed=0, max_env_steps=updates * 64, callback=callback,
                        **TINY_PPO)


def _reinforce(callback, steps=600):
    return eg.train_reinforce("CartPole-v1", policy="linear", seed=0, max_env_steps=steps, n_episodes=2,
                              eval_every=10**9, eval_episodes=2, callback=callback)


# (run(callback, <a budget of several generations>), the budget's stop reason)
LOOPS = {"minimize": (_minimize, "max_generations"), "train": (_train, "max_generations"),
         "train_ppo": (_ppo, "max_env_steps"), "train_reinforce": (_reinforce, "max_env_steps")}


def _generations(result) -> list[int]:
    return [int(r["generation"]) for r in result.history]


@pytest.mark.parametrize("loop", LOOPS)
def test_true_stops_after_that_generation_with_its_row(loop):
    run, _ = LOOPS[loop]
    seen = []

    def stop_at_two(row):
        seen.append(row)
        return row["generation"] == 2 or None

    res = run(stop_at_two)
    assert res.stop_reason == "callback"
    assert _generations(res)[-1] == 2 and seen[-1] is res.history[-1]  # the row is the history row
    if loop != "minimize":  # trainers evaluate the policy they stop with
        assert not math.isnan(res.history[-1]["eval_return"])


@pytest.mark.parametrize("loop", LOOPS)
@pytest.mark.parametrize("value", [None, False, np.False_])
def test_none_and_false_continue_to_the_budget(loop, value):
    run, budget = LOOPS[loop]
    calls = []
    res = run(lambda row: calls.append(row["generation"]) or value)
    assert res.stop_reason == budget and len(calls) >= 3
    assert calls == [g for g in _generations(res) if g > 0]  # once per generation, after it


@pytest.mark.parametrize("loop", LOOPS)
def test_numpy_true_stops_like_true(loop):
    run, _ = LOOPS[loop]
    res = run(lambda row: np.float64(row["generation"]) >= 1)  # a comparison of numpy numbers
    assert res.stop_reason == "callback" and _generations(res)[-1] == 1


@pytest.mark.parametrize("loop", LOOPS)
@pytest.mark.parametrize("value", [1, "stop", 0, np.array([True])])
def test_any_other_return_value_is_an_error_naming_the_callback(loop, value):
    run, _ = LOOPS[loop]

    def my_callback(row):
        return value

    with pytest.raises(CallbackReturnError, match=rf"my_callback given to {loop} returned .*True to stop"):
        run(my_callback)


@pytest.mark.parametrize("loop", LOOPS)
def test_the_old_optimizer_row_form_warns_and_still_works(loop):
    run, _ = LOOPS[loop]
    got = []

    def old(optimizer, row):
        got.append(optimizer)
        return row["generation"] >= 2

    with pytest.warns(DeprecationWarning, match=r"callback\(row\) -> bool \| None") as caught:
        res = run(old)
    assert caught[0].filename == __file__  # points at the call of the trainer, not inside evograd
    assert res.stop_reason == "callback" and _generations(res)[-1] == 2
    assert got and all(isinstance(o, Optimizer) for o in got) and len({id(o) for o in got}) == 1


@pytest.mark.parametrize("loop", LOOPS)
def test_a_callback_that_is_not_callable_is_refused_before_the_run(loop):
    run, _ = LOOPS[loop]
    with pytest.raises(ParameterError, match=rf"The 'callback' parameter of {loop} must be callable"):
        run("stop")


def test_the_arity_rule():
    def one(row): ...
    def two(opt, row): ...
    def defaulted(row, extra=None): ...
    def star(*args): ...

    class Stopper:
        def __call__(self, row): ...

    assert [takes_optimizer_and_row(f) for f in (one, two, defaulted, star, Stopper(), print)] == [
        False, True, False, False, False, False]
    assert takes_optimizer_and_row(functools.partial(lambda a, b, c: None, 1))
