"""A Gymnasium task as a fitness function for a population: `GymProblem.evaluate(X) -> returns`.

The problem owns the run's bookkeeping (generation counter, env-step accounting, merged observation
statistics) and hands the rollouts to `evograd.gym.rollouts`: in this process for n_jobs=1, otherwise to
local joblib workers or a Dask cluster (`evograd.parallel.backends`), whose processes keep their envs alive
between generations (a cached worker per process). Only parameters, returns and observation sums cross
process boundaries; a worker that dies has its slice re-run. A population is split into
contiguous slices in candidate order and every episode is seeded from (seed, generation, candidate,
episode), so returns and observation statistics are identical for any n_jobs.

A population given in a compact `Candidates` form (seeded noise for OpenAI-ES, ARS, SNES; seed lists
for the GA) is shipped compactly: each task gets its slice's `slice_state` (for seeded noise: the
center, sigma, and only the slice's seeds and signs) and rebuilds its rows with the same `take` code
the asking process would use, so a task costs O(dim + slice length) bytes instead of
O(slice length x dim) and the returns are bit-identical to shipping the dense rows.
"""
from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from ..core.candidates import Candidates, DenseCandidates
from ..core.progress import warn_repeating
from ..core.running_stats import RunningMeanStd
from ..core.validation import ParameterError, check_float, check_int, check_memory
from ..parallel.backends import Backend, check_backend, check_n_jobs, make_backend, run_slices, slice_spans
from ..parallel.evaluator import EvaluationTimeoutWarning
from .policies import Policy, make_policy, num_params, save_policy, set_flat_params
from .rollouts import EVAL_SALT, RolloutResult, concat_results, evaluate_slice

_RENAMED = ("GymProblem.{old} is deprecated: it is now called {new} (state_dict()/load_state_dict() in every "
            "stateful object). The old name still works for now.")


