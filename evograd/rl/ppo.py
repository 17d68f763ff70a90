"""PPO (Schulman et al. 2017), the gradient RL baseline, run the way Stable-Baselines3 runs it.

Hyperparameter names and defaults are SB3's, so an rl-baselines3-zoo entry can be pasted in and the
comparison against SB3 measures the implementation, not the tuning. What SB3 does and we copy: a separate
critic MLP, orthogonal init (actor head gain 0.01, critic head 1), GAE with the value of the final
observation bootstrapped on time-limit truncation, advantages normalized per minibatch, clipped surrogate,
unclipped value loss, grad-norm clipping, Adam with eps 1e-5, the learning-rate/clip schedules evaluated on
the fraction of the budget left after each rollout, Box actions sampled from a state-independent Gaussian,
clipped for the env but stored unclipped, and VecNormalize's observation/reward normalization (from SB3's
prior count 1e-4). tests/rl/test_sb3_equivalence.py holds us to SB3 on the same numbers: one update from the
same weights, rollout and minibatch permutations; a rollout's advantages; the logged statistics (averaged as
SB3 averages them); VecNormalize from its first step; and a run started from an SB3 model's weights
(`init_params`, `evograd.rl.sb3_weights`).
Optimization steps go through evograd's own `adam` (the ask/tell protocol), bound to one flat vector that
every actor/critic parameter aliases. For plain Linear/tanh/ReLU networks the loss gradient is written out
by hand (`evograd.rl.mlp_backprop`, checked against autograd in the tests): the zoo's CartPole setting spends
most of its time in 20 small-batch steps per rollout, where autograd's bookkeeping costs more than the
arithmetic. Other modules go through autograd. The actor is an evograd `Policy`, so the result is
comparable with the evolution strategies' policies.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import torch
from torch.nn import functional as F

from ..core.serialization import applying
from ..core.validation import ParameterError, check_bool, check_float, check_int, check_memory
from ..optim.registry import make as make_optimizer
from .common import ActorCritic, VecNormalize, clip_grad_norm, make_vec_env, parse_schedule, read_init_params
from .loop import RLResult, RunLoop, check_checkpoint_args, learner_state, load_learner_state, reset_seed
from .mlp_backprop import ppo_loss_and_grads
from .settings import PPOConfig
from .settings import settings as rl_settings

_OWNER = "train_ppo"


def compute_gae(rewards, values, dones, last_values, gamma, gae_lambda, terminal_values=None):
    """Generalized advantage estimates for a (T, n_envs) rollout; returns (advantages, returns).

    dones[t] marks that the episode ended at step t (terminated or truncated). terminal_values[t] is the
    critic's value of the final observation where the episode was *truncated* (0 where it terminated), so
    a time limit is not mistaken for a terminal state: delta_t = r_t + gamma * V(final obs) - V(s_t).
    Same numbers as SB3, which adds gamma * V(final obs) to the reward instead.
    """
    rewards, values, dones = (np.asarray(a, dtype=np.float64) for a in (rewards, values, dones))
    T = rewards.shape[0]
    term = np.zeros_like(rewards) if terminal_values is None else np.asarray(terminal_values, np.float64)
    next_values = np.concatenate([values[1:], np.asarray(last_values, np.float64)[None]], axis=0)
    next_values = np.where(dones > 0, term, next_values)
    deltas = rewards + gamma * next_values - values
    adv = np.zeros_like(rewards)
    last = np.zeros_like(rewards[0])
    for t in reversed(range(T)):
        last = deltas[t] + gamma * gae_lambda * (1.0 - dones[t]) * last
        adv[t] = last
    return adv, adv + values


def train_ppo(env: "str | Callable[[], Any]", config: PPOConfig | None = None, *,
              callback: Callable[[dict], Any] | None = None, progress: bool = False,
              checkpoint: Callable[[dict], Any] | None = None, resume: dict | None = None,
              **settings: Any) -> RLResult:
    """Train a policy with PPO on a Gymnasium env, maximizing its return; returns an `RLResult` (best
    policy by evaluation).

    env : Gymnasium id or zero-argument constructor; `n_envs` copies run in a SyncVectorEnv.
    config : a `PPOConfig` (SB3's names and defaults; its docstring says what each field does).
    settings : PPOConfig fields as keyword arguments, over `config`'s (`train_ppo(env, n_steps=32)`).
    callback : callback(row) -> bool | None, called with each update's history row: True stops (after a final
        evaluation), None or False continue, anything else is an error (`evograd.core.callbacks`).
    progress : show a tqdm bar.
    checkpoint : called after every update with the run's state as plain data (numpy arrays, numbers,
        strings, lists, dicts: `evograd.core.serialization.save_state` writes it, `load_state` reads it back
        without unpickling code). resume : such a state; the run continues from that update boundary with
        the same parameters, Adam moments, normalization statistics, sampling generator, counters,
        schedules, history and best policy, until the budget. Pass the settings of the checkpointed run.
        The envs' live states are not saved: they are reset with a seed drawn from (seed, update count)
        and unfinished training episodes are dropped, so a resumed run is not bit-identical to an
        uninterrupted one.
    """
    c = rl_settings(PPOConfig, config, settings, _OWNER)
    return _train_ppo(env, callback, progress, checkpoint, resume, **c.kwargs())


def _train_ppo(env, callback, progress, checkpoint, resume, *, policy, seed, max_env_steps, n_envs, n_steps,
               batch_size, n_epochs, gamma, gae_lambda, clip_range, ent_coef, vf_coef, max_grad_norm,
               learning_rate, normalize_advantage, target_kl, hidden_sizes, activation, critic_hidden_sizes,
               log_std_init, ortho_init, normalize_obs, normalize_reward, norm_init_count, init_params,
               eval_every, eval_episodes, eval_seed, max_seconds, target_return, env_kwargs,
               torch_threads) -> RLResult:
    """train_ppo with every PPOConfig field as a keyword argument."""
    o = _OWNER
    seed = check_int(seed, "seed", o, low=0)
    n_envs = check_int(n_envs, "n_envs", o, low=1)
    n_steps = check_int(n_steps, "n_steps", o, low=1)
    batch_size = check_int(batch_size, "batch_size", o, low=1)
    n_epochs = check_int(n_epochs, "n_epochs", o, low=1)
    big = "n_envs" if n_envs > n_steps else "n_steps"  # the rollout holds several values per env step
    check_memory(max(n_envs, n_steps), big, o, n_steps * n_envs, f"n_steps x n_envs = {n_steps} x {n_envs}")
    gamma = check_float(gamma, "gamma", o, low=0.0, high=1.0)
    gae_lambda = check_float(gae_lambda, "gae_lambda", o, low=0.0, high=1.0)
    ent_coef = check_float(ent_coef, "ent_coef", o)
    vf_coef = check_float(vf_coef, "vf_coef", o, low=0.0)
    max_grad_norm = check_float(max_grad_norm, "max_grad_norm", o, low=0.0, low_inclusive=False)
    normalize_advantage = check_bool(normalize_advantage, "normalize_advantage", o)
    if target_kl is not None:
        target_kl = check_float(target_kl, "target_kl", o, low=0.0, low_inclusive=False)
    normalize_obs = check_bool(normalize_obs, "normalize_obs", o)
    normalize_reward = check_bool(normalize_reward, "normalize_reward", o)
    norm_init_count = check_float(norm_init_count, "norm_init_count", o, low=0.0)
    init_params = read_init_params(init_params, o)
    lr_fn = parse_schedule(learning_rate, "learning_rate", o)
    clip_fn = parse_schedule(clip_range, "clip_range", o)
    check_checkpoint_args(o, checkpoint, resume)
    if batch_size < 2 and normalize_advantage:  # SB3's rule: one advantage cannot be standardized
        raise ParameterError(f"The 'batch_size' parameter of {o} must be an int >= 2 when "
                             f"normalize_advantage is True. Got {batch_size} instead.")
    loop = RunLoop(o, env, seed, max_env_steps, eval_every, eval_episodes, eval_seed, max_seconds,
                   target_return, env_kwargs, torch_threads, callback, progress)
    with loop.torch_mode():
        ac = ActorCritic(o, loop.spaces, policy, seed, hidden_sizes, activation, critic_hidden_sizes,
                         log_std_init, ortho_init, obs_norm=normalize_obs)
        if init_params is not None:
            ac.load_params(init_params, o)
        opt = make_optimizer("adam", lr=lr_fn(1.0), eps=1e-5)
        opt.bind([ac.flatten_parameters()])
        venv = make_vec_env(env, n_envs, env_kwargs)
        try:
            return _train(loop, ac, opt, venv, n_envs, n_steps, batch_size, n_epochs, gamma, gae_lambda,
                          clip_fn, lr_fn, ent_coef, vf_coef, max_grad_norm, normalize_advantage, target_kl,
                          VecNormalize(ac.obs_dim, n_envs, normalize_obs, normalize_reward, gamma, norm_init_count),
                          checkpoint, resume)
        finally:
            venv.close()
            loop.close()


def autograd_loss_and_grads(ac, obs, actions, old_logp, adv, returns, clip, vf_coef, ent_coef):
    """The same loss as `mlp_backprop.ppo_loss_and_grads`, through autograd (any torch module)."""
    logp, entropy = ac.evaluate(obs, actions)
    values = ac.critic(obs)[:, 0]
    log_ratio = logp - old_logp
    ratio = torch.exp(log_ratio)
    pg_loss = -torch.min(adv * ratio, adv * torch.clamp(ratio, 1.0 - clip, 1.0 + clip)).mean()
    vf_loss = F.mse_loss(returns, values)
    ent = entropy.mean()
    loss = pg_loss + vf_coef * vf_loss - ent_coef * ent
    ac.flat_grad(zero=True)
    loss.backward()
    return loss.detach(), pg_loss, vf_loss, ent, log_ratio.detach(), ratio.detach()


def _train(loop, ac, opt, venv, n_envs, n_steps, batch_size, n_epochs, gamma, gae_lambda, clip_fn, lr_fn,
           ent_coef, vf_coef, max_grad_norm, normalize_advantage, target_kl, vn, checkpoint, resume) -> RLResult:
    """PPO's outer loop, one update per pass: collect a rollout, estimate advantages, optimize the clipped
    surrogate over the rollout, record the update's row (and checkpoint). The steps draw from one generator
    in a fixed order (action samples, then minibatch shuffles), which is what makes a run reproducible."""
    rng = np.random.default_rng(loop.seed)
    settings = _UpdateSettings(batch_size, n_epochs, normalize_advantage, target_kl, vf_coef, ent_coef,
                               max_grad_norm)
    obs = _start(loop, ac, opt, venv, vn, rng, resume)
    ep_ret, ep_len = np.zeros(n_envs), np.zeros(n_envs, dtype=np.int64)  # the training episodes under way
    while not loop.done():
        roll, adv, ret, obs = _rollout(ac, venv, vn, rng, obs, n_steps, n_envs, ep_ret, ep_len, gamma, gae_lambda)
        loop.add_steps(n_steps * n_envs)
        progress_remaining = loop.progress_remaining()
        lr, clip = lr_fn(progress_remaining), clip_fn(progress_remaining)
        opt.set_lr(lr)
        stats = _optimize(ac, opt, rng, roll, adv, ret, clip, settings)
        row = _update_row(ac, stats, lr, clip, ret, roll)
        loop.end_iteration(row, [r for r, _ in roll.finished], ac, vn.obs_rms)
        if checkpoint is not None:
            checkpoint(learner_state("ppo", loop, ac, opt, rng, **vn.state_dict()))
    return loop.finish(ac, vn.obs_rms, n_updates=opt.generation)


@dataclass(frozen=True)
class _UpdateSettings:
    """The hyperparameters of one update's optimization (SB3's names)."""

    batch_size: int
    n_epochs: int
    normalize_advantage: bool
    target_kl: float | None
    vf_coef: float
    ent_coef: float
    max_grad_norm: float


@dataclass
class _Rollout:
    """n_steps x n_envs of training data, and the (return, length) of the training episodes that ended."""

    obs: np.ndarray
    act: np.ndarray
    logp: np.ndarray
    val: np.ndarray
    rew: np.ndarray    # after VecNormalize's reward scaling
    done: np.ndarray
    term: np.ndarray   # the critic's value of the final observation where a time limit cut the episode
    finished: list


def _start(loop, ac, opt, venv, vn, rng, resume) -> np.ndarray | None:
    """Reset the envs and evaluate the initial policy; or restore a checkpoint and reset the envs with a seed
    drawn from the update count, since live env states are not saved. Returns the first (normalized)
    observation, None when the resumed run had already ended."""
    if resume is None:
        raw_obs, _ = venv.reset(seed=loop.seed)
        obs = vn.obs(raw_obs, update=True)
        loop.start(ac, vn.obs_rms, optimizer=opt)
        return obs
    with applying("the resume state"):
        load_learner_state(_OWNER, "ppo", resume, ac, opt, rng)
        vn.load_state_dict(resume, _OWNER)
        loop.start(ac, vn.obs_rms, resume=resume["loop"], optimizer=opt)
    if loop.done():
        return None
    raw_obs, _ = venv.reset(seed=reset_seed(loop.seed, loop.updates))
    return vn.obs(raw_obs, update=True)


def _rollout(ac, venv, vn, rng, obs, T: int, N: int, ep_ret, ep_len, gamma: float, gae_lambda: float):
    """One rollout (`_collect`) and its GAE with the truncation bootstrap; returns (rollout, advantages,
    returns, the observation to continue from)."""
    roll, obs = _collect(ac, venv, vn, rng, obs, T, N, ep_ret, ep_len)
    with torch.no_grad():
        last_val = ac.v(torch.from_numpy(obs))[:, 0].numpy()
    adv, ret = compute_gae(roll.rew, roll.val, roll.done, last_val, gamma, gae_lambda, roll.term)
    return roll, adv, ret, obs


def _collect(ac, venv, vn, rng, obs, T: int, N: int, ep_ret, ep_len) -> tuple[_Rollout, np.ndarray]:
    """T steps of the N envs with actions sampled from the current policy, as SB3 collects them (actions
    stored unclipped, a time limit's final observation valued by the critic); updates the running episode
    tallies ep_ret/ep_len in place. Returns the rollout and the observation to continue from."""
    buf_obs = np.zeros((T, N, ac.obs_dim), np.float32)
    act_shape, act_dtype = ((T, N), np.int64) if ac.discrete else ((T, N, ac.act_dim), np.float32)
    buf_act = np.zeros(act_shape, act_dtype)
    buf_logp, buf_val, buf_rew, buf_done, buf_term = (np.zeros((T, N)) for _ in range(5))
    finished = []
    for t in range(T):
        with torch.no_grad():
            obs_t = torch.from_numpy(obs)
            out = ac.pi(obs_t)
            buf_val[t] = ac.v(obs_t)[:, 0].numpy()
        action, env_action, buf_logp[t] = ac.sample(out, rng)
        raw_obs, reward, terminated, truncated, info = venv.step(env_action)
        buf_obs[t], buf_act[t] = obs, action
        dones = terminated | truncated
        obs = vn.obs(raw_obs, update=True)
        ep_ret += reward
        ep_len += 1
        buf_rew[t] = vn.reward(np.asarray(reward, np.float64), dones)
        buf_done[t] = dones
        bootstrap = truncated & ~terminated
        if bootstrap.any():  # time limit: the final observation still has a future
            final = np.stack([info["final_obs"][i] for i in np.flatnonzero(bootstrap)])
            with torch.no_grad():
                v = ac.v(torch.from_numpy(vn.obs(final, update=False)))[:, 0].numpy()
            buf_term[t, bootstrap] = v
        for i in np.flatnonzero(dones):
            finished.append((ep_ret[i], ep_len[i]))
            ep_ret[i], ep_len[i] = 0.0, 0
    return _Rollout(buf_obs, buf_act, buf_logp, buf_val, buf_rew, buf_done, buf_term, finished), obs


def _optimize(ac, opt, rng, roll: _Rollout, adv, ret, clip: float, s: _UpdateSettings) -> dict[str, float]:
    """n_epochs passes of minibatch steps over the rollout, as SB3's train() makes them: the samples in its
    order (env by env, its swap_and_flatten), so that one permutation per epoch (rng.permutation, SB3's
    np.random.permutation) gives the same minibatches. Returns the diagnostics SB3 logs: policy and value
    loss, entropy and clip fraction averaged over every minibatch of every epoch, approx_kl over the minibatches
    of the last epoch run (SB3 starts that list afresh each epoch); a minibatch that target_kl stopped counts."""
    T, N = roll.rew.shape

    def flat(a: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(np.swapaxes(a, 0, 1)).reshape((T * N,) + a.shape[2:]))

    b_obs, b_act, b_logp, b_adv, b_ret = flat(roll.obs), flat(roll.act), flat(roll.logp), flat(adv), flat(ret)
    b_logp, b_adv, b_ret = b_logp.float(), b_adv.float(), b_ret.float()
    whole = s.batch_size >= T * N  # one minibatch: no shuffling needed, advantages normalized once
    if whole and s.normalize_advantage and T * N > 1:
        b_adv = (b_adv - b_adv.mean()) / (b_adv.std() + 1e-8)
    rows: list[torch.Tensor] = []  # per minibatch: pg, vf, ent, kl, clipfrac
    for _ in range(s.n_epochs):
        epoch_start = len(rows)
        perm = None if whole else torch.from_numpy(rng.permutation(T * N))
        for start in range(0, T * N, s.batch_size):
            if whole:
                batch = (b_obs, b_act, b_logp, b_adv, b_ret)
            else:
                idx = perm[start:start + s.batch_size]
                a = b_adv[idx]
                if s.normalize_advantage and len(idx) > 1:
                    a = (a - a.mean()) / (a.std() + 1e-8)
                batch = (b_obs[idx], b_act[idx], b_logp[idx], a, b_ret[idx])
            if not _minibatch_step(ac, opt, batch, clip, s, rows):
                return _means(rows, epoch_start)  # SB3: skip this step and end the update early
    return _means(rows, epoch_start)


def _minibatch_step(ac, opt, batch, clip: float, s: _UpdateSettings, rows: list) -> bool:
    """One Adam step on a minibatch's PPO loss (hand-written gradients for plain MLPs, autograd otherwise);
    appends its diagnostics to rows. False: target_kl was exceeded and the step skipped."""
    obs_b, act_b, logp_b, a, ret_b = batch
    opt.ask_candidates()  # the protocol's ask, without copying the parameters out
    if ac.pi_layers is not None and ac.v_layers is not None and ac.dtype == torch.float32:
        loss, pg_loss, vf_loss, ent, log_ratio, ratio = ppo_loss_and_grads(
            ac, ac.pi_layers, ac.v_layers, obs_b, act_b, logp_b, a, ret_b, clip, s.vf_coef, s.ent_coef)
    else:
        loss, pg_loss, vf_loss, ent, log_ratio, ratio = autograd_loss_and_grads(
            ac, obs_b, act_b, logp_b, a, ret_b, clip, s.vf_coef, s.ent_coef)
    with torch.no_grad():  # SB3's approx_kl (Schulman's k3 estimator) and clip fraction
        dev = ratio - 1.0
        approx_kl = (dev - log_ratio).mean()
        rows.append(torch.stack([pg_loss.detach(), vf_loss.detach(), ent.detach(), approx_kl,
                                 (dev.abs_() > clip).float().mean()]))
    if s.target_kl is not None and float(approx_kl) > 1.5 * s.target_kl:
        return False
    clip_grad_norm(ac.flat_grad(), s.max_grad_norm)
    opt.tell(loss.item())
    return True


def _means(rows: list[torch.Tensor], last_epoch: int) -> dict[str, float]:
    """The update's diagnostics as SB3 logs them: means over every minibatch, approx_kl over those from
    index last_epoch on (in float64 over the float32 values, as SB3's np.mean of its .item()s)."""
    if not rows:
        return dict.fromkeys(("pg", "vf", "ent", "kl", "clipfrac"), float("nan"))
    table = torch.stack(rows).double()
    pg, vf, ent, _, clipfrac = table.mean(dim=0).tolist()
    return {"pg": pg, "vf": vf, "ent": ent, "kl": float(table[last_epoch:, 3].mean()), "clipfrac": clipfrac}


def _update_row(ac, mean: dict[str, float], lr: float, clip: float, ret: np.ndarray, roll: _Rollout) -> dict:
    """The algorithm's own columns of the update's history row: SB3's logged statistics, averaged as SB3
    averages them (`_means`); entropy is the mean entropy (SB3 logs its negative, entropy_loss)."""
    var_ret = float(np.var(ret))
    explained_var = float("nan") if var_ret == 0 else 1.0 - float(np.var(ret - roll.val)) / var_ret
    finished = roll.finished
    row = {"learning_rate": lr, "clip_range": clip, "policy_loss": mean["pg"], "value_loss": mean["vf"],
           "entropy": mean["ent"], "approx_kl": mean["kl"], "clip_fraction": mean["clipfrac"],
           "explained_variance": explained_var, "train_episodes": len(finished),
           "train_ep_len": float(np.mean([n for _, n in finished])) if finished else float("nan")}
    if not ac.discrete:
        row["std"] = float(torch.exp(ac.log_std.detach()).mean())
    return row


__all__ = ["PPOConfig", "RLResult", "compute_gae", "train_ppo"]
