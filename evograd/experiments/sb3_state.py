"""A Stable-Baselines3 model's training state as plain data, so an sb3 job resumes instead of restarting.

SB3's own `save()` writes pickles, which evograd never loads from a run directory. What a run needs to go on
is all tensors, arrays and numbers: the modules' and optimizers' state_dicts (`get_parameters()`, plus the
tensors SB3 saves beside them, e.g. SAC's log_ent_coef), the replay buffer's filled rows, VecNormalize's
statistics, the counters the schedules read (num_timesteps, _n_updates, DQN's _n_calls and exploration
rate), and the random generators (torch, numpy's global one, the action space's). `evograd.core.serialization`
writes and reads that without unpickling.

Taken at an update boundary (SB3's on_rollout_start: after train(), before the next collection), a state
continues the run with the same parameters, optimizer moments, buffer and schedules. Not saved: the live envs
(reset with a seed drawn from the job seed and the step count, as evograd's own trainers do) and an action
noise process's state (TD3/DDPG's Ornstein-Uhlenbeck noise starts again from zero); so a resumed run is not
bit-identical to an uninterrupted one. Buffers other than SB3's ReplayBuffer / RolloutBuffer (HER, dict
observations) are not handled: such a job restarts, as all sb3 jobs did before.
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np

from ..core.serialization import StateError

VERSION = 1
COUNTERS = ("num_timesteps", "_n_updates", "_episode_num", "_n_calls", "exploration_rate",
            "_current_progress_remaining")
BUFFER_ARRAYS = ("observations", "next_observations", "actions", "rewards", "dones", "timeouts")


def supported(model) -> bool:
    """Whether this model's state can be taken: its buffer is a plain ReplayBuffer (without
    optimize_memory_usage, whose last transition's next observation lives in the row the resumed run's reset
    would overwrite) or RolloutBuffer."""
    from stable_baselines3.common.buffers import ReplayBuffer, RolloutBuffer

    buf = getattr(model, "replay_buffer", None)
    if buf is not None:
        return type(buf) is ReplayBuffer and not buf.optimize_memory_usage
    return type(getattr(model, "rollout_buffer", None)) in (RolloutBuffer, type(None))


def model_state(model, norm) -> dict[str, Any]:
    """The model's training state (see the module docstring) as plain data."""
    import torch

    names, variables = model._get_torch_save_params()
    state = {"version": VERSION, "algo": type(model).__name__,
             "modules": {name: _plain(_attr(model, name).state_dict()) for name in names},
             "variables": {name: _attr(model, name).detach().cpu().numpy().copy() for name in variables},
             "counters": {k: getattr(model, k) for k in COUNTERS if hasattr(model, k)},
             "rng": {"torch": torch.get_rng_state().numpy().copy(), "numpy": _np_global_state(),
                     "action_space": _space_rng(model.action_space)},
             "replay_buffer": _buffer_state(getattr(model, "replay_buffer", None)),
             "normalize": None if norm is None else _norm_state(norm)}
    return state


def load_model_state(model, norm, state: Any) -> None:
    """Put a `model_state` into a model built with the same settings; StateError when it does not fit."""
    import torch

    if not isinstance(state, dict) or state.get("version") != VERSION:
        raise StateError("not an sb3 model state of this version")
    if state.get("algo") != type(model).__name__:
        raise StateError(f"the state is of an {state.get('algo')} model; this job trains {type(model).__name__}")
    names, variables = model._get_torch_save_params()
    if sorted(state["modules"]) != sorted(names) or sorted(state["variables"]) != sorted(variables):
        raise StateError(f"the state holds {sorted(state['modules'])}; this model needs {sorted(names)}")
    try:
        for name in names:
            target = _attr(model, name)
            if isinstance(target, torch.optim.Optimizer):
                target.load_state_dict(_optimizer_state(state["modules"][name]))
            else:
                target.load_state_dict({k: torch.as_tensor(np.asarray(v)) for k, v in state["modules"][name].items()})
        with torch.no_grad():
            for name in variables:
                _attr(model, name).copy_(torch.as_tensor(np.asarray(state["variables"][name])))
    except (RuntimeError, KeyError, ValueError, TypeError) as exc:
        raise StateError(f"the state does not fit this model ({type(exc).__name__}: {str(exc)[:200]})") from None
    for k, v in state["counters"].items():
        if k not in COUNTERS or not _counter_ok(k, v):
            raise StateError(f"counter {k!r} = {v!r} in the state: the counters are {', '.join(COUNTERS)}, the "
                             "first four ints >= 0, exploration_rate in [0, 1], progress remaining finite")
        setattr(model, k, v)
    _load_buffer(getattr(model, "replay_buffer", None), state["replay_buffer"])
    if (norm is None) != (state["normalize"] is None):
        raise StateError("the state was saved with VecNormalize " + ("off" if norm is not None else "on"))
    if norm is not None:
        _load_norm(norm, state["normalize"])
    rng = state["rng"]
    torch.set_rng_state(torch.from_numpy(np.asarray(rng["torch"], dtype=np.uint8).copy()))
    np.random.set_state(_np_global_from(rng["numpy"]))
    if rng["action_space"] is not None and getattr(model.action_space, "np_random", None) is not None:
        model.action_space.np_random.bit_generator.state = rng["action_space"]


