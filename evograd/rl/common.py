"""The parts PPO and REINFORCE share besides their run loop (`evograd.rl.loop`): learning-rate/clip
schedules, env construction, and the actor-critic pair (an evograd Policy as the actor, a critic MLP, the
Gaussian log std), with one flat parameter vector for the protocol's optimizer and initial weights given by
the caller (`read_init_params`, `ActorCritic.load_params`); and PPO's VecNormalize arithmetic.
"""
from __future__ import annotations

import math
import os
import re
from collections.abc import Mapping
from typing import Any, Callable

import numpy as np
import torch
from torch import nn

from ..core.running_stats import RunningMeanStd
from ..core.validation import ParameterError, check_bool, check_float
from ..gym.policies import Policy, make_policy
from .mlp_backprop import forward, plain_layers

LOG_2PI = math.log(2.0 * math.pi)
_ACTS = {"tanh": nn.Tanh, "relu": nn.ReLU, "elu": nn.ELU, "gelu": nn.GELU}


def parse_schedule(value: Any, name: str, owner: str) -> Callable[[float], float]:
    """A positive float, an rl-zoo string "lin_<v>" (v * progress_remaining) or "<v>", or a callable of
    progress_remaining (1 at the start of training, 0 at the end) -> a callable of progress_remaining."""
    if callable(value):
        try:
            check_float(value(1.0), name, owner)
        except (TypeError, ValueError) as exc:
            raise ParameterError(f"The '{name}' parameter of {owner} is a callable that must map "
                                 f"progress_remaining=1.0 to a float ({exc}).") from None
        return lambda p: float(value(p))
    what = "a float > 0, a schedule string like 'lin_1e-3', or a callable of progress_remaining"
    if isinstance(value, str):
        m = re.fullmatch(r"\s*(lin_)?([-+0-9.eE]+)\s*", value)
        try:
            v = float(m.group(2)) if m else float("nan")
        except ValueError:
            v = float("nan")
        if not (math.isfinite(v) and v > 0):
            raise ParameterError(f"The '{name}' parameter of {owner} must be {what}. Got {value!r} instead.")
        if m.group(1):
            return lambda p: v * p
        return lambda p: v
    if (isinstance(value, bool) or not isinstance(value, (int, float, np.floating, np.integer))
        or not (math.isfinite(value) and value > 0)):
        raise ParameterError(f"The '{name}' parameter of {owner} must be {what}. Got {value!r} instead.")
    v = float(value)
    return lambda p: v


def env_factory(env: Any, env_kwargs: dict | None) -> Callable[[], Any]:
    import gymnasium as gym

    if isinstance(env, str):
        return lambda: gym.make(env, **(env_kwargs or {}))
    if callable(env):
        if env_kwargs:
            return lambda: env(**env_kwargs)
        return env
    raise ParameterError(f"The 'env' argument must be a Gymnasium id or a zero-argument env constructor. "
                         f"Got {type(env).__name__} instead.")


def make_vec_env(env: Any, n_envs: int, env_kwargs: dict | None = None):
    """SyncVectorEnv in SAME_STEP autoreset: a finished slot returns its reset observation at once and the
    final observation in info["final_obs"], which is what SB3's DummyVecEnv does and what the truncation
    bootstrap needs (NEXT_STEP, gymnasium's default, would insert a fake reset transition)."""
    import gymnasium as gym

    fn = env_factory(env, env_kwargs)
    return gym.vector.SyncVectorEnv([fn] * n_envs, autoreset_mode=gym.vector.AutoresetMode.SAME_STEP)


def _mlp(sizes: list[int], activation: str, head_gain: float, ortho: bool) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        lin = nn.Linear(a, b)
        last = i == len(sizes) - 2
        if ortho:
            nn.init.orthogonal_(lin.weight, gain=head_gain if last else math.sqrt(2))
            nn.init.zeros_(lin.bias)
        layers.append(lin)
        if not last:
            layers.append(_ACTS[activation]())
    return nn.Sequential(*layers)


