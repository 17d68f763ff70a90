"""What PPO and REINFORCE share: schedules, the actor-critic pair, env construction, episodes, and the run loop
(budget, deterministic evaluation on fixed seeds, best-policy tracking, history rows).

Kept apart from the algorithms so that both gradient baselines are evaluated and accounted for exactly the
same way: training env steps only in `env_steps`, evaluation steps and time reported beside them.
"""
from __future__ import annotations

import contextlib
import copy
import math
import re
import time
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import torch
from torch import nn

from .mlp_backprop import forward, plain_layers
from .policies import Policy, RunningMeanStd, make_policy
from .validation import ParameterError, check_bool, check_float, check_int

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
    if isinstance(value, bool) or not isinstance(value, (int, float, np.floating, np.integer)) \
            or not (math.isfinite(value) and value > 0):
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
        self.obs_dim, self.act_dim, self.discrete = self.actor.obs_dim, self.actor.act_dim, self.actor.discrete
        self.dtype = next(self.actor.parameters(), torch.empty(())).dtype
        # plain Linear/activation stacks get the hand-written passes of `mlp_backprop` (no module dispatch,
        # no autograd bookkeeping); anything else runs as the module it is
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
            p.data = flat[offset:offset + k].view_as(p)
            p.grad = self._flat_grad[offset:offset + k].view_as(p)
            offset += k
        self.flat = [nn.Parameter(flat)]  # a list, so it is not registered twice as a module parameter
        self.flat[0].grad = self._flat_grad
        return self.flat[0]

    def flat_grad(self, zero: bool = False) -> torch.Tensor:
        """The flat gradient buffer, re-attached to the flat vector (the protocol's tell() sets .grad to None)."""
        if zero:
            self._flat_grad.zero_()
        self.flat[0].grad = self._flat_grad
        return self._flat_grad

    def sample(self, out: torch.Tensor, rng: np.random.Generator):
        """Stochastic actions from the actor output: (stored action, env action, log prob), all numpy.
        Box actions are stored unclipped (their log prob is of the unclipped sample) and clipped for the env."""
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
        actor, with gradients."""
        out = self.pi(obs)
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


def run_episodes(envs: list, seeds: list[int], act: Callable[[np.ndarray], Any], record: bool = False):
    """One episode per env (reset with its seed), stepping all unfinished envs with one batched `act` call.
    `act` returns the env actions, or (env actions, actions to record) when they differ (unclipped samples).
    Returns (returns, lengths, trajectories); trajectories (when record=True) hold obs, actions, rewards,
    `truncated` (time limit, not a terminal state) and the final observation."""
    obs = [e.reset(seed=int(s))[0] for e, s in zip(envs, seeds)]
    active = list(range(len(envs)))
    rets, lens = np.zeros(len(envs)), np.zeros(len(envs), dtype=np.int64)
    trajs = [{"obs": [], "act": [], "rew": []} for _ in envs] if record else None
    while active:
        batch = np.stack([obs[i] for i in active])
        actions = act(batch)
        actions, recorded = actions if isinstance(actions, tuple) else (actions, actions)
        still = []
        for k, i in enumerate(active):
            o2, r, term, trunc, _ = envs[i].step(actions[k])
            rets[i] += r
            lens[i] += 1
            if record:
                trajs[i]["obs"].append(obs[i])
                trajs[i]["act"].append(recorded[k])
                trajs[i]["rew"].append(float(r))
            obs[i] = o2
            if term or trunc:
                if record:
                    trajs[i].update(truncated=bool(trunc and not term), final_obs=o2)
            else:
                still.append(i)
        active = still
    return rets, lens, trajs


@dataclass
class RLResult:
    """policy: the evaluated-best actor (an evograd Policy, obs statistics included); last_policy: the final
    one; history: one row per update (eval_return is None where no evaluation ran)."""

    policy: Policy
    last_policy: Policy
    history: list[dict[str, Any]]
    best_eval_return: float
    best_env_steps: int
    env_steps: int
    eval_env_steps: int
    wall_s: float
    eval_s: float
    setup_s: float
    stop_reason: str
    n_updates: int
    log_std: np.ndarray | None = None
    critic: nn.Module | None = None
    obs_rms: RunningMeanStd | None = None

    def __repr__(self) -> str:
        return (f"RLResult(best_eval_return={self.best_eval_return:.4g} at {self.best_env_steps} steps, "
                f"env_steps={self.env_steps}, stop_reason={self.stop_reason!r}, wall_s={self.wall_s:.2f})")


class RunLoop:
    """Budget, evaluation schedule, best-policy tracking and history for one training run."""

    def __init__(self, owner, env, seed, max_env_steps, eval_every, eval_episodes, eval_seed, max_seconds,
                 target_return, env_kwargs, torch_threads, callback):
        self.t_setup = time.perf_counter()
        self.seed = check_int(seed, "seed", owner, low=0)
        self.max_env_steps = check_int(max_env_steps, "max_env_steps", owner, low=1)
        self.eval_every = None if eval_every is None else check_int(eval_every, "eval_every", owner, low=1)
        self.eval_episodes = check_int(eval_episodes, "eval_episodes", owner, low=1)
        base = 10_000 + self.seed if eval_seed is None else check_int(eval_seed, "eval_seed", owner, low=0)
        self.eval_seeds = [base + i for i in range(self.eval_episodes)]
        self.max_seconds = None if max_seconds is None else check_float(
            max_seconds, "max_seconds", owner, low=0.0, low_inclusive=False)
        self.target = None if target_return is None else check_float(target_return, "target_return", owner)
        self.torch_threads = None if torch_threads is None else check_int(torch_threads, "torch_threads", owner,
                                                                           low=1)
        if env_kwargs is not None and not isinstance(env_kwargs, dict):
            raise ParameterError(f"The 'env_kwargs' parameter of {owner} must be a dict. Got {env_kwargs!r} instead.")
        if callback is not None and not callable(callback):
            raise ParameterError(f"The 'callback' parameter of {owner} must be callable. Got {callback!r} instead.")
        self.callback = callback
        factory = env_factory(env, env_kwargs)
        self.eval_envs = [factory() for _ in range(self.eval_episodes)]
        self.spaces = (self.eval_envs[0].observation_space, self.eval_envs[0].action_space)
        self.env_steps = self.eval_env_steps = 0
        self.history: list[dict[str, Any]] = []
        self.best_return, self.best_steps, self.best_policy = -math.inf, 0, None
        self.eval_s, self.stop_reason = 0.0, None
        self.next_eval = self.eval_every

    @contextlib.contextmanager
    def threads(self):
        old = torch.get_num_threads()
        if self.torch_threads is not None:
            torch.set_num_threads(self.torch_threads)
        try:
            yield
        finally:
            torch.set_num_threads(old)

    def start(self) -> None:
        self.t0, self.c0 = time.perf_counter(), time.process_time()
        self.setup_s = self.t0 - self.t_setup

    def add_steps(self, n: int) -> None:
        self.env_steps += n

    def done(self) -> bool:
        return self.stop_reason is not None

    def _wall(self) -> float:
        return time.perf_counter() - self.t0

    def _set_obs_stats(self, actor: Policy, obs_rms: RunningMeanStd | None) -> None:
        if obs_rms is not None:  # VecNormalize divides by sqrt(var + 1e-8); the Policy by sqrt(var)
            actor.set_obs_stats(RunningMeanStd.from_state({**obs_rms.state(), "var": obs_rms.var + 1e-8}))

    def evaluate(self, actor: Policy) -> tuple[float, float]:
        t = time.perf_counter()
        rets, lens, _ = run_episodes(self.eval_envs, self.eval_seeds, lambda o: actor.act(o, deterministic=True))
        self.eval_env_steps += int(lens.sum())
        self.eval_s += time.perf_counter() - t
        return float(rets.mean()), float(rets.std())

    def end_iteration(self, row: dict, ac, obs_rms: RunningMeanStd | None = None) -> None:
        """Append the update's row; evaluate when due (and always before stopping); decide whether to stop."""
        if self.env_steps >= self.max_env_steps:
            self.stop_reason = "max_env_steps"
        elif self.max_seconds is not None and self._wall() >= self.max_seconds:
            self.stop_reason = "max_seconds"
        due = self.next_eval is not None and self.env_steps >= self.next_eval
        row = {"iteration": len(self.history) + 1, "env_steps": self.env_steps, "wall_s": 0.0,
               "eval_return": None, "eval_std": None, **row}
        if due or self.stop_reason is not None:
            while self.next_eval is not None and self.next_eval <= self.env_steps:
                self.next_eval += self.eval_every
            self._evaluate_into(row, ac, obs_rms)
        row.update(wall_s=self._wall(), cpu_s=time.process_time() - self.c0, eval_s=self.eval_s,
                   eval_env_steps=self.eval_env_steps)
        self.history.append(row)
        if self.callback is not None and self.callback(row) is True and self.stop_reason is None:
            self.stop_reason = "callback"
            if row["eval_return"] is None:
                self._evaluate_into(row, ac, obs_rms)

    def _evaluate_into(self, row: dict, ac, obs_rms: RunningMeanStd | None) -> None:
        self._set_obs_stats(ac.actor, obs_rms)
        mean, std = self.evaluate(ac.actor)
        row["eval_return"], row["eval_std"] = mean, std
        if mean > self.best_return:
            self.best_return, self.best_steps = mean, self.env_steps
            self.best_policy = copy.deepcopy(ac.actor)
        if self.target is not None and mean >= self.target and self.stop_reason is None:
            self.stop_reason = "target_return"

    def finish(self, ac, obs_rms: RunningMeanStd | None, n_updates: int) -> RLResult:
        self._set_obs_stats(ac.actor, obs_rms)
        last = copy.deepcopy(ac.actor)
        return RLResult(
            policy=self.best_policy if self.best_policy is not None else last, last_policy=last,
            history=self.history, best_eval_return=self.best_return, best_env_steps=self.best_steps,
            env_steps=self.env_steps, eval_env_steps=self.eval_env_steps, wall_s=self._wall(),
            eval_s=self.eval_s, setup_s=self.setup_s, stop_reason=self.stop_reason or "max_env_steps",
            n_updates=n_updates,
            log_std=None if ac.discrete else ac.log_std.detach().numpy().copy(),
            critic=copy.deepcopy(ac.critic), obs_rms=None if obs_rms is None else obs_rms.copy())

    def close(self) -> None:
        for e in self.eval_envs:
            e.close()
