"""Torch policies shared by every trainer (ES, CMA-ES, CBO, PPO), plus their flat parameter view.

Every optimizer sees a policy as one float64 vector (`get_flat_params` / `set_flat_params`), so the same
network is trained by population methods and by PPO and comparisons stay fair. Observation normalization
(ARS V2) lives in buffers of the policy, outside the flat vector: its statistics are not searched, they are
measured during rollouts, merged across workers (`RunningMeanStd.merge`) and frozen while a generation is
evaluated so that every member of a population sees the same normalization.
"""
from __future__ import annotations

import itertools
import json
import os
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from ..core.running_stats import STD_FLOOR, RunningMeanStd
from ..core.validation import ParameterError, check_memory

_ACTIVATIONS = {"tanh": nn.Tanh, "relu": nn.ReLU, "elu": nn.ELU, "gelu": nn.GELU, "identity": nn.Identity}


def _space_dims(observation_space, action_space) -> tuple[int, int, bool]:
    from gymnasium import spaces

    if not isinstance(observation_space, spaces.Box):
        raise ParameterError(
            f"evograd policies need a Box observation space; got {observation_space!r}. "
            "Wrap the env (e.g. gymnasium.wrappers.FlattenObservation) to get a flat Box."
        )
    obs_dim = int(np.prod(observation_space.shape))
    if isinstance(action_space, spaces.Discrete):
        return obs_dim, int(action_space.n), True
    if isinstance(action_space, spaces.Box):
        return obs_dim, int(np.prod(action_space.shape)), False
    raise ParameterError(f"evograd policies support Discrete and Box action spaces; got {action_space!r}.")


def space_to_data(space) -> dict[str, Any]:
    """A Box/Discrete space as plain data (json-safe), so checkpoints load with weights_only=True."""
    from gymnasium import spaces

    if isinstance(space, spaces.Discrete):
        return {"type": "Discrete", "n": int(space.n), "start": int(space.start)}
    if isinstance(space, spaces.Box):
        return {
            "type": "Box",
            "shape": list(space.shape),
            "dtype": str(space.dtype),
            "low": [float(v) for v in np.asarray(space.low, dtype=np.float64).ravel()],
            "high": [float(v) for v in np.asarray(space.high, dtype=np.float64).ravel()],
        }
    raise ParameterError(f"cannot store space {space!r}: only Box and Discrete are supported")


def space_from_data(d: dict[str, Any]):
    from gymnasium import spaces

    if d["type"] == "Discrete":
        return spaces.Discrete(d["n"], start=d["start"])
    shape = tuple(d["shape"])
    low = np.array(d["low"], dtype=d["dtype"]).reshape(shape)
    high = np.array(d["high"], dtype=d["dtype"]).reshape(shape)
    return spaces.Box(low=low, high=high, shape=shape, dtype=np.dtype(d["dtype"]))


