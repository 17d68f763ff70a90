"""The parts PPO and REINFORCE share besides their run loop (`evograd.rl.loop`): learning-rate/clip
schedules, env construction, and the actor-critic pair (an evograd Policy as the actor, a critic MLP, the
Gaussian log std), with one flat parameter vector for the protocol's optimizer.
"""
from __future__ import annotations

import math
import re
from typing import Any, Callable

import numpy as np
import torch
from torch import nn

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
