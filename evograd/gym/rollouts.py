"""Batched evaluation of a slice of a population on a Gymnasium task, inside one process.

A worker owns `n_slots` environment slots. Each (candidate, episode) job runs in a slot from the state
`env.reset(seed=episode_seed(...))` gives; when an episode ends its slot takes the next pending job.
All slots step together and all their actions come from one batched computation, so there is no Python
loop over population members per env step (except the unavoidable per-env `step` of envs that are not
vectorized). Results are identical however the population is split across workers, because

* every episode's reset seed depends only on (run seed, generation, candidate, episode), and
* each member's actions are computed with an operation order that does not depend on the batch
  (BLAS and numpy's pairwise reductions change their rounding with the batch shape): linear policies
  as a sequential sum in numpy (no torch per step), other modules per member under torch.vmap.

Observation statistics (ARS V2) are returned as per-(member, episode) sums, so a parent that gathers
slices in candidate order gets the same statistics for any split (`concat_results`).
"""
from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from ..core.running_stats import RunningMeanStd
from .kernels import LinearKernel, TorchKernel
from .policies import Policy, make_policy, num_params, space_to_data
from .slots import GymSlots, SlotError, is_gymnasium_mujoco
from .vector_cartpole import MAX_EPISODE_STEPS, CartPoleSlots, int_to_words, is_native_cartpole, seedseq_state


class RolloutError(RuntimeError):
    """An environment raised while a candidate was being evaluated; the message names env, candidate, seed."""


def episode_seed(run_seed: int, generation: int, candidate: int, episode: int) -> int:
    """The reset seed of one episode: a function of its coordinates only, never of the worker split."""
    words = np.random.SeedSequence([int(run_seed), int(generation), int(candidate), int(episode)]).generate_state(
        2, np.uint32)
    return (int(words[0]) << 31) ^ int(words[1])  # 63 bits: a valid seed for every Gymnasium env


EVAL_SALT = 0x5EED_E7A1  # evaluation episodes use their own fixed seeds, never the training ones


def evaluation_seeds(run_seed: int, episodes: int) -> list[int]:
    """The reset seeds of a run's evaluation episodes, one list for every method of a comparison (population
    methods through `GymProblem.evaluate_policy`, PPO/REINFORCE, SB3 methods), so their rows are scored on
    the same episodes. Fixed for the whole run and disjoint from its training episodes; independent across
    run seeds (a hash, unlike 10_000 + seed + i, where seed 0's second episode is seed 1's first)."""
    return episode_seeds(int(run_seed) ^ EVAL_SALT, 0, list(range(episodes)), [0] * episodes)


def episode_seeds(run_seed: int, generation: int, candidates, episodes) -> list[int]:
    """`episode_seed` for many (candidate, episode) pairs at once (one batched SeedSequence hash)."""
    cand = np.asarray(candidates, dtype=np.int64).reshape(-1)
    eps = np.asarray(episodes, dtype=np.int64).reshape(-1)
    if len(cand) == 0:
        return []
    if cand.min() < 0 or eps.min() < 0 or cand.max() > 0xFFFFFFFF or eps.max() > 0xFFFFFFFF:
        return [episode_seed(run_seed, generation, c, e) for c, e in zip(cand.tolist(), eps.tolist())]
    head = int_to_words(run_seed) + int_to_words(generation)
    words = np.empty((len(cand), len(head) + 2), dtype=np.uint32)
    words[:, :len(head)] = head
    words[:, -2], words[:, -1] = cand, eps
    w = seedseq_state(words, 2).astype(np.uint64)
    return ((w[:, 0] << np.uint64(31)) ^ w[:, 1]).tolist()