class Policy(nn.Module):
    """A network mapping flat observations to logits (Discrete) or a pre-squash action mean (Box).

    `kind` is "linear", "mlp" or "custom"; the rollout engine uses it to pick a fast numpy path for
    linear policies. `spec` is the make_policy keyword set (spaces excluded) as plain data, which is
    what a worker process needs to rebuild the same policy. Its state is torch's `state_dict()` /
    `load_state_dict()`: the weights and, as buffers, the observation statistics and clip.
    """

    def __init__(self, net: nn.Module, observation_space, action_space, kind: str, spec: dict, obs_norm: bool,
                 box_head: str):
        super().__init__()
        self.obs_dim, self.act_dim, self.discrete = _space_dims(observation_space, action_space)
        self.observation_space = observation_space
        self.action_space = action_space
        self.net = net
        self.kind = kind
        self.spec = dict(spec)
        self.box_head = box_head
        self.register_buffer("obs_norm_enabled", torch.tensor(bool(obs_norm)))
        self.register_buffer("obs_mean", torch.zeros(self.obs_dim, dtype=torch.float64))
        self.register_buffer("obs_var", torch.ones(self.obs_dim, dtype=torch.float64))
        self.register_buffer("obs_count", torch.zeros((), dtype=torch.float64))
        # normalized observations are clipped to +-obs_clip (inf: no clip, as ARS; PPO's VecNormalize uses 10)
        self.register_buffer("obs_clip", torch.tensor(float("inf"), dtype=torch.float64))
        if not self.discrete:
            low = np.asarray(action_space.low, dtype=np.float64).ravel()
            high = np.asarray(action_space.high, dtype=np.float64).ravel()
            self.register_buffer("act_low", torch.from_numpy(low))
            self.register_buffer("act_high", torch.from_numpy(high))

    @property
    def obs_norm(self) -> bool:
        return bool(self.obs_norm_enabled)

    def normalize(self, obs: torch.Tensor) -> torch.Tensor:
        """Frozen ARS-V2 normalization with the stored statistics (never updated here)."""
        if not self.obs_norm:
            return obs
        std = torch.sqrt(self.obs_var)
        std = torch.where(std < STD_FLOOR, torch.ones_like(std), std)
        z = (obs.to(torch.float64) - self.obs_mean) / std
        if torch.isfinite(self.obs_clip):
            z = torch.clamp(z, -self.obs_clip, self.obs_clip)
        return z.to(obs.dtype)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        dtype = next(self.net.parameters(), torch.empty((), dtype=torch.float32)).dtype
        obs = torch.as_tensor(obs).to(dtype).reshape(-1, self.obs_dim)
        return self.net(self.normalize(obs))

    def squash(self, mean: torch.Tensor) -> torch.Tensor:
        """Pre-squash Box output -> action inside the bounds (clip, or tanh scaled to [low, high])."""
        low, high = self.act_low.to(mean.dtype), self.act_high.to(mean.dtype)
        if self.box_head == "tanh":
            return low + (torch.tanh(mean) + 1.0) * 0.5 * (high - low)
        return torch.clamp(mean, low, high)

    @torch.no_grad()
    def act(self, obs: np.ndarray, deterministic: bool = True) -> np.ndarray:
        """Actions for one observation (obs_dim,) or a batch (B, obs_dim), in the env's own format.

        Deterministic: argmax of the logits (Discrete) or the squashed mean (Box), the way ES evaluates.
        Stochastic (Discrete only, or Box when the network carries a `log_std` parameter, as PPO's does).
        """
        obs = np.asarray(obs)
        single = obs.ndim == len(self.observation_space.shape) and obs.size == self.obs_dim
        out = self.forward(torch.as_tensor(obs.reshape(-1, self.obs_dim)))
        if self.discrete:
            if deterministic:
                idx = torch.argmax(out, dim=-1)
            else:
                idx = torch.distributions.Categorical(logits=out).sample()
            acts = idx.numpy().astype(np.int64) + int(self.action_space.start)
            return acts[0] if single else acts
        if not deterministic:
            log_std = getattr(self.net, "log_std", None)
            if log_std is None:
                raise ValueError("act(deterministic=False) on a Box policy needs a 'log_std' parameter on the "
                                 "network; ES policies are deterministic")
            out = out + torch.randn_like(out) * torch.exp(log_std)
        acts = self.squash(out).numpy().astype(self.action_space.dtype, copy=False)
        acts = acts.reshape((-1,) + tuple(self.action_space.shape))
        return acts[0] if single else acts

    def set_obs_stats(self, rms: RunningMeanStd, clip: float | None = None) -> None:
        """Freeze these statistics into the policy; `clip` bounds the normalized observations (None: keep)."""
        if rms.shape != (self.obs_dim,):
            raise ValueError(f"observation statistics have shape {rms.shape}; this policy needs ({self.obs_dim},)")
        with torch.no_grad():
            if clip is not None:
                self.obs_clip.fill_(float(clip))
            self.obs_mean.copy_(torch.from_numpy(rms.mean))
            self.obs_var.copy_(torch.from_numpy(rms.var))
            self.obs_count.fill_(rms.count)

    def get_obs_stats(self) -> RunningMeanStd:
        """A copy of the frozen statistics (they travel in the module's `state_dict()` as buffers)."""
        return RunningMeanStd.from_state_dict(
            {"count": float(self.obs_count), "mean": self.obs_mean.double().numpy(),
             "var": self.obs_var.double().numpy()}
        )