class ActorCritic(nn.Module):
    """An evograd Policy as the actor, a separate critic MLP, and (Box) a state-independent log std."""

    def __init__(self, owner: str, spaces: tuple, policy: Any, seed: int, hidden_sizes, activation: str,
                 critic_hidden_sizes, log_std_init: float, ortho_init: bool, obs_norm: bool = False):
        super().__init__()
        obs_space, act_space = spaces
        ortho_init = check_bool(ortho_init, "ortho_init", owner)
        log_std_init = check_float(log_std_init, "log_std_init", owner)
        if activation not in _ACTS:
            raise ParameterError(f"The 'activation' parameter of {owner} must be one of "
                                 f"{', '.join(map(repr, _ACTS))}. Got {activation!r} instead.")
        hidden_sizes = _sizes(hidden_sizes, "hidden_sizes", owner)
        if critic_hidden_sizes is None:
            critic_hidden_sizes = hidden_sizes if policy == "mlp" else [64, 64]
        critic_hidden_sizes = _sizes(critic_hidden_sizes, "critic_hidden_sizes", owner)
        if not (isinstance(policy, nn.Module) or policy in ("mlp", "linear")):
            raise ParameterError(f"The 'policy' parameter of {owner} must be one of 'mlp', 'linear' or a "
                                 f"torch.nn.Module. Got {policy!r} instead.")
        with torch.random.fork_rng(devices=[]):  # seeded init without touching the caller's torch RNG
            torch.manual_seed(seed)
            self.actor: Policy = make_policy(policy, obs_space, act_space, hidden_sizes=hidden_sizes,
                                             activation=activation, obs_norm=obs_norm, box_head="clip")
            if isinstance(policy, str):
                linears = [m for m in self.actor.net.modules() if isinstance(m, nn.Linear)]
                for i, lin in enumerate(linears):
                    if ortho_init:  # SB3: hidden layers gain sqrt(2), action head 0.01, zero biases
                        nn.init.orthogonal_(lin.weight, gain=0.01 if i == len(linears) - 1 else math.sqrt(2))
                        if lin.bias is not None:
                            nn.init.zeros_(lin.bias)
                    else:
                        lin.reset_parameters()
            self.critic = _mlp([self.actor.obs_dim, *critic_hidden_sizes, 1], activation, 1.0, ortho_init)
        self.obs_dim, self.act_dim, self.discrete = (self.actor.obs_dim, self.actor.act_dim,
                                                     self.actor.discrete)
        self.dtype = next(self.actor.parameters(), torch.empty(())).dtype
        # pi / v: forward passes for collection (no gradients). Plain Linear/activation stacks use the
        # hand-written passes of `mlp_backprop` (no module dispatch); anything else runs as its module.
        self.pi_layers, self.v_layers = plain_layers(self.actor.net), plain_layers(self.critic)
        self.pi = self.actor.net if self.pi_layers is None else (lambda x: forward(self.pi_layers, x)[-1])
        self.v = self.critic if self.v_layers is None else (lambda x: forward(self.v_layers, x)[-1])
        if not self.discrete:
            self.log_std = nn.Parameter(torch.full((self.act_dim,), log_std_init, dtype=self.dtype))
            self._low = np.asarray(act_space.low, np.float32).reshape(-1, self.act_dim)
            self._high = np.asarray(act_space.high, np.float32).reshape(-1, self.act_dim)
            self._act_shape = tuple(act_space.shape)
        else:
            self._start = int(act_space.start)

    def flatten_parameters(self) -> nn.Parameter:
        """Alias every parameter to a slice of one flat vector, and every `.grad` to a slice of one flat
        gradient buffer, and return the flat vector (with that buffer as its `.grad`).

        The optimizer is then bound to a single tensor: Adam and grad-norm clipping are elementwise or
        global, so the arithmetic is unchanged, but each step costs a handful of tensor ops instead of a
        dozen per layer. Backward accumulates into the buffer in place; zero it with `flat_grad(zero=True)`.
        """
        params = list(self.parameters())
        flat = torch.cat([p.detach().reshape(-1) for p in params])
        self._flat_grad = torch.zeros_like(flat)
        offset = 0
        for p in params:
            k = p.numel()
            p.data = flat[offset : offset + k].view_as(p)
            p.grad = self._flat_grad[offset : offset + k].view_as(p)
            offset += k
        self.flat = [nn.Parameter(flat)]  # a list, so it is not registered twice as a module parameter
        self.flat[0].grad = self._flat_grad
        return self.flat[0]

    def flat_grad(self, zero: bool = False) -> torch.Tensor:
        """The flat gradient buffer, re-attached to the flat vector (the protocol's tell() resets .grad)."""
        if zero:
            self._flat_grad.zero_()
        self.flat[0].grad = self._flat_grad
        return self._flat_grad

    def load_params(self, params: np.ndarray | dict[str, np.ndarray], owner: str) -> None:
        """Set every parameter from `read_init_params`'s result: a flat vector in the order of
        `named_parameters()` (the order of a checkpoint's "params"), or {name: array} naming each of them
        exactly once. A wrong size, shape or name is a ParameterError naming the parameter."""
        named = dict(self.named_parameters())
        head = f"The 'init_params' parameter of {owner}"
        if isinstance(params, dict):
            unknown = [k for k in params if k not in named]
            if unknown:
                raise ParameterError(f"{head} names {unknown[0]!r}, which is not a parameter of this actor-critic "
                                     f"(its parameters: {', '.join(named)}).")
            missing = [k for k in named if k not in params]
            if missing:
                raise ParameterError(f"{head} has no {missing[0]!r}; a dict gives every parameter "
                                     f"({', '.join(named)}).")
        else:
            total = sum(p.numel() for p in named.values())
            if params.ndim != 1 or params.size != total:
                raise ParameterError(f"{head} is a vector of shape {params.shape}; this actor-critic has {total} "
                                     f"parameters (a flat vector in the order {', '.join(named)}).")
            sizes = np.cumsum([0] + [p.numel() for p in named.values()])
            params = {k: params[a:b].reshape(p.shape) for (k, p), a, b in zip(named.items(), sizes, sizes[1:])}
        for name, p in named.items():
            if tuple(params[name].shape) != tuple(p.shape):
                raise ParameterError(f"{head} gives {name!r} the shape {tuple(params[name].shape)}; this "
                                     f"actor-critic's {name!r} has shape {tuple(p.shape)}.")
        with torch.no_grad():
            for name, p in named.items():
                p.copy_(torch.from_numpy(params[name]).to(p.dtype))

    def sample(self, out: torch.Tensor, rng: np.random.Generator):
        """Stochastic actions from the actor output: (stored action, env action, log prob), all numpy.
        Box actions are stored unclipped (the log prob is the unclipped sample's) and clipped for the env."""
        if self.discrete:
            logp_all = torch.log_softmax(out, dim=-1).numpy()
            cdf = np.cumsum(np.exp(logp_all), axis=1)
            u = rng.random((len(cdf), 1)) * cdf[:, -1:]
            a = np.minimum((cdf < u).sum(axis=1), self.act_dim - 1)
            # Python ints: gymnasium's Discrete.contains checks them several times faster than numpy ints
            return a, (a + self._start).tolist(), logp_all[np.arange(len(a)), a].astype(np.float64)
        mean = out.numpy()
        log_std = self.log_std.detach().numpy()
        noise = rng.standard_normal(mean.shape).astype(np.float32)
        a = mean + np.exp(log_std) * noise
        logp = (-0.5 * noise.astype(np.float64) ** 2 - log_std - 0.5 * LOG_2PI).sum(axis=1)
        env_a = np.clip(a, self._low, self._high).reshape((-1,) + self._act_shape)
        return a, env_a, logp

    def evaluate(self, obs: torch.Tensor, actions: torch.Tensor, entropy: bool = True):
        """Log prob of the stored actions and the entropy (None when not asked for) under the current
        actor, with gradients (autograd through the modules)."""
        out = self.actor.net(obs)
        if self.discrete:
            logp_all = torch.log_softmax(out, dim=-1)
            logp = logp_all.gather(1, actions.view(-1, 1))[:, 0]
            return logp, -(logp_all.exp() * logp_all).sum(dim=1) if entropy else None
        z = (actions - out) * torch.exp(-self.log_std)
        logp = (-0.5 * z**2 - self.log_std - 0.5 * LOG_2PI).sum(dim=1)
        return logp, (0.5 + 0.5 * LOG_2PI + self.log_std).sum().expand(len(out)) if entropy else None