@dataclass
class RolloutResult:
    returns: np.ndarray          # (k,) mean episode return per member; NaN where failed
    episode_returns: np.ndarray  # (k, episodes); NaN for failed or skipped episodes
    lengths: np.ndarray          # (k, episodes) live steps per episode
    failed: np.ndarray           # (k,) bool: NaN observation/reward or non-finite parameters
    env_steps: int               # live env steps (idle slots do not count)
    obs_count: np.ndarray        # (k,) observations seen per member (those an action was computed for)
    obs_sum: np.ndarray          # (k, obs_dim) float64 sums of those observations
    obs_sumsq: np.ndarray        # (k, obs_dim) sums of squares
    slot_steps: int              # slots x batched steps: the slot-steps computed, live or idle
    batched_steps: int
    wall_s: float
    timed_out: list = field(default_factory=list)  # candidate ids whose env call ran past the timeout

    @property
    def slot_utilization(self) -> float:
        return self.env_steps / max(self.slot_steps, 1)

    @property
    def obs_stats(self) -> RunningMeanStd:
        return obs_stats_from_sums(self.obs_count, self.obs_sum, self.obs_sumsq)


def obs_stats_from_sums(count: np.ndarray, s1: np.ndarray, s2: np.ndarray) -> RunningMeanStd:
    rms = RunningMeanStd(s1.shape[1:])
    n = float(np.sum(count))
    if n > 0:
        mean = s1.sum(axis=0) / n
        rms.merge((n, mean, np.maximum(s2.sum(axis=0) / n - mean**2, 0.0)))
    return rms


def concat_results(results: Sequence[RolloutResult]) -> RolloutResult:
    """Join slices given in candidate order; the observation statistics then equal an unsplit run's."""
    cat = lambda name: np.concatenate([getattr(r, name) for r in results])
    total = lambda name: sum(getattr(r, name) for r in results)
    return RolloutResult(cat("returns"), cat("episode_returns"), cat("lengths"), cat("failed"), total("env_steps"),
                         cat("obs_count"), cat("obs_sum"), cat("obs_sumsq"), total("slot_steps"),
                         total("batched_steps"), total("wall_s"), [c for r in results for c in r.timed_out])