class GymProblem:
    """Mean episode return of a policy, for every row of a population.

    Returns are maximized (`maximize = True`): `train` builds on that, switching its optimizer to
    maximize=True before the first tell, so nobody flips signs by hand.

    Parameters
    ----------
    env : str or callable
        A Gymnasium env id ("LunarLander-v3", "evograd/LQR-v0") or a zero-argument constructor.
    policy : "linear", "mlp" or torch.nn.Module, default "linear"
    episodes : int, default 1
        Episodes per candidate; the fitness is their mean return.
    seed : int, default 0
        Seeds every training episode (with generation, candidate and episode) and the MLP initialisation.
    n_jobs : int, default 1
        Local worker processes (-1: all cores); with backend="dask" and no address, the size of the
        local cluster started.
    backend : "joblib", "dask" or an `evograd.parallel.backends.Backend`, default "joblib"
        Where populations are evaluated. "dask" connects to the scheduler at `address` (e.g.
        "tcp://10.0.0.5:8786"); without an address it starts a local cluster.
    address : str or None
        Dask scheduler address (backend="dask" only).
    timeout : float or None
        Seconds one env reset/step call may take; a candidate whose env hangs longer is stopped and
        counts as failed (NaN). None: no limit.
    retries : int, default 2
        Times a slice lost to a dead worker is re-run before its candidates are isolated (see
        `evograd.parallel.backends`).
    max_episode_steps : int or None
        Overrides the env's time limit.
    obs_norm : bool, default False
        ARS-V2 observation normalization: statistics merged from all workers after each generation,
        frozen while a generation runs and while evaluating, saved with the policy.
    hidden_sizes, activation, box_head, bias : forwarded to `make_policy`.
    """

    maximize = True

    def __init__(self, env: str | Callable, policy: Any = "linear", episodes: int = 1, seed: int = 0,
                 n_jobs: int = 1, max_episode_steps: int | None = None, obs_norm: bool = False,
                 hidden_sizes=(64, 64), activation: str = "tanh", box_head: str = "clip", bias: bool = True,
                 backend: str | Backend = "joblib", address: str | None = None, timeout: float | None = None,
                 retries: int = 2):
        import gymnasium as gym

        owner = "GymProblem"
        self.episodes = check_int(episodes, "episodes", owner, low=1)
        self.seed = check_int(seed, "seed", owner, low=0)
        self.n_jobs = check_n_jobs(n_jobs, owner)
        check_backend(backend, address, owner)
        self.backend_spec, self.address = backend, address
        self.timeout = None if timeout is None else check_float(timeout, "timeout", owner, low=0.0,
                                                                low_inclusive=False)
        self.retries = check_int(retries, "retries", owner, low=0)
        self.max_episode_steps = None if max_episode_steps is None else check_int(
            max_episode_steps, "max_episode_steps", owner, low=1)
        if isinstance(env, gym.Env):
            raise ParameterError("GymProblem takes an env id or a zero-argument constructor, not an env instance "
                                 "(each worker builds its own envs).")
        if not (isinstance(env, str) or callable(env)):
            raise ParameterError(f"The 'env' parameter of {owner} must be a Gymnasium id or a zero-argument "
                                 f"constructor. Got {env!r} instead.")
        self.env = env
        self.env_id = env if isinstance(env, str) else getattr(env, "__name__", repr(env))
        try:
            probe = gym.make(env) if isinstance(env, str) else env()
        except gym.error.Error as exc:  # unknown id, with Gymnasium's own "Did you mean" suggestion
            raise ParameterError(f"GymProblem: cannot make env {env!r}: {exc}") from None
        self.observation_space, self.action_space = probe.observation_space, probe.action_space
        probe.close()
        self.policy_spec = {"policy": policy, "hidden_sizes": list(hidden_sizes), "activation": activation,
                            "obs_norm": bool(obs_norm), "box_head": box_head, "bias": bool(bias)}
        with torch.random.fork_rng():  # seeded MLP init without touching the caller's torch state
            torch.manual_seed(self.seed)
            self._template = make_policy(observation_space=self.observation_space,
                                         action_space=self.action_space, **self.policy_spec)
        self.dim = num_params(self._template)
        self.obs_norm = bool(obs_norm)
        self.obs_rms = RunningMeanStd((self._template.obs_dim,))
        self.generation = 0
        self.env_steps = 0        # live steps of training episodes (everything used for learning)
        self.eval_env_steps = 0   # live steps of evaluation episodes, counted apart
        self.failed_evaluations = 0
        self.timed_out: list[tuple[int, int]] = []  # (generation, candidate) of evaluations stopped by the timeout
        self._backend: Backend | None = None

    # ------------------------------------------------------------------ public API
    def initial_params(self) -> np.ndarray:
        """The policy's initial flat parameters (zeros for linear policies, seeded orthogonal init for MLPs)."""
        from .policies import get_flat_params

        return get_flat_params(self._template)

    def evaluate(self, X: np.ndarray | Candidates) -> np.ndarray:
        """Mean training-episode returns of the rows of X, shape (n,); NaN marks a failed evaluation
        (non-finite observation/reward or parameters), which optimizers rank worst.

        X may be an (n, dim) array or an optimizer's `ask_candidates()`; seeded candidates then travel
        to the workers as seeds, not rows (see the module docstring)."""
        P = self._check_population(X)
        check_memory(self.episodes, "episodes", "GymProblem", len(P) * self.episodes,
                     f"popsize x episodes = {len(P)} x {self.episodes}")  # one return per episode
        res = self._run(P, np.arange(len(P)), self.seed, self.generation, self.episodes,
                        collect=self.obs_norm)
        self.generation += 1
        self.env_steps += res.env_steps
        self.failed_evaluations += int(res.failed.sum())
        if res.timed_out:
            self.timed_out += [(self.generation - 1, c) for c in res.timed_out]
            warn_repeating(f"{self.env_id}: generation {self.generation - 1}, candidates {res.timed_out}: an env "
                           f"call ran past timeout={self.timeout} s; they count as failed", EvaluationTimeoutWarning,
                           stacklevel=2)
        if self.obs_norm:
            self.obs_rms.merge(res.obs_stats)
        self.last_result = res
        return res.returns

    def evaluate_policy(self, x: np.ndarray, episodes: int = 10) -> np.ndarray:
        """Returns of `episodes` evaluation episodes of one parameter vector (deterministic policy, fixed
        evaluation seeds, frozen statistics); their steps count in `eval_env_steps`, not `env_steps`."""
        P = self._check_params(np.atleast_2d(x))
        if len(P) != 1:
            raise ParameterError(f"evaluate_policy takes one parameter vector; got {len(P)}")
        episodes = check_int(episodes, "episodes", "evaluate_policy", low=1)
        check_memory(episodes, "episodes", "evaluate_policy", episodes * P.shape[1],
                     f"episodes x dim = {episodes} x {P.shape[1]}")
        # one "member" per episode so the episodes spread over the workers; the seeds are
        # evaluation_seeds(seed, episodes), fixed for the whole run and shared with the RL and SB3 methods
        res = self._run(np.repeat(P, episodes, axis=0), np.arange(episodes), self.seed ^ EVAL_SALT, 0, 1,
                        collect=False)
        self.eval_env_steps += res.env_steps
        return res.returns

    def policy(self, x: np.ndarray) -> Policy:
        """A Policy module carrying parameters x and the current observation statistics."""
        pol = make_policy(observation_space=self.observation_space, action_space=self.action_space,
                          **{**self.policy_spec, "policy": self._policy_arg()})
        set_flat_params(pol, self._check_params(np.atleast_2d(x))[0])
        if self.obs_norm:
            pol.set_obs_stats(self.obs_rms)
        return pol

    def save_policy(self, path, x: np.ndarray, metadata: dict | None = None) -> None:
        meta = {"env": self.env_id, "seed": self.seed, **(metadata or {})}
        save_policy(path, self.policy(x), meta)

    def state_dict(self) -> dict[str, Any]:
        """Counters and observation statistics as plain data (for checkpoints)."""
        return {"generation": self.generation, "env_steps": self.env_steps, "eval_env_steps": self.eval_env_steps,
                "failed_evaluations": self.failed_evaluations, "obs_rms": self.obs_rms.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue from `state_dict()` of a problem built with the same arguments."""
        self.generation = int(state["generation"])
        self.env_steps = int(state["env_steps"])
        self.eval_env_steps = int(state["eval_env_steps"])
        self.failed_evaluations = int(state["failed_evaluations"])
        self.obs_rms.load_state_dict(state["obs_rms"])

    def state(self) -> dict[str, Any]:
        """Deprecated name of `state_dict()`."""
        warnings.warn(_RENAMED.format(old="state()", new="state_dict()"), DeprecationWarning, stacklevel=2)
        return self.state_dict()

    def load_state(self, state: dict[str, Any]) -> None:
        """Deprecated name of `load_state_dict()`."""
        warnings.warn(_RENAMED.format(old="load_state()", new="load_state_dict()"), DeprecationWarning, stacklevel=2)
        self.load_state_dict(state)

    def close(self) -> None:
        """Release the workers (a Dask cluster this problem started is shut down)."""
        if self._backend is not None and not isinstance(self.backend_spec, Backend):
            self._backend.close()
        self._backend = None

    def __enter__(self) -> GymProblem:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return (f"GymProblem({self.env_id!r}, policy={self.policy_spec['policy']!r}, dim={self.dim}, "
                f"episodes={self.episodes}, n_jobs={self.n_jobs}, env_steps={self.env_steps})")

    # ------------------------------------------------------------------ internals
    def _policy_arg(self):
        p = self.policy_spec["policy"]
        if isinstance(p, torch.nn.Module):
            import copy

            return copy.deepcopy(p)
        return p

    def _check_params(self, X) -> np.ndarray:
        P = np.asarray(X, dtype=np.float64)
        if P.ndim == 1:
            P = P[None, :]
        if P.ndim != 2 or P.shape[1] != self.dim:
            raise ParameterError(
                f"parameter vectors for this {self.policy_spec['policy']!r} policy on {self.env_id} must have "
                f"length {self.dim} (problem.dim); got an array of shape {np.shape(X)}")
        return P

    def _check_population(self, X) -> np.ndarray | Candidates:
        """A dense matrix, or compact candidates kept compact for shipping to workers."""
        if isinstance(X, DenseCandidates):
            return self._check_params(X.X)
        if isinstance(X, Candidates):
            if X.dim != self.dim:
                raise ParameterError(
                    f"parameter vectors for this {self.policy_spec['policy']!r} policy on {self.env_id} must "
                    f"have length {self.dim} (problem.dim); got {X.kind} candidates of dim {X.dim}")
            return X
        return self._check_params(X)

    def _task_maker(self, P, ids, run_seed, generation, episodes, collect) -> Callable[[int, int], tuple]:
        """make_task(a, b): the (function, args, kwargs) evaluating rows a..b-1 in a worker. A compact
        population ships each slice's `slice_state`; dense rows ship as they are."""
        frozen = self.obs_rms.state_dict() if self.obs_norm else None
        args = (self.env, self.policy_spec)
        kw = {"episodes": episodes, "max_episode_steps": self.max_episode_steps, "obs_norm_state": frozen,
              "collect_obs_stats": collect, "timeout": self.timeout}
        if isinstance(P, Candidates):
            return lambda a, b: (evaluate_compact_slice, (*args, P.slice_state(a, b), ids[a:b], run_seed,
                                                          generation), kw)
        return lambda a, b: (evaluate_slice, (*args, P[a:b], ids[a:b], run_seed, generation), kw)

    def _tasks(self, P, ids, run_seed, generation, episodes, collect) -> list[tuple[Callable, tuple, dict]]:
        """Every worker task of one population, one per contiguous slice (the benchmark pickles these to
        measure what is shipped)."""
        make_task = self._task_maker(P, ids, run_seed, generation, episodes, collect)
        return [make_task(a, b) for a, b in slice_spans(len(P), self._get_backend().n_workers())]

    def _run(self, P, ids, run_seed, generation, episodes, collect) -> RolloutResult:
        backend = self._get_backend()
        if type(backend) is Backend or len(P) == 1:
            # in this process the optimizer's noise cache (if any) saves regenerating the directions
            params = P.materialize() if isinstance(P, Candidates) else P
            fn, args, kw = self._task_maker(params, ids, run_seed, generation, episodes, collect)(0, len(P))
            return fn(*args, **kw)
        make_task = self._task_maker(P, ids, run_seed, generation, episodes, collect)
        return run_slices(backend, make_task, len(P), concat_results, ids, self.retries)

    def _get_backend(self) -> Backend:
        if self._backend is None:
            self._backend = make_backend(self.backend_spec, self.n_jobs, self.address, owner="GymProblem")
        return self._backend

    def __getstate__(self):
        state = self.__dict__.copy()
        state["_backend"] = None  # workers and cluster connections do not travel
        return state


def evaluate_compact_slice(env_spec, policy_spec, cand_state, candidate_ids, run_seed, generation,
                           **kw) -> RolloutResult:
    """A worker task for a compact slice: rebuild the rows here (the same `take` arithmetic as in the
    asking process, hence bit-identical parameters), then evaluate them like a dense slice."""
    params = Candidates.from_state(cand_state).materialize()
    return evaluate_slice(env_spec, policy_spec, params, candidate_ids, run_seed, generation, **kw)