def _mlp(obs_dim: int, act_dim: int, hidden_sizes: Sequence[int], activation: str, bias: bool) -> nn.Sequential:
    layers: list[nn.Module] = []
    sizes = [obs_dim, *hidden_sizes]
    for a, b in itertools.pairwise(sizes):
        lin = nn.Linear(a, b, bias=bias)
        nn.init.orthogonal_(lin.weight, gain=np.sqrt(2))  # CleanRL/PPO initialisation
        if bias:
            nn.init.zeros_(lin.bias)
        layers += [lin, _ACTIVATIONS[activation]()]
    head = nn.Linear(sizes[-1], act_dim, bias=bias)
    nn.init.orthogonal_(head.weight, gain=0.01)  # near-uniform initial action distribution
    if bias:
        nn.init.zeros_(head.bias)
    layers.append(head)
    return nn.Sequential(*layers)


def make_policy(policy: str | nn.Module = "linear", observation_space=None, action_space=None,
                hidden_sizes: Sequence[int] = (64, 64), activation: str = "tanh", obs_norm: bool = False,
                box_head: str = "clip", bias: bool = True) -> Policy:
    """Build a Policy for the given spaces.

    Parameters
    ----------
    policy : "linear" (W x + b, zero-initialised: the ARS starting point), "mlp" (orthogonal init as in
        PPO), or a torch module mapping (B, obs_dim) -> (B, act_dim).
    hidden_sizes, activation : MLP layout; activation in tanh, relu, elu, gelu, identity.
    obs_norm : normalize observations with frozen running statistics (ARS V2).
    box_head : "clip" (clip the output to the bounds) or "tanh" (squash into the bounds; finite bounds only).
    bias : include bias terms.
    """
    owner = "make_policy"
    if observation_space is None or action_space is None:
        raise ParameterError("make_policy needs observation_space and action_space (e.g. env.observation_space)")
    obs_dim, act_dim, discrete = _space_dims(observation_space, action_space)
    if not isinstance(obs_norm, (bool, np.bool_)):
        raise ParameterError(f"The 'obs_norm' parameter of {owner} must be a bool. Got {obs_norm!r} instead.")
    if box_head not in ("clip", "tanh"):
        raise ParameterError(f"The 'box_head' parameter of {owner} must be one of 'clip', 'tanh'. "
                             f"Got {box_head!r} instead.")
    if not discrete and box_head == "tanh" and not (
        np.all(np.isfinite(action_space.low)) and np.all(np.isfinite(action_space.high))
    ):
        raise ParameterError("box_head='tanh' needs finite action bounds; this action space is unbounded")
    hidden_sizes = [int(h) for h in hidden_sizes]
    spec = {"policy": policy if isinstance(policy, str) else "custom", "hidden_sizes": hidden_sizes,
            "activation": activation, "obs_norm": bool(obs_norm), "box_head": box_head, "bias": bool(bias)}
    if isinstance(policy, nn.Module):
        net, kind = policy, "custom"
        try:
            with torch.no_grad():
                dtype = next(net.parameters(), torch.empty(())).dtype
                out = net(torch.zeros(2, obs_dim, dtype=dtype))
        except Exception as e:
            raise ParameterError(
                f"the custom policy module cannot take a (batch, {obs_dim}) observation tensor for "
                f"{observation_space!r}: {type(e).__name__}: {e}"
            ) from e
        if tuple(out.shape) != (2, act_dim):
            raise ParameterError(
                f"the custom policy module maps (batch, {obs_dim}) to {tuple(out.shape)}; the action space "
                f"{action_space!r} needs (batch, {act_dim})"
            )
    elif policy == "linear":
        net, kind = nn.Linear(obs_dim, act_dim, bias=bias), "linear"
        with torch.no_grad():
            for p in net.parameters():
                p.zero_()
    elif policy == "mlp":
        if activation not in _ACTIVATIONS:
            raise ParameterError(f"The 'activation' parameter of {owner} must be one of "
                                 f"{', '.join(repr(a) for a in _ACTIVATIONS)}. Got {activation!r} instead.")
        if any(h < 1 for h in hidden_sizes):
            raise ParameterError(f"The 'hidden_sizes' parameter of {owner} must be positive ints. "
                                 f"Got {hidden_sizes!r} instead.")
        sizes = [obs_dim, *hidden_sizes, act_dim]  # refused before torch tries to allocate the layers
        n_params = sum(a * b + b for a, b in zip(sizes[:-1], sizes[1:]))
        check_memory(hidden_sizes, "hidden_sizes", owner, n_params,
                     f"the MLP's parameters ({' x '.join(map(str, sizes))} layers)")
        net, kind = _mlp(obs_dim, act_dim, hidden_sizes, activation, bias), "mlp"
    else:
        raise ParameterError(f"The 'policy' parameter of {owner} must be one of 'linear', 'mlp' or a "
                             f"torch.nn.Module. Got {policy!r} instead.")
    return Policy(net, observation_space, action_space, kind, spec, obs_norm, box_head)