class RolloutWorker:
    """Evaluates population slices on one env kind; keeps envs and the policy alive between calls.

    env_spec: a Gymnasium id or a zero-argument constructor (never an env instance: workers must build
    their own). policy_spec: keyword arguments for `make_policy` (spaces come from the env).
    backend: "auto" (our vector CartPole for CartPole-v0/v1, one Gymnasium env per slot otherwise),
    "cartpole" or "gym".
    """

    def __init__(self, env_spec, policy_spec: dict | None = None, episodes: int = 1,
                 max_episode_steps: int | None = None, n_slots: int | None = None, backend: str = "auto"):
        import gymnasium as gym

        if isinstance(env_spec, gym.Env):
            raise TypeError("RolloutWorker takes an env id or a zero-argument constructor, not an env instance")
        if not (isinstance(env_spec, str) or callable(env_spec)):
            raise TypeError(f"env_spec must be a Gymnasium id or a zero-argument constructor; got {env_spec!r}")
        if int(episodes) < 1 or (n_slots is not None and int(n_slots) < 1):
            raise ValueError(f"episodes and n_slots must be >= 1; got {episodes} and {n_slots}")
        if backend not in ("auto", "cartpole", "gym"):
            raise ValueError(f"backend must be 'auto', 'cartpole' or 'gym'; got {backend!r}")
        self.env_spec, self.episodes, self.n_slots = env_spec, int(episodes), n_slots
        self.env_id = env_spec if isinstance(env_spec, str) else getattr(env_spec, "__name__", repr(env_spec))

        def make_env():
            if isinstance(env_spec, str):
                kw = {} if max_episode_steps is None else {"max_episode_steps": int(max_episode_steps)}
                return gym.make(env_spec, **kw)
            env = env_spec()
            if max_episode_steps is not None:
                env = gym.wrappers.TimeLimit(env, int(max_episode_steps))
            return env

        probe = make_env()
        self.observation_space, self.action_space = probe.observation_space, probe.action_space
        self.policy = self._build_policy(dict(policy_spec or {}))
        self.dim = num_params(self.policy)
        native = is_native_cartpole(env_spec)
        if backend == "cartpole" and not native:
            raise ValueError(f"backend='cartpole' needs 'CartPole-v0' or 'CartPole-v1'; got {env_spec!r}")
        if backend != "gym" and native:
            probe.close()
            self.backend = CartPoleSlots(max_episode_steps or MAX_EPISODE_STEPS[env_spec])
            self._default_slots = 1024
        else:
            start = int(getattr(self.action_space, "start", 0)) if self.policy.discrete else 0
            self.backend = GymSlots(make_env, self.policy.obs_dim, self.policy.discrete, start,
                                       share_model=is_gymnasium_mujoco(env_spec, probe))
            self.backend.envs.append(probe)
            self._default_slots = 8  # see GymSlots: more interleaved MuJoCo envs step slower
        if self.policy.kind == "linear":
            self._kernel_cls = LinearKernel
        else:
            torch.set_num_threads(1)
            self._kernel_cls = TorchKernel

    def _build_policy(self, spec: dict) -> Policy:
        for key, space in (("observation_space", self.observation_space), ("action_space", self.action_space)):
            given = spec.pop(key, None)
            if given is not None and space_to_data(given) != space_to_data(space):
                raise ValueError(f"policy_spec {key} {given!r} does not match {self.env_id}'s {space!r}")
        return make_policy(observation_space=self.observation_space, action_space=self.action_space, **spec)

    def close(self) -> None:
        if isinstance(self.backend, GymSlots):
            self.backend.close()

    def _actions(self, logits: np.ndarray) -> np.ndarray:
        pol = self.policy
        if pol.discrete:
            return np.argmax(logits, axis=0)
        low, high = self._low, self._high
        a = low + (np.tanh(logits) + 1.0) * 0.5 * (high - low) if pol.box_head == "tanh" else np.clip(logits, low, high)
        return a.T.reshape((-1, *pol.action_space.shape)).astype(pol.action_space.dtype)

    def evaluate(self, params, candidate_ids, run_seed: int, generation: int, obs_norm_state=None,
                 collect_obs_stats: bool = True, timeout: float | None = None) -> RolloutResult:
        """Returns of rows `params` (candidates `candidate_ids`); `timeout` limits each env reset/step
        call (Gymnasium slots only: our vectorized CartPole cannot hang), failing a candidate that hangs."""
        t0 = time.perf_counter()
        P, ids = np.atleast_2d(np.asarray(params, dtype=np.float64)), np.asarray(candidate_ids, np.int64).reshape(-1)
        if P.ndim != 2 or P.shape[1] != self.dim:
            raise ValueError(f"params have shape {np.shape(params)}; this policy on {self.env_id} needs "
                             f"(k, {self.dim}) (num_params = {self.dim})")
        if len(ids) != len(P):
            raise ValueError(f"{len(ids)} candidate_ids for {len(P)} parameter vectors")
        if not self.policy.discrete:
            self._low = np.asarray(self.action_space.low, np.float64).reshape(-1, 1)
            self._high = np.asarray(self.action_space.high, np.float64).reshape(-1, 1)
        mean = std = None
        if self.policy.obs_norm and obs_norm_state is not None:
            rms = obs_norm_state if isinstance(obs_norm_state, RunningMeanStd) else RunningMeanStd.from_state_dict(
                obs_norm_state)  # frozen for this generation; no stats means identity, as in ARS
            O = self.policy.obs_dim
            mean, std = rms.mean.reshape(O, 1), rms.std.reshape(O, 1)
        run = _SliceRun(self, P, ids, run_seed, generation, timeout)
        run.start(np.arange(run.n))
        run.step_all(mean, std, collect_obs_stats)
        return run.result(collect_obs_stats, t0)

    def _error(self, err: SlotError, slot_m, slot_e, ids, run_seed, generation) -> RolloutError:
        m, e = int(slot_m[err.slot]), int(slot_e[err.slot])
        seed = episode_seed(run_seed, generation, int(ids[m]), e)
        return RolloutError(
            f"env {self.env_id!r} raised {type(err.exc).__name__}: {err.exc} while evaluating candidate "
            f"{int(ids[m])} (row {m}, episode {e}, reset seed {seed}, generation {generation}).\n"
            f"Original traceback:\n{err.tb}")