def read_init_params(value: Any, owner: str) -> np.ndarray | dict[str, np.ndarray] | None:
    """PPOConfig.init_params as float64 numpy data, checked before any env is built: None; a flat vector
    (array, tensor or sequence of numbers); a mapping name -> array; or a path (str or os.PathLike) that
    numpy reads, a .npy file holding the flat vector or a .npz file holding one array per name. Shapes are
    checked against the actor-critic by `ActorCritic.load_params`."""
    if value is None:
        return None
    head = f"The 'init_params' parameter of {owner}"
    if isinstance(value, (str, os.PathLike)):
        try:
            loaded = np.load(os.fspath(value), allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise ParameterError(f"{head} is a path numpy cannot read as a .npy or .npz file ({exc}).") from None
        if isinstance(loaded, np.lib.npyio.NpzFile):
            with loaded:
                value = {k: loaded[k] for k in loaded.files}
        else:
            value = loaded
    if isinstance(value, Mapping):
        if not all(isinstance(k, str) for k in value):
            raise ParameterError(f"{head} must map parameter names (str) to arrays. Got keys {list(value)!r}.")
        return {k: _float_array(v, f"{head} at {k!r}") for k, v in value.items()}
    return _float_array(value, head)


def _float_array(value: Any, what: str) -> np.ndarray:
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu().numpy()
    try:
        arr = np.array(value, dtype=np.float64)
    except (TypeError, ValueError):
        arr = None
    if arr is None or not np.all(np.isfinite(arr)):
        raise ParameterError(f"{what} must be finite numbers (an array, a dict of arrays or a .npy/.npz path). "
                             f"Got {type(value).__name__} instead.")
    return arr


class VecNormalize:
    """SB3's VecNormalize arithmetic: running obs mean/var (clip 10) and rewards scaled by the running std
    of the discounted return. Statistics are updated during collection only, as SB3 does in training mode.
    init_count : the statistics' starting count (mean 0, var 1): SB3's 1e-4, or 0 for no prior at all."""

    def __init__(self, obs_dim: int, n_envs: int, norm_obs: bool, norm_reward: bool, gamma: float,
                 init_count: float = 1e-4, clip: float = 10.0, eps: float = 1e-8):
        self.obs_rms = RunningMeanStd((obs_dim,), count=init_count) if norm_obs else None
        self.ret_rms = RunningMeanStd((), count=init_count) if norm_reward else None
        self.returns = np.zeros(n_envs)
        self.gamma, self.clip, self.eps = gamma, clip, eps

    def obs(self, obs: np.ndarray, update: bool) -> np.ndarray:
        if self.obs_rms is None:
            return obs.astype(np.float32, copy=False)
        if update:
            self.obs_rms.update(obs)
        z = (obs - self.obs_rms.mean) / np.sqrt(self.obs_rms.var + self.eps)
        return np.clip(z, -self.clip, self.clip).astype(np.float32)

    def reward(self, reward: np.ndarray, dones: np.ndarray) -> np.ndarray:
        if self.ret_rms is None:
            return reward
        self.returns = self.returns * self.gamma + reward
        self.ret_rms.update(self.returns)
        out = np.clip(reward / np.sqrt(self.ret_rms.var + self.eps), -self.clip, self.clip)
        self.returns[dones] = 0.0
        return out

    def state_dict(self) -> dict:
        """The statistics (not the running returns, which belong to the live episodes)."""
        return {"obs_rms": None if self.obs_rms is None else self.obs_rms.state_dict(),
                "ret_rms": None if self.ret_rms is None else self.ret_rms.state_dict()}

    def load_state_dict(self, state: dict, owner: str) -> None:
        for key in ("obs_rms", "ret_rms"):
            if (state.get(key) is None) != (getattr(self, key) is None):
                raise ParameterError(f"The 'resume' state given to {owner} was saved with {key} "
                                     f"{'off' if state.get(key) is None else 'on'}; pass the same "
                                     f"normalize_obs/normalize_reward as the checkpointed run.")
            if state.get(key) is not None:
                setattr(self, key, RunningMeanStd.from_state_dict(state[key]))


def clip_grad_norm(grad: torch.Tensor, max_norm: float) -> None:
    """torch.nn.utils.clip_grad_norm_ for one flat gradient: scale by min(1, max_norm / (norm + 1e-6))."""
    grad.mul_(torch.clamp(max_norm / (torch.linalg.vector_norm(grad) + 1e-6), max=1.0))


def _sizes(value: Any, name: str, owner: str) -> list[int]:
    try:
        sizes = [int(h) for h in value]
        ok = all(h >= 1 and h == float(v) for h, v in zip(sizes, value))
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise ParameterError(f"The '{name}' parameter of {owner} must be a sequence of ints >= 1. "
                             f"Got {value!r} instead.")
    return sizes
