"""REINFORCE with a learned value baseline (Williams 1992; Sutton & Barto 2018, sec. 13.4).

The simplest policy-gradient method, kept as the floor of the gradient baselines: complete episodes,
Monte-Carlo returns-to-go G_t, and one gradient step per batch of episodes on
    -mean(log pi(a_t|s_t) * (G_t - V(s_t))) + vf_coef * mean((V(s_t) - G_t)^2) - ent_coef * mean(entropy),
the means over every time step of the batch. Same actor/critic, evaluation and accounting as PPO
(`evograd.rl.common`), so the two are comparable. How this differs from Sutton & Barto's "REINFORCE with
baseline (episodic)" (tests/rl/test_reinforce_reference.py shows each against a reference written from it):
- no gamma^t on step t's policy term (as SB3's A2C/PPO and Spinning Up; the discount is in G_t only);
- one step per batch, at fixed weights, not one update per time step (equal to first order in the step size);
- the policy term is a mean over time steps (Spinning Up's formula averages per-episode sums: a factor
  steps/episodes);
- actor and critic in one loss, the critic's squared error weighted by vf_coef (0.5 gives the textbook's
  delta * grad v); separate networks, so vf_coef scales the critic's gradient only, except through clipping;
- advantages standardized over the batch (normalize_advantage), an entropy bonus (ent_coef), the joint
  gradient's norm clipped (max_grad_norm, actor and critic together), and Adam (eps 1e-5) for SGD;
- an episode cut by a time limit bootstraps its return with the critic's value of the final observation
  instead of pretending the task ended there;
- a Box action's log probability is that of the unclipped Gaussian sample; the env gets it clipped.
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np
import torch
from torch.nn import functional as F

from ..core.serialization import applying
from ..core.validation import check_bool, check_float, check_int, check_memory
from ..optim.registry import make as make_optimizer
from .common import ActorCritic, clip_grad_norm, env_factory, parse_schedule
from .loop import RLResult, RunLoop, check_checkpoint_args, learner_state, load_learner_state, run_episodes
from .settings import ReinforceConfig
from .settings import settings as rl_settings

_OWNER = "train_reinforce"


def discounted_returns(rewards: np.ndarray, gamma: float, bootstrap: float = 0.0) -> np.ndarray:
    """G_t = r_t + gamma * G_{t+1}, with G_T = bootstrap (the value of the state after the last step)."""
    out = np.empty(len(rewards))
    g = float(bootstrap)
    for t in range(len(rewards) - 1, -1, -1):
        g = rewards[t] + gamma * g
        out[t] = g
    return out


def train_reinforce(env: "str | Callable[[], Any]", config: ReinforceConfig | None = None, *,
                    callback: Callable[[dict], Any] | None = None, progress: bool = False,
                    checkpoint: Callable[[dict], Any] | None = None, resume: dict | None = None,
                    **settings: Any) -> RLResult:
    """Train with REINFORCE + value baseline, maximizing the return; returns an `RLResult` (best policy
    by evaluation).

    config : a `ReinforceConfig`; settings : its fields as keyword arguments, over `config`'s. Episode seeds
    derive from (seed, update, slot). callback, progress, checkpoint and resume mean what they mean in
    `train_ppo`. Every update starts fresh episodes seeded by the update count, so here a run resumed from a
    checkpoint continues exactly as it would have.
    """
    c = rl_settings(ReinforceConfig, config, settings, _OWNER)
    return _train_reinforce(env, callback, progress, checkpoint, resume, **c.kwargs())


def _train_reinforce(env, callback, progress, checkpoint, resume, *, policy, seed, max_env_steps, n_episodes,
                     gamma, learning_rate, ent_coef, vf_coef, max_grad_norm, normalize_advantage, hidden_sizes,
                     activation, critic_hidden_sizes, log_std_init, ortho_init, eval_every, eval_episodes,
                     eval_seed, max_seconds, target_return, env_kwargs, torch_threads) -> RLResult:
    """train_reinforce with every ReinforceConfig field as a keyword argument."""
    o = _OWNER
    n_episodes = check_int(n_episodes, "n_episodes", o, low=1)
    check_memory(n_episodes, "n_episodes", o, n_episodes, "n_episodes", itemsize=1024,  # one env per episode
                 unit="envs of at least 1 KiB")
    gamma = check_float(gamma, "gamma", o, low=0.0, high=1.0)
    ent_coef = check_float(ent_coef, "ent_coef", o)
    vf_coef = check_float(vf_coef, "vf_coef", o, low=0.0)
    max_grad_norm = check_float(max_grad_norm, "max_grad_norm", o, low=0.0, low_inclusive=False)
    normalize_advantage = check_bool(normalize_advantage, "normalize_advantage", o)
    lr_fn = parse_schedule(learning_rate, "learning_rate", o)
    check_checkpoint_args(o, checkpoint, resume)
    loop = RunLoop(o, env, seed, max_env_steps, eval_every, eval_episodes, eval_seed, max_seconds,
                   target_return, env_kwargs, torch_threads, callback, progress)
    envs = []
    with loop.torch_mode():
        try:
            ac = ActorCritic(o, loop.spaces, policy, loop.seed, hidden_sizes, activation, critic_hidden_sizes,
                             log_std_init, ortho_init)
            opt = make_optimizer("adam", lr=lr_fn(1.0), eps=1e-5)
            opt.bind([ac.flatten_parameters()])
            factory = env_factory(env, env_kwargs)
            envs = [factory() for _ in range(n_episodes)]
            rng = np.random.default_rng(loop.seed)

            if resume is None:
                loop.start(ac, optimizer=opt)
            else:
                with applying("the resume state"):
                    load_learner_state(o, "reinforce", resume, ac, opt, rng)
                    loop.start(ac, resume=resume["loop"], optimizer=opt)
            return _train(loop, ac, opt, envs, rng, gamma, lr_fn, ent_coef, vf_coef, max_grad_norm,
                          normalize_advantage, checkpoint)
        finally:
            for e in envs:
                e.close()
            loop.close()


def _train(loop, ac, opt, envs, rng, gamma, lr_fn, ent_coef, vf_coef, max_grad_norm, normalize_advantage,
           checkpoint) -> RLResult:
    """REINFORCE's outer loop, one update per pass: a batch of complete episodes (one per env, seeded by
    (seed, update, slot), so a resumed run replays exactly), their returns-to-go, one gradient step."""
    def act(obs):
        with torch.no_grad():
            out = ac.pi(torch.as_tensor(obs, dtype=ac.dtype))
        stored, env_action, _ = ac.sample(out, rng)
        return env_action, stored

    while not loop.done():
        update = opt.generation
        seeds = [int(np.random.SeedSequence([loop.seed, update, i]).generate_state(1)[0])
                 for i in range(len(envs))]
        rets, lens, trajs = run_episodes(envs, seeds, act, record=True)
        loop.add_steps(int(lens.sum()))
        obs, acts, returns = _batch(ac, trajs, gamma)
        lr = lr_fn(loop.progress_remaining())
        opt.set_lr(lr)
        pg_loss, vf_loss, entropy = _step(ac, opt, obs, acts, returns, ent_coef, vf_coef, max_grad_norm,
                                          normalize_advantage)
        row = {"learning_rate": lr, "policy_loss": pg_loss.item(), "value_loss": vf_loss.item(),
               "entropy": entropy.mean().item(), "train_episodes": len(envs), "train_ep_len": float(lens.mean())}
        if not ac.discrete:
            row["std"] = float(torch.exp(ac.log_std.detach()).mean())
        loop.end_iteration(row, rets, ac)
        if checkpoint is not None:
            checkpoint(learner_state("reinforce", loop, ac, opt, rng))
    return loop.finish(ac, None, n_updates=opt.generation)


def _batch(ac, trajs: list[dict], gamma: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The episodes' observations, actions and returns-to-go as one batch; an episode cut by a time limit
    bootstraps its return with the critic's value of its final observation."""
    obs = torch.as_tensor(np.concatenate([np.stack(tr["obs"]) for tr in trajs]), dtype=ac.dtype)
    acts = torch.as_tensor(np.concatenate([np.stack(tr["act"]) for tr in trajs]))
    finals = [tr["final_obs"] for tr in trajs]
    with torch.no_grad():
        v_final = ac.critic(torch.as_tensor(np.stack(finals), dtype=ac.dtype))[:, 0].numpy()
    g = np.concatenate([discounted_returns(np.asarray(tr["rew"]), gamma, v_final[i] if tr["truncated"] else 0.0)
                        for i, tr in enumerate(trajs)])
    return obs, acts, torch.as_tensor(g, dtype=ac.dtype)


def _step(ac, opt, obs, acts, returns, ent_coef, vf_coef, max_grad_norm, normalize_advantage):
    """One Adam step on the loss of the module docstring; returns (policy loss, value loss, entropies)."""
    logp, entropy = ac.evaluate(obs, acts)
    values = ac.critic(obs)[:, 0]
    adv = returns - values.detach()
    if normalize_advantage and len(adv) > 1:
        adv = (adv - adv.mean()) / (adv.std() + 1e-8)
    pg_loss = -(logp * adv).mean()
    vf_loss = F.mse_loss(values, returns)
    loss = pg_loss - ent_coef * entropy.mean() + vf_coef * vf_loss
    opt.ask_candidates()  # the protocol's ask, without copying the parameters out
    ac.flat_grad(zero=True)
    loss.backward()
    clip_grad_norm(ac.flat_grad(), max_grad_norm)
    opt.tell(loss.item())
    return pg_loss, vf_loss, entropy


__all__ = ["ReinforceConfig", "discounted_returns", "train_reinforce"]