def num_params(module: nn.Module) -> int:
    return int(sum(p.numel() for p in module.parameters()))


def get_flat_params(module: nn.Module) -> np.ndarray:
    """All parameters (not buffers: obs statistics are measured, not searched) as one float64 vector."""
    params = [p.detach().reshape(-1).to(torch.float64) for p in module.parameters()]
    if not params:
        return np.zeros(0)
    return torch.cat(params).numpy().copy()


def set_flat_params(module: nn.Module, vec) -> None:
    vec = np.asarray(vec, dtype=np.float64)
    n = num_params(module)
    if vec.ndim != 1 or vec.size != n:
        raise ValueError(
            f"parameter vector has shape {vec.shape}; this policy expects a flat vector of length {n} "
            f"(num_params of {type(module).__name__})"
        )
    i = 0
    with torch.no_grad():
        for p in module.parameters():
            k = p.numel()
            p.copy_(torch.from_numpy(vec[i:i + k]).reshape(p.shape).to(p.dtype))
            i += k


def _json_default(o):
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, np.generic):
        return o.item()
    raise TypeError(f"metadata value {o!r} of type {type(o).__name__} is not plain data")


def save_policy(path, policy: Policy, metadata: dict | None = None) -> None:
    """Write weights, obs statistics and the rebuild spec; metadata must be json-able plain data.

    A custom module cannot be rebuilt from data, so `load_policy(path, module=...)` needs a fresh
    instance of it. The write is atomic (temp file + rename): a crash never leaves a truncated file.
    """
    try:
        meta_json = json.dumps(metadata or {}, default=_json_default)
    except (TypeError, ValueError) as e:
        raise ValueError(f"save_policy metadata must be plain data (json): {e}") from e
    payload = {
        "format": "evograd-policy-v1",
        "spec": json.dumps(policy.spec),
        "observation_space": json.dumps(space_to_data(policy.observation_space)),
        "action_space": json.dumps(space_to_data(policy.action_space)),
        "metadata": meta_json,
        "state_dict": {k: v.detach().cpu().clone() for k, v in policy.state_dict().items()},
    }
    from ..core.serialization import atomic_write

    atomic_write(path, lambda fh: torch.save(payload, fh))


def load_policy(path, module: nn.Module | None = None) -> tuple[Policy, dict]:
    """Rebuild a saved policy (weights_only load: no code from the file runs). Returns (policy, metadata)."""
    payload = torch.load(os.fspath(path), map_location="cpu", weights_only=True)
    if not isinstance(payload, dict) or payload.get("format") != "evograd-policy-v1":
        raise ValueError(f"{path} is not an evograd policy file")
    spec = json.loads(payload["spec"])
    obs_space = space_from_data(json.loads(payload["observation_space"]))
    act_space = space_from_data(json.loads(payload["action_space"]))
    kind = spec.pop("policy")
    if kind == "custom":
        if module is None:
            raise ValueError(f"{path} holds a custom torch module; pass a fresh instance as load_policy(path, "
                             "module=...)")
        kind = module
    policy = make_policy(kind, obs_space, act_space, **spec)
    state = dict(payload["state_dict"])
    state.setdefault("obs_clip", torch.tensor(float("inf"), dtype=torch.float64))  # files from before the clip
    policy.load_state_dict(state)
    return policy, json.loads(payload["metadata"])
