"""REINFORCE line by line against a reference written from the formulas, not from our code.

The reference (`Reference`) is Sutton & Barto (2018), sec. 13.4, "REINFORCE with baseline (episodic)":
    G_t = sum_{k>=t} gamma^(k-t) r_k,  delta = G_t - v(S_t, w),
    w += alpha_w * delta * grad v(S_t, w),  theta += alpha * gamma^t * delta * grad log pi(A_t | S_t, theta),
and its batched form (Williams 1992; Spinning Up's "vanilla policy gradient" with rewards-to-go and a learned
value baseline): one descent step on -mean(log pi * (G_t - V(s_t))) + vf_coef * mean((V(s_t) - G_t)^2). It
holds its own float64 copies of the weights, runs plain per-episode, per-step loops, and takes its log
probabilities and entropies from torch.distributions. Ours runs through `train_reinforce` itself (one update,
spied on) or, for single-step batches, through its `_step` with an optimizer that does not step.

Each difference from the textbook (listed in evograd/rl/reinforce.py) is shown, not only listed: with
normalize_advantage=False, ent_coef=0, a huge max_grad_norm and vf_coef=0.5 our gradient is -1/N times the
summed textbook increments without gamma^t; the gamma^t variant differs from ours by exactly that factor, step
by step; the per-time-step online updates agree with our one batched step to first order in alpha; and each
of our knobs (advantage normalization, entropy bonus, grad-norm clipping, vf_coef, truncation bootstrap, mean
over steps rather than over episodes) moves the gradient exactly as its formula says.
"""

import math

import gymnasium as gym
import numpy as np
import pytest
import torch
from torch.distributions import Categorical, Independent, Normal

import evograd.rl.reinforce as reinforce_mod
from evograd.rl.reinforce import discounted_returns, train_reinforce

torch.set_num_threads(1)
F64 = torch.float64


# ---------------------------------------------------------------- the reference, from the formulas
def returns_to_go(rewards, gamma, bootstrap=0.0):
    """G_t as the direct sum: sum_{k=t}^{T-1} gamma^(k-t) r_k + gamma^(T-t) * bootstrap."""
    T = len(rewards)
    return [sum(gamma ** (k - t) * rewards[k] for k in range(t, T)) + gamma ** (T - t) * bootstrap
            for t in range(T)]