def _counter_ok(k: str, v: Any) -> bool:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return False
    if k in COUNTERS[:4]:
        return isinstance(v, int) and v >= 0
    if k == "exploration_rate":
        return 0.0 <= v <= 1.0
    return math.isfinite(v)  # progress remaining: below 0 once a rollout overshoots the budget


def _attr(obj, dotted: str):
    for part in dotted.split("."):
        obj = getattr(obj, part)
    return obj


def _plain(obj):
    """torch tensors -> numpy arrays, tuples -> lists, int keys -> str (an optimizer's state is keyed by ints)."""
    import torch

    if isinstance(obj, torch.Tensor):
        return obj.detach().cpu().numpy().copy()
    if isinstance(obj, dict):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    return obj


def _optimizer_state(plain: dict) -> dict:
    """A torch optimizer state_dict back from `_plain`: int keys, tensors, tuple betas."""
    import torch

    def tensors(v):
        return torch.as_tensor(np.asarray(v)) if isinstance(v, np.ndarray) else v

    groups = [{k: (tuple(v) if k == "betas" else v) for k, v in g.items()} for g in plain["param_groups"]]
    return {"state": {int(k): {n: tensors(v) for n, v in s.items()} for k, s in plain["state"].items()},
            "param_groups": groups}


def _np_global_state() -> dict:
    name, keys, pos, has_gauss, cached = np.random.get_state()
    return {"name": name, "keys": keys.copy(), "pos": int(pos), "has_gauss": int(has_gauss), "cached": float(cached)}


def _np_global_from(s: dict):
    return (s["name"], np.asarray(s["keys"], dtype=np.uint32), int(s["pos"]), int(s["has_gauss"]), float(s["cached"]))


def _space_rng(space) -> dict | None:
    gen = getattr(space, "_np_random", None)  # None until the space was first sampled or seeded
    return None if gen is None else gen.bit_generator.state


def _buffer_state(buf) -> dict | None:
    """The filled rows of a ReplayBuffer (all of them once it wrapped around), its position and fullness."""
    if buf is None:
        return None
    n = buf.buffer_size if buf.full else buf.pos
    arrays = {k: getattr(buf, k)[:n].copy() for k in BUFFER_ARRAYS if getattr(buf, k, None) is not None}
    return {"pos": int(buf.pos), "full": bool(buf.full), "buffer_size": int(buf.buffer_size), "arrays": arrays}


def _load_buffer(buf, state: dict | None) -> None:
    if (buf is None) != (state is None):
        raise StateError("the state's replay buffer does not match this model's")
    if buf is None:
        return
    if int(state["buffer_size"]) != buf.buffer_size:
        raise StateError(f"the state's replay buffer holds {state['buffer_size']} rows; this model's {buf.buffer_size}")
    pos, full = int(state["pos"]), bool(state["full"])
    n = buf.buffer_size if full else pos
    if not 0 <= pos < buf.buffer_size:
        raise StateError(f"replay buffer position {pos} outside 0..{buf.buffer_size - 1}")
    needed = {k for k in BUFFER_ARRAYS if getattr(buf, k, None) is not None}
    if set(state["arrays"]) != needed:
        raise StateError(f"the state's replay buffer holds {sorted(state['arrays'])}; this model's {sorted(needed)}")
    for k, a in state["arrays"].items():
        target = getattr(buf, k, None)
        a = np.asarray(a)
        if k not in BUFFER_ARRAYS or target is None or a.shape != (n, *target.shape[1:]):
            raise StateError(f"replay buffer array {k!r} of shape {a.shape} does not fit this model's buffer")
        target[:n] = a
    buf.pos, buf.full = pos, full


def _norm_stats(norm) -> tuple[str, ...]:
    """VecNormalize's running statistics: ret_rms always, obs_rms only when it normalizes observations."""
    return ("obs_rms", "ret_rms") if norm.norm_obs else ("ret_rms",)


def _norm_state(norm) -> dict:
    out = {}
    for key in _norm_stats(norm):
        rms = getattr(norm, key)
        out[key] = {"mean": np.array(rms.mean, dtype=np.float64), "var": np.array(rms.var, dtype=np.float64),
                    "count": float(rms.count)}
    return out  # the live episodes' discounted returns are not kept: their episodes start again


def _load_norm(norm, state: dict) -> None:
    if sorted(state) != sorted(_norm_stats(norm)):
        raise StateError(f"the state's VecNormalize statistics are {sorted(state)}; this run's "
                         f"{sorted(_norm_stats(norm))}")
    for key in _norm_stats(norm):
        rms, s = getattr(norm, key), state[key]
        mean, var = np.asarray(s["mean"], dtype=np.float64), np.asarray(s["var"], dtype=np.float64)
        if mean.shape != np.shape(rms.mean) or var.shape != np.shape(rms.var):
            raise StateError(f"VecNormalize {key} of shape {mean.shape} does not fit this env's {np.shape(rms.mean)}")
        count = s["count"]
        if not (np.all(np.isfinite(mean)) and np.all(np.isfinite(var)) and np.all(var >= 0)
                and isinstance(count, (int, float)) and np.isfinite(count) and count >= 0):
            raise StateError(f"VecNormalize {key} in the state is not finite statistics")
        rms.mean, rms.var, rms.count = mean, var, float(s["count"])