class _SliceRun:
    """One `RolloutWorker.evaluate` call: the (member, episode) jobs, the job each slot runs, what the ended
    episodes returned. Lengths come from the step at which a slot started, so the hot loop does no per-slot
    counting; CartPole's reward is 1 per step, so its return is its length."""

    def __init__(self, worker: RolloutWorker, P: np.ndarray, ids: np.ndarray, run_seed: int, generation: int,
                 timeout: float | None):
        k, E, O = len(P), worker.episodes, worker.policy.obs_dim
        self.worker, self.P, self.ids, self.run_seed, self.generation = worker, P, ids, run_seed, generation
        self.ep_ret = np.full((k, E), np.nan)
        self.lengths = np.zeros((k, E), dtype=np.int64)
        self.failed = ~np.isfinite(P).all(axis=1)
        self.o_cnt, self.o_s1, self.o_s2 = np.zeros((k, E)), np.zeros((k, E, O)), np.zeros((k, E, O))
        self.jobs = [(m, e) for e in range(E) for m in range(k) if not self.failed[m]]
        n = self.n = worker.n_slots or min(max(len(self.jobs), 1), worker._default_slots)
        backend = self.backend = worker.backend
        self.kernel = worker._kernel_cls(worker.policy, n, worker._actions)
        backend.prepare(n)
        # only Gymnasium slots can hang (our vectorized CartPole cannot): no per-step check otherwise
        self.watch = timeout is not None and isinstance(backend, GymSlots)
        if isinstance(backend, GymSlots):
            backend.timeout = timeout
        self.timed_out: list[int] = []
        self.slot_m, self.slot_e = np.full(n, -1), np.zeros(n, dtype=np.int64)
        self.slot_t0, self.slot_ret, self.live = np.zeros(n, dtype=np.int64), np.zeros(n), np.zeros(n, dtype=bool)
        self.s1, self.s2, self.sq = np.zeros((O, n)), np.zeros((O, n)), np.empty((O, n))
        self.next = self.n_live = self.t = 0  # next job, live slots, batched steps so far

    def note_timeouts(self) -> None:
        if self.backend.timed_out:
            self.timed_out.extend(int(self.ids[self.slot_m[s]]) for s in self.backend.timed_out)
            self.backend.timed_out.clear()

    def error(self, err: SlotError) -> RolloutError:
        return self.worker._error(err, self.slot_m, self.slot_e, self.ids, self.run_seed, self.generation)

    def start(self, slots) -> None:
        """Give the free `slots` the next pending jobs (skipping members already failed) and reset their envs."""
        take, failed = [], self.failed
        while self.next < len(self.jobs) and len(take) < len(slots):
            if not failed[self.jobs[self.next][0]]:
                take.append(self.jobs[self.next])
            self.next += 1
        if not take:
            return
        slots = np.asarray(slots[:len(take)], dtype=np.int64)
        mem, eps = np.array([t[0] for t in take]), np.array([t[1] for t in take])
        self.slot_m[slots], self.slot_e[slots], self.slot_t0[slots], self.slot_ret[slots] = mem, eps, self.t, 0.0
        self.s1[:, slots], self.s2[:, slots] = 0.0, 0.0
        self.live[slots] = True
        self.n_live += len(slots)
        self.kernel.assign(slots, self.P[mem])
        try:
            bad = self.backend.reset(slots, episode_seeds(self.run_seed, self.generation, self.ids[mem], eps))
        except SlotError as err:
            raise self.error(err) from err.exc
        if self.watch:
            self.note_timeouts()
        if bad is not None and len(bad):
            self.finish(bad, np.ones(len(bad), dtype=bool))

    def finish(self, slots, bad) -> None:
        """Record the episodes that ended in `slots` (bad: NaN observation or reward) and free the slots."""
        m, e, length = self.slot_m[slots], self.slot_e[slots], self.t - self.slot_t0[slots]
        ret = length.astype(np.float64) if self.backend.reward_is_one else self.slot_ret[slots]
        self.ep_ret[m, e] = np.where(bad, np.nan, ret)
        self.lengths[m, e] = length
        self.failed[m[bad]] = True
        self.o_cnt[m, e], self.o_s1[m, e], self.o_s2[m, e] = length, self.s1[:, slots].T, self.s2[:, slots].T
        self.live[slots] = False
        self.slot_m[slots] = -1
        self.n_live -= len(slots)

    def step_all(self, mean, std, collect_obs_stats: bool) -> None:
        """The hot loop: step every slot together, one batched action computation per step, until no job is
        left; Python work per step is independent of the number of slots (bound names, no per-slot loop)."""
        backend, kernel, live, slot_ret, watch = self.backend, self.kernel, self.live, self.slot_ret, self.watch
        s1, s2, sq = self.s1, self.s2, self.sq
        with np.errstate(over="ignore", invalid="ignore"):  # idle slots may hold a failed episode's NaN/inf
            while self.n_live:
                obs = backend.obs()
                if collect_obs_stats:
                    s1 += obs
                    np.multiply(obs, obs, out=sq)
                    s2 += sq
                x = obs if mean is None else (obs - mean) / std
                try:
                    rew, done, bad = backend.step(kernel(x), live)
                except SlotError as err:
                    raise self.error(err) from err.exc
                if watch:
                    self.note_timeouts()
                self.t += 1
                if rew is not None:
                    slot_ret += rew
                if bad is not None:
                    done |= bad
                done &= live
                if done.any():
                    d = np.flatnonzero(done)
                    self.finish(d, np.zeros(len(d), dtype=bool) if bad is None else bad[d])
                    self.start(d)

    def result(self, collect_obs_stats: bool, t0: float) -> RolloutResult:
        failed, lengths = self.failed, self.lengths
        if not collect_obs_stats:
            self.o_cnt[:] = 0
        assert not (~failed[:, None] & (lengths == 0)).any(), "internal: an episode was never run"
        returns = np.where(failed, np.nan, self.ep_ret.mean(axis=1))
        env_steps = int(lengths.sum())
        return RolloutResult(returns, self.ep_ret, lengths, failed, env_steps, self.o_cnt.sum(axis=1),
                             self.o_s1.sum(axis=1), self.o_s2.sum(axis=1), self.t * self.n, self.t,
                             time.perf_counter() - t0, self.timed_out)