class Reference:
    """Actor and critic as lists of (W, b) float64 leaves (tanh between layers) plus the Gaussian log std."""

    def __init__(self, weights: dict, discrete: bool):
        self.w = {n: t.detach().to(F64).clone().requires_grad_(True) for n, t in weights.items()}
        self.discrete = discrete
        self.actor_names = [n for n in self.w if not n.startswith("critic.")]
        self.actor, self.critic = self._layers("actor."), self._layers("critic.")

    def _layers(self, prefix):
        names = [n for n in self.w if n.startswith(prefix)]
        assert [n.rsplit(".", 1)[1] for n in names] == ["weight", "bias"] * (len(names) // 2), names
        return [(self.w[names[i]], self.w[names[i + 1]]) for i in range(0, len(names), 2)]

    @staticmethod
    def mlp(layers, x):
        for i, (W, b) in enumerate(layers):
            x = W @ x + b
            if i < len(layers) - 1:
                x = torch.tanh(x)
        return x

    def pi(self, s):
        out = self.mlp(self.actor, torch.as_tensor(np.asarray(s), dtype=F64))
        if self.discrete:
            return Categorical(logits=out)
        return Independent(Normal(out, torch.exp(self.w["log_std"])), 1)

    def v(self, s):
        return self.mlp(self.critic, torch.as_tensor(np.asarray(s), dtype=F64))[0]

    def logp(self, s, a):
        return self.pi(s).log_prob(torch.as_tensor(np.asarray(a), dtype=torch.int64 if self.discrete else F64))

    def returns(self, ep, gamma, bootstrap=True):
        """The episode's G_t; a time-limit cut is worth the critic's value of the final observation."""
        boot = self.v(ep["final_obs"]).item() if (ep["truncated"] and bootstrap) else 0.0
        return returns_to_go(ep["rew"], gamma, boot)

    def grad(self, loss, names=None):
        names = list(self.w) if names is None else names
        gs = torch.autograd.grad(loss, [self.w[n] for n in names], allow_unused=True)
        return {n: torch.zeros_like(self.w[n]) if g is None else g for n, g in zip(names, gs)}

    def batched_loss(self, episodes, gamma, vf_coef=0.5, ent_coef=0.0, normalize=False, bootstrap=True,
                     per_episode=False):
        """The batched loss. per_episode: Spinning Up's 1/|D| sum over episodes of the summed policy terms."""
        rows = []  # (log pi(a_t|s_t), v(s_t), G_t, entropy)
        for ep in episodes:
            G = self.returns(ep, gamma, bootstrap)
            for t, (s, a) in enumerate(zip(ep["obs"], ep["act"])):
                rows.append((self.logp(s, a), self.v(s), G[t], self.pi(s).entropy()))
        n = len(rows)
        adv = [g - v.item() for _, v, g, _ in rows]  # the baseline is not differentiated through
        if normalize:
            m = sum(adv) / n
            sd = math.sqrt(sum((x - m) ** 2 for x in adv) / (n - 1))
            adv = [(x - m) / (sd + 1e-8) for x in adv]
        pg = -sum(lp * A for (lp, _, _, _), A in zip(rows, adv)) / (len(episodes) if per_episode else n)
        vf = sum((v - g) ** 2 for _, v, g, _ in rows) / n
        return pg + vf_coef * vf - ent_coef * sum(e for *_, e in rows) / n

    def textbook_increments(self, ep, gamma, t):
        """Sutton & Barto's updates of step t at the current weights, per unit step size."""
        s, a = ep["obs"][t], ep["act"][t]
        delta = self.returns(ep, gamma)[t] - self.v(s).item()
        inc = {n: gamma**t * delta * g for n, g in self.grad(self.logp(s, a), self.actor_names).items()}
        critic = [n for n in self.w if n.startswith("critic.")]
        return inc | {n: delta * g for n, g in self.grad(self.v(s), critic).items()}

    def online_episode(self, ep, gamma, alpha):
        """Sutton & Barto's loop over one terminated episode: update after every step, in place."""
        assert not ep["truncated"]
        for t in range(len(ep["rew"])):
            inc = self.textbook_increments(ep, gamma, t)  # delta, both gradients at the current weights
            with torch.no_grad():
                for n, d in inc.items():
                    self.w[n] += alpha * d


def adam_first_step(theta, g, lr, betas=(0.9, 0.999), eps=1e-5):
    """Kingma & Ba's Adam, step 1 from zero moments (eps 1e-5 as SB3)."""
    m, v = (1 - betas[0]) * g, (1 - betas[1]) * g * g
    return theta - lr * (m / (1 - betas[0])) / (torch.sqrt(v / (1 - betas[1])) + eps)


def clip(g: dict, max_norm):
    """torch.nn.utils.clip_grad_norm_ over all the tensors together."""
    norm = math.sqrt(sum(float((x * x).sum()) for x in g.values()))
    return {n: x * min(1.0, max_norm / (norm + 1e-6)) for n, x in g.items()}, norm


def rel(ours: dict, ref: dict) -> float:
    """max over tensors of max|ours - ref| / max|ref| (per tensor, so small layers are not hidden)."""
    return max(float((ours[n].to(F64) - ref[n]).abs().max() / max(float(ref[n].abs().max()), 1e-30))
               for n in ref)


# ---------------------------------------------------------------- ours, one update through train_reinforce
class _EndsEarlyOnOddSeeds(gym.Wrapper):
    """Pendulum never terminates: this one does at step 6 of an episode reset with an odd seed, so a Box batch
    holds terminated episodes beside the ones its TimeLimit truncates."""

    def reset(self, *, seed=None, options=None):
        self._odd, self._t = seed is not None and seed % 2 == 1, 0
        return self.env.reset(seed=seed, options=options)

    def step(self, action):
        obs, r, term, trunc, info = self.env.step(action)
        self._t += 1
        return obs, r, term or (self._odd and self._t >= 6), trunc, info


ENVS = {"cartpole": (lambda: gym.make("CartPole-v1", max_episode_steps=15)),
        "pendulum": (lambda: _EndsEarlyOnOddSeeds(gym.make("Pendulum-v1", max_episode_steps=10)))}
BASE = dict(seed=0, n_episodes=6, gamma=0.9, learning_rate=1e-2, hidden_sizes=(8, 8), ortho_init=False,
            log_std_init=-0.5, max_env_steps=1, eval_episodes=1)
TEXTBOOK = dict(normalize_advantage=False, ent_coef=0.0, max_grad_norm=1e9, vf_coef=0.5)
VARIANTS = {"textbook": {}, "normalized": dict(normalize_advantage=True), "entropy": dict(ent_coef=0.05),
            "clipped": dict(max_grad_norm=0.05), "vf_coef_1": dict(vf_coef=1.0),
            "defaults": dict(normalize_advantage=True, max_grad_norm=0.5),  # ReinforceConfig's own values
            "wide": dict(log_std_init=1.0)}  # Pendulum samples beyond the action bounds
_RUNS: dict = {}


def ours(env: str, variant: str) -> dict:
    """One update of train_reinforce: the initial weights, the recorded episodes, the gradient before and
    after clipping and the weights after the Adam step, all by parameter name (cached per case)."""
    if (env, variant) in _RUNS:
        return _RUNS[(env, variant)]
    rec: dict = {}

    class Spy(reinforce_mod.ActorCritic):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            rec["ac"], rec["init"] = self, {n: p.detach().clone() for n, p in self.named_parameters()}

    def run_episodes(*args, **kwargs):
        out = real_run(*args, **kwargs)
        rec["episodes"] = out[2]
        return out

    def clip_grad_norm(grad, max_norm):
        rec["grad"] = _split(rec["ac"], grad.clone())
        real_clip(grad, max_norm)
        rec["clipped"] = _split(rec["ac"], grad.clone())

    real_run, real_clip = reinforce_mod.run_episodes, reinforce_mod.clip_grad_norm
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(reinforce_mod, "ActorCritic", Spy)
        mp.setattr(reinforce_mod, "run_episodes", run_episodes)
        mp.setattr(reinforce_mod, "clip_grad_norm", clip_grad_norm)
        r = train_reinforce(ENVS[env], **{**BASE, **TEXTBOOK, **VARIANTS[variant]})
    assert r.n_updates == 1
    rec["after"] = {n: p.detach().clone() for n, p in rec["ac"].named_parameters()}
    rec["settings"] = {**BASE, **TEXTBOOK, **VARIANTS[variant]}
    _RUNS[(env, variant)] = rec
    return rec


def _split(ac, flat) -> dict:
    out, i = {}, 0
    for n, p in ac.named_parameters():
        out[n] = flat[i : i + p.numel()].view_as(p)
        i += p.numel()
    assert i == flat.numel()
    return out


class _NoStep:
    """An optimizer that does not step: `_step` then leaves our gradient in the flat buffer."""

    def ask_candidates(self):
        pass

    def tell(self, value):
        pass


def our_batch(rec, episodes, gamma):
    """Our (obs, actions, returns-to-go) of these episodes, at the initial weights (the bootstrap's critic)."""
    with torch.no_grad():
        for n, p in rec["ac"].named_parameters():
            p.copy_(rec["init"][n])
    return reinforce_mod._batch(rec["ac"], episodes, gamma)


def our_grad(rec, batch, rows=None, **kw) -> dict:
    """Our gradient at the initial weights on a batch (or on some of its rows), via `_step`."""
    obs, acts, returns = batch if rows is None else (x[rows] for x in batch)
    ac, s = rec["ac"], {**TEXTBOOK, **kw}
    with torch.no_grad():
        for n, p in ac.named_parameters():
            p.copy_(rec["init"][n])
    reinforce_mod._step(ac, _NoStep(), obs, acts, returns, s["ent_coef"], s["vf_coef"], s["max_grad_norm"],
                        s["normalize_advantage"])
    return _split(ac, ac.flat_grad().clone())


# ---------------------------------------------------------------- the comparisons
@pytest.mark.parametrize("gamma", [0.0, 0.5, 0.99, 1.0])
def test_returns_to_go_equal_the_direct_sum(gamma):
    rewards = np.random.default_rng(1).normal(size=37)
    for boot in (0.0, -2.5):
        np.testing.assert_allclose(discounted_returns(rewards, gamma, boot), returns_to_go(rewards, gamma, boot),
                                   rtol=1e-12, atol=1e-12)
    # the truncation bootstrap adds exactly gamma^(T-t) * v(s_T) to every G_t of the episode
    diff = discounted_returns(rewards, gamma, 3.0) - discounted_returns(rewards, gamma, 0.0)
    np.testing.assert_allclose(diff, [3.0 * gamma ** (37 - t) for t in range(37)], rtol=1e-12, atol=1e-300)


@pytest.mark.parametrize("variant", list(VARIANTS))
@pytest.mark.parametrize("env", list(ENVS))
def test_one_update_equals_the_reference(env, variant):
    rec = ours(env, variant)
    s, eps = rec["settings"], rec["episodes"]
    assert {ep["truncated"] for ep in eps} == {True, False}, "the batch needs both kinds of episode end"
    ref = Reference(rec["init"], discrete=env == "cartpole")
    # the returns-to-go, truncation bootstrap included
    G = torch.cat([torch.tensor(ref.returns(ep, s["gamma"])) for ep in eps])
    np.testing.assert_allclose(our_batch(rec, eps, s["gamma"])[2].to(F64), G, rtol=1e-5, atol=1e-6)
    loss = ref.batched_loss(eps, s["gamma"], s["vf_coef"], s["ent_coef"], s["normalize_advantage"])
    g = ref.grad(loss)
    g_clipped, norm = clip(g, s["max_grad_norm"])
    assert (norm > s["max_grad_norm"]) == (variant in ("clipped", "defaults"))  # active exactly there
    theta0 = {n: ref.w[n].detach() for n in g}
    theta1 = {n: adam_first_step(theta0[n], g_clipped[n], s["learning_rate"]) for n in g}
    moved = {n: rec["after"][n].to(F64) - rec["init"][n].to(F64) for n in g}
    adam_on_ours = {n: adam_first_step(theta0[n], rec["clipped"][n].to(F64), s["learning_rate"]) - theta0[n]
                    for n in g}
    errs = (rel(rec["grad"], g), rel(rec["clipped"], g_clipped), rel(rec["after"], theta1),
            rel(moved, adam_on_ours), rel(moved, {n: theta1[n] - theta0[n] for n in g}))
    print(f"{env}/{variant}: gradient {errs[0]:.1e}, clipped {errs[1]:.1e}, weights after {errs[2]:.1e}, "
          f"step vs Adam on our gradient {errs[3]:.1e}, step vs reference step {errs[4]:.1e}")
    assert max(errs[:4]) < 1e-5, errs
    # Adam's first step is lr * g / (|g| + 1e-5): on entries with |g| ~ 1e-6 it magnifies our float32 rounding
    # of g (~1e-7 of the tensor's largest entry) about 10^4-fold; the reference's own float32 run does the same.
    assert errs[4] < 1e-3, errs



def _actor(g: dict) -> dict:
    return {n: x for n, x in g.items() if not n.startswith("critic.")}


def _critic(g: dict) -> dict:
    return {n: x for n, x in g.items() if n.startswith("critic.")}


@pytest.mark.parametrize("env", list(ENVS))
def test_textbook_per_step_updates_are_ours_times_gamma_t(env):
    """One time step at a time (a batch of one row, vf_coef 0.5): Sutton & Barto's critic update delta *
    grad v is exactly minus our gradient, and their actor update is minus ours times gamma^t, the factor we
    drop. With gamma^t = 1 their summed updates are -N times our batched gradient."""
    rec = ours(env, "textbook")
    gamma, eps = rec["settings"]["gamma"], rec["episodes"]
    ref, batch = Reference(rec["init"], discrete=env == "cartpole"), our_batch(rec, eps, gamma)
    worst, row = 0.0, 0
    for ep in eps:
        for t in range(len(ep["rew"])):
            mine = our_grad(rec, batch, rows=[row])
            book = ref.textbook_increments(ep, gamma, t)
            worst = max(worst, rel({n: -gamma**t * x for n, x in _actor(mine).items()}, _actor(book)),
                        rel({n: -x for n, x in _critic(mine).items()}, _critic(book)))
            row += 1
    # 1e-5 of the worst single step: the Gaussian's a - mu cancels in float32 when a sample lands near its mean
    assert row == len(batch[0]) and worst < 5e-5, worst
    print(f"{env}: per-step textbook increments vs ours * gamma^t: {worst:.1e} over {row} steps")


def test_online_textbook_updates_agree_with_our_batched_step_to_first_order():
    """Sutton & Barto update after every time step, so later steps see weights the earlier ones moved; we
    take one step per batch at fixed weights. For a terminated episode with gamma = 1 (no gamma^t, no
    bootstrap), their displacement / alpha tends to -N times our gradient, the gap shrinking like alpha."""
    rec = ours("cartpole", "textbook")
    ep = next(e for e in rec["episodes"] if not e["truncated"])
    mine = our_grad(rec, our_batch(rec, [ep], 1.0))
    target = {n: -len(ep["rew"]) * x.to(F64) for n, x in mine.items()}
    errs = []
    for alpha in (1e-3, 1e-4, 1e-5):
        ref = Reference(rec["init"], discrete=True)
        w0 = {n: w.detach().clone() for n, w in ref.w.items()}
        ref.online_episode(ep, 1.0, alpha)
        errs.append(rel({n: (ref.w[n].detach() - w0[n]) / alpha for n in w0}, target))
    print("online vs batched, alpha 1e-3, 1e-4, 1e-5:", ", ".join(f"{e:.1e}" for e in errs))
    assert 5 < errs[0] / errs[1] < 20 and 5 < errs[1] / errs[2] < 20, errs  # first order in alpha
    assert errs[2] < 5e-3, errs


@pytest.mark.parametrize("env", list(ENVS))
def test_each_knob_moves_the_gradient_as_its_formula_says(env):
    runs = {v: ours(env, v) for v in VARIANTS}
    plain, s = runs["textbook"], runs["textbook"]["settings"]
    for v, r in runs.items():  # one batch of episodes per variant: same seeds, same first weights
        assert v == "wide" or [ep["rew"] for ep in r["episodes"]] == [ep["rew"] for ep in plain["episodes"]]
    P, eps, n_steps = plain["grad"], plain["episodes"], sum(len(ep["rew"]) for ep in plain["episodes"])
    ref = Reference(plain["init"], discrete=env == "cartpole")
    # advantage normalization rescales the policy term only; the critic still regresses on raw returns
    assert rel(_critic(runs["normalized"]["grad"]), _critic(P)) < 1e-6
    assert rel(_actor(runs["normalized"]["grad"]), _actor(P)) > 1e-2
    # vf_coef scales the critic's gradient only (separate networks, no shared layers)
    assert rel(_actor(runs["vf_coef_1"]["grad"]), _actor(P)) == 0.0
    assert rel(_critic(runs["vf_coef_1"]["grad"]), {n: 2 * x for n, x in _critic(P).items()}) < 1e-6
    # the entropy bonus adds -ent_coef * grad(mean entropy); a Gaussian's entropy depends on log_std only
    c = VARIANTS["entropy"]["ent_coef"]
    entropy = sum(ref.pi(o).entropy() for ep in eps for o in ep["obs"]) / n_steps
    dH = ref.grad(entropy, list(_actor(P)))
    shift = {n: runs["entropy"]["grad"][n].to(F64) - P[n].to(F64) for n in dH}
    assert rel(_critic(runs["entropy"]["grad"]), _critic(P)) == 0.0
    if env == "pendulum":
        assert all(float(dH[n].abs().max()) == 0 for n in dH if n != "log_std")
    assert rel(shift, {n: -c * x for n, x in dH.items()}) < 1e-3, rel(shift, dH)  # a difference of float32 grads
    # grad-norm clipping scales the whole vector, actor and critic together, by max_norm / (|g| + 1e-6)
    C, m = runs["clipped"], VARIANTS["clipped"]["max_grad_norm"]
    assert rel(C["grad"], P) == 0.0
    norm = math.sqrt(sum(float((x.double() ** 2).sum()) for x in P.values()))
    actor_norm = math.sqrt(sum(float((x.double() ** 2).sum()) for x in _actor(P).values()))
    assert rel(C["clipped"], {n: x * (m / (norm + 1e-6)) for n, x in P.items()}) < 1e-6
    assert norm > 2 * actor_norm  # so vf_coef (the critic's share of the norm) sets the actor's step here
    # Spinning Up's 1/|D| sum over episodes of the summed policy terms = ours (a mean over steps) * N / E
    per_episode = ref.grad(ref.batched_loss(eps, s["gamma"], vf_coef=0.0, per_episode=True), list(_actor(P)))
    assert rel(_actor(P), {n: x * len(eps) / n_steps for n, x in per_episode.items()}) < 1e-5
    # the truncation bootstrap matters: treating a time-limit cut as the end gives another gradient
    cut = ref.grad(ref.batched_loss(eps, s["gamma"], bootstrap=False))
    assert rel(P, cut) > 1e-2
    if env == "pendulum":  # ours (= the reference on the stored samples) is not the gradient at clipped actions
        W = runs["wide"]
        assert max(float(np.abs(a).max()) for ep in W["episodes"] for a in ep["act"]) > 2.0
        ref = Reference(W["init"], discrete=False)
        at_env = [{**ep, "act": [np.clip(a, -2.0, 2.0) for a in ep["act"]]} for ep in W["episodes"]]
        assert rel(W["grad"], ref.grad(ref.batched_loss(at_env, s["gamma"]))) > 1e-2