_CACHE = threading.local()  # per thread: a Dask worker may run several tasks at once in its threads


def cached_worker(env_spec, policy_spec: dict | None = None, episodes: int = 1,
                  max_episode_steps: int | None = None, n_slots: int | None = None) -> RolloutWorker:
    """One RolloutWorker per process and configuration, so pool workers keep their envs between calls."""
    name = env_spec if isinstance(env_spec, str) else (
        f"{getattr(env_spec, '__module__', '')}.{getattr(env_spec, '__qualname__', repr(env_spec))}")
    key = (name, repr(sorted((policy_spec or {}).items())), episodes, max_episode_steps, n_slots)
    workers = _CACHE.__dict__.setdefault("workers", {})
    if key not in workers:
        workers[key] = RolloutWorker(env_spec, policy_spec, episodes, max_episode_steps, n_slots)
    return workers[key]


def evaluate_slice(env_spec, policy_spec, params, candidate_ids, run_seed, generation, episodes=1,
                   max_episode_steps=None, obs_norm_state=None, collect_obs_stats=True,
                   timeout=None) -> RolloutResult:
    """Evaluate one slice in this process with a cached worker (the function a worker task calls)."""
    worker = cached_worker(env_spec, policy_spec, episodes, max_episode_steps)
    return worker.evaluate(params, candidate_ids, run_seed, generation, obs_norm_state, collect_obs_stats, timeout)
