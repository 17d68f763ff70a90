"""Linear-quadratic regulator whose optimum is known, so a learned policy can be scored as a gap to optimal.

Dynamics x[t+1] = A x[t] + B u[t] + w[t], step cost x[t]'Q x[t] + u[t]'R u[t], reward = -cost, for a fixed
horizon of H steps, after which the episode is truncated (never terminated). A and B are drawn once from
`dynamics_seed`, so an id plus its kwargs names one fixed instance; reset(seed=...) draws only the initial state
x[0] ~ N(0, init_std^2 I) and the process noise w[t] ~ N(0, noise_std^2 I) (off by default).

Both spaces are unbounded float64 Boxes: clipping or rescaling actions would make the problem no longer linear-
quadratic and the reference costs below no longer exact. gymnasium's check_env therefore warns about infinite
bounds and an unnormalized action space; those warnings are expected here.

Reference costs, all exact expectations over x[0] and w (no sampling):
- optimal_gain(): stationary gain K of the infinite-horizon problem (discrete algebraic Riccati equation),
  policy u = -K x.
- optimal_cost(): expected H-step cost of that stationary policy, the target for a learned linear policy. The
  best constant gain for H steps differs only by horizon-end effects: none measurable without noise, a relative
  6e-6 on the default instance with noise_std=0.3, where time-varying gains gain 0.17% more.
- finite_horizon_optimal_cost(): the true H-step optimum (time-varying gains finite_horizon_gains(), from the
  backward Riccati recursion), a lower bound for every policy, linear or not.
- expected_cost(K): any linear policy u = -K x. A linear policy u = W x with flat parameters W (action_dim x
  state_dim, row-major, no bias) has K = -W.

Differentiable rollout, for gradient optimizers (sgd, adam, lbfgs in a config):
- differentiable_rollout(params, seeds) is the mean return of the bias-free linear policy u = W x (W = params
  reshaped row-major to (action_dim, state_dim): the layout of evograd's linear policy with bias=False) over one
  episode per reset seed, as a torch function of params. Episode i is the episode the env itself plays after
  reset(seed=seeds[i]) (same x[0], same process noise), run in float64 torch ops, so autograd gives the exact
  gradient of that sample's return. It costs len(seeds) x horizon env steps, and says so: the experiment runner
  counts them against budget.env_steps exactly as it counts a population's episodes.
- Which seeds: the runner passes the same seeds at every evaluation of a run (common random numbers: the
  training-episode seeds of a population's first candidate in its first generation, `episodes` of them), so the
  objective is a fixed, deterministic sample average. L-BFGS needs that (its line search compares values of
  one function), and it is not a lucky sample: without process noise the optimal gain does not depend on the
  initial states (P_K >= P* for every stabilizing K), so any `episodes` >= state_dim initial states in general
  position have the Riccati gain as their cost's minimizer, up to horizon-end effects. With process noise the
  sample's minimizer differs from the Riccati gain by sampling error, shrinking with more episodes. Fresh
  initial states at every evaluation (a stochastic gradient, as in RL) would suit Adam but not L-BFGS.
- Reported numbers never come from this sample: a learned gain is scored by expected_cost (exact) against
  optimal_cost, and by the same 10 seeded evaluation episodes as every other method.
"""
from __future__ import annotations

import numbers
from typing import ClassVar

import gymnasium as gym
import numpy as np

from evograd.core.validation import ParameterError, check_array, check_float, check_int

_OWNER = "LQREnv"


def _weight_matrix(value, dim: int, name: str, definite: bool) -> np.ndarray:
    """None -> identity, c -> c * identity, else a symmetric (dim, dim) matrix; R must be positive definite."""
    what = "positive definite" if definite else "positive semidefinite"
    if value is None:
        return np.eye(dim)
    if isinstance(value, numbers.Real) and not isinstance(value, bool):
        value = check_float(value, name, _OWNER, low=0.0, low_inclusive=not definite) * np.eye(dim)
    mat = check_array(value, name, _OWNER, ndim=(2,))
    if mat.shape != (dim, dim) or not np.allclose(mat, mat.T):
        raise ParameterError(f"The '{name}' parameter of {_OWNER} must be a symmetric ({dim}, {dim}) matrix, "
                             f"a float or None. Got an array of shape {mat.shape} instead.")
    mat = (mat + mat.T) / 2
    min_eig = np.linalg.eigvalsh(mat).min()
    if min_eig < -1e-12 or (definite and min_eig <= 0):
        raise ParameterError(f"The '{name}' parameter of {_OWNER} must be {what}. "
                             f"Got a matrix with smallest eigenvalue {min_eig:.3g} instead.")
    return mat


def is_controllable(A: np.ndarray, B: np.ndarray, tol: float = 1e-8) -> bool:
    """PBH test: rank [A - lambda I, B] = n for every eigenvalue lambda of A.

    Better conditioned than the rank of [B, AB, ..., A^(n-1) B], whose columns align as n grows.
    """
    n = A.shape[0]
    scale = max(1.0, np.linalg.norm(A, 2), np.linalg.norm(B, 2))
    for lam in np.linalg.eigvals(A):
        pencil = np.hstack([A - lam * np.eye(n), B.astype(complex)])
        if np.linalg.svd(pencil, compute_uv=False)[-1] <= tol * scale:
            return False
    return True


class LQREnv(gym.Env):
    """Linear-quadratic regulator with random, fixed, open-loop unstable dynamics (see module docstring).

    Parameters
    ----------
    state_dim, action_dim : int, default 4 and 2
    horizon : int, default 200
        Steps per episode; the last step returns truncated=True.
    dynamics_seed : int, default 0
        Seeds A and B. A is a Gaussian matrix rescaled to spectral radius `spectral_radius`; B is Gaussian with
        entries of variance 1/state_dim. Draws are repeated until (A, B) passes a controllability test.
    spectral_radius : float, default 1.05
        Above 1 the uncontrolled system diverges, so the zero policy is far from optimal.
    Q, R : None, float or (d, d) array, default None (identity)
        State and action cost weights; a float means that multiple of the identity. Q must be positive
        semidefinite, R positive definite.
    init_std : float, default 1.0
        x[0] ~ N(0, init_std^2 I).
    noise_std : float, default 0.0
        Standard deviation of the process noise w[t]; 0 makes a policy's return a function of x[0] alone.
    """

    metadata: ClassVar[dict] = {"render_modes": []}

    def __init__(self, state_dim=4, action_dim=2, horizon=200, dynamics_seed=0, spectral_radius=1.05,
                 Q=None, R=None, init_std=1.0, noise_std=0.0):
        self.state_dim = n = check_int(state_dim, "state_dim", _OWNER, low=1)
        self.action_dim = m = check_int(action_dim, "action_dim", _OWNER, low=1)
        self.horizon = check_int(horizon, "horizon", _OWNER, low=1)
        self.dynamics_seed = check_int(dynamics_seed, "dynamics_seed", _OWNER, low=0)
        self.spectral_radius = check_float(spectral_radius, "spectral_radius", _OWNER, low=0.0,
                                           low_inclusive=False)
        self.init_std = check_float(init_std, "init_std", _OWNER, low=0.0, low_inclusive=False)
        self.noise_std = check_float(noise_std, "noise_std", _OWNER, low=0.0)
        self.Q = _weight_matrix(Q, n, "Q", definite=False)
        self.R = _weight_matrix(R, m, "R", definite=True)

        rng = np.random.default_rng(self.dynamics_seed)
        for _ in range(100):
            G = rng.standard_normal((n, n))
            A = G * (self.spectral_radius / np.abs(np.linalg.eigvals(G)).max())
            B = rng.standard_normal((n, m)) / np.sqrt(n)
            if is_controllable(A, B):
                break
        else:  # pragma: no cover - Gaussian draws are controllable with probability one
            raise RuntimeError(f"no controllable (A, B) found for dynamics_seed={self.dynamics_seed}")
        self.A, self.B = A, B
        for mat in (self.A, self.B, self.Q, self.R):
            mat.flags.writeable = False

        self.observation_space = gym.spaces.Box(-np.inf, np.inf, shape=(n,), dtype=np.float64)
        self.action_space = gym.spaces.Box(-np.inf, np.inf, shape=(m,), dtype=np.float64)
        self._x = np.zeros(n)
        self._t = 0
        self._gain = None

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self._x = self.init_std * self.np_random.standard_normal(self.state_dim)
        self._t = 0
        return self._x.copy(), {}

    def step(self, action):
        u = np.asarray(action, dtype=np.float64).reshape(self.action_dim)
        x = self._x
        cost = float(x @ self.Q @ x + u @ self.R @ u)
        x = self.A @ x + self.B @ u
        if self.noise_std > 0:
            x = x + self.noise_std * self.np_random.standard_normal(self.state_dim)
        self._x = x
        self._t += 1
        return x.copy(), -cost, False, self._t >= self.horizon, {}

    # ---- differentiable rollout (gradient optimizers) ------------------------------------------------
    def differentiable_rollout(self, params, seeds, max_steps=None):
        """Mean return of u = W x over one episode per reset seed, differentiable in params (torch autograd).

        params: torch tensor of action_dim * state_dim values, W row-major (see module docstring); float64 is
        used throughout. seeds: reset seeds; episode i starts at the x[0] reset(seed=seeds[i]) draws and meets
        the process noise step() would draw. max_steps: a time limit below the horizon (a TimeLimit wrapper's),
        else the horizon. Returns (mean return as a 0-d tensor, env steps simulated = len(seeds) * steps).
        """
        import torch

        n, m = self.state_dim, self.action_dim
        steps = self.horizon if max_steps is None else min(self.horizon, check_int(max_steps, "max_steps", _OWNER,
                                                                                   low=1))
        seeds = [check_int(s, "seeds", f"{_OWNER}.differentiable_rollout", low=0) for s in seeds]
        if not seeds:
            raise ParameterError(f"The 'seeds' parameter of {_OWNER}.differentiable_rollout must hold at least one "
                                 "reset seed. Got none instead.")
        W = torch.as_tensor(params, dtype=torch.float64)
        if W.numel() != m * n:
            raise ParameterError(f"The 'params' parameter of {_OWNER}.differentiable_rollout must have {m * n} "
                                 f"values (action_dim x state_dim). Got {W.numel()} instead.")
        W = W.reshape(m, n)
        x0, noise = self._episode_draws(seeds, steps)
        A, B, Q, R = (torch.from_numpy(np.array(mat)) for mat in (self.A, self.B, self.Q, self.R))
        M = A.T + W.T @ B.T  # row states: x[t+1] = x[t] M + w[t], the closed loop A + B W transposed
        C = Q + W.T @ R @ W  # step cost x'Qx + u'Ru = x'Cx
        xs = [torch.from_numpy(x0)]
        for t in range(steps - 1):  # the state after the last step costs nothing
            xs.append(xs[-1] @ M if noise is None else xs[-1] @ M + torch.from_numpy(noise[:, t]))
        X = torch.stack(xs)
        return -((X @ C) * X).sum() / len(seeds), len(seeds) * steps

    def _episode_draws(self, seeds: list[int], steps: int) -> tuple[np.ndarray, np.ndarray | None]:
        """x[0] (episodes, n) and process noise (episodes, steps, n) as reset(seed) and step() draw them."""
        from gymnasium.utils import seeding

        x0 = np.empty((len(seeds), self.state_dim))
        noise = np.empty((len(seeds), steps, self.state_dim)) if self.noise_std > 0 else None
        for i, seed in enumerate(seeds):
            rng, _ = seeding.np_random(seed)
            x0[i] = self.init_std * rng.standard_normal(self.state_dim)
            if noise is not None:
                noise[i] = self.noise_std * rng.standard_normal((steps, self.state_dim))
        return x0, noise

    # ---- reference solutions -------------------------------------------------------------------------
    def _riccati_step(self, P: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """One backward step: cost-to-go matrix P of the next time step -> (this step's P, its gain K)."""
        A, B = self.A, self.B
        K = np.linalg.solve(self.R + B.T @ P @ B, B.T @ P @ A)
        P = self.Q + A.T @ P @ (A - B @ K)
        return (P + P.T) / 2, K

    def optimal_gain(self) -> np.ndarray:
        """Stationary gain K of the infinite-horizon problem (u = -K x), shape (action_dim, state_dim).

        Iterates the Riccati recursion to its fixed point, the stabilizing solution of the discrete algebraic
        Riccati equation (the iteration from P = 0 converges for controllable (A, B)); numpy only, no scipy.
        """
        if self._gain is None:
            P = np.zeros((self.state_dim, self.state_dim))
            for _ in range(100_000):
                P_next, K = self._riccati_step(P)
                if np.abs(P_next - P).max() <= 1e-13 * np.abs(P_next).max():
                    break
                P = P_next
            else:  # pragma: no cover - needs a nearly uncontrollable instance
                raise RuntimeError("Riccati iteration did not converge")
            self._gain = K
            self._gain.flags.writeable = False
        return self._gain

    def expected_cost(self, K) -> float:
        """Exact expected H-step cost of u = -K x (K of shape (action_dim, state_dim), or flat row-major).

        Propagates the state covariance S[t+1] = M S[t] M' + noise_std^2 I with M = A - B K, and sums
        tr((Q + K'RK) S[t]); returns inf when the closed loop diverges so fast that the sum overflows.
        """
        n, m = self.state_dim, self.action_dim
        K = check_array(K, "K", f"{_OWNER}.expected_cost", ndim=(1, 2))
        if K.size != m * n or (K.ndim == 2 and K.shape != (m, n)):
            raise ParameterError(f"The 'K' parameter of {_OWNER}.expected_cost must be an array of shape "
                                 f"({m}, {n}) or ({m * n},). Got an array of shape {K.shape} instead.")
        K = K.reshape(m, n)
        M = self.A - self.B @ K
        C = self.Q + K.T @ self.R @ K
        S = self.init_std**2 * np.eye(n)
        noise = self.noise_std**2 * np.eye(n)
        total = 0.0
        with np.errstate(over="ignore", invalid="ignore"):
            for _ in range(self.horizon):
                total += np.sum(C * S)  # tr(C S), both symmetric
                S = M @ S @ M.T + noise
        return float(total) if np.isfinite(total) else float("inf")

    def optimal_cost(self) -> float:
        """Expected H-step cost of the stationary optimal policy u = -optimal_gain() x (see module docstring)."""
        return self.expected_cost(self.optimal_gain())

    def _backward_riccati(self) -> tuple[np.ndarray, float]:
        """Time-varying optimal gains K[t] of the H-step problem and its optimal expected cost.

        Cost-to-go from step t is x'P[t]x + c[t] with P[H] = 0 (no terminal cost); the noise w[t] entering
        x[t+1] adds noise_std^2 tr(P[t+1]), so the total is init_std^2 tr(P[0]) + sum_t noise_std^2 tr(P[t+1]).
        """
        n, m, H = self.state_dim, self.action_dim, self.horizon
        P = np.zeros((n, n))
        gains = np.empty((H, m, n))
        noise_cost = 0.0
        for t in range(H - 1, -1, -1):
            noise_cost += self.noise_std**2 * np.trace(P)  # P is P[t+1] here
            P, gains[t] = self._riccati_step(P)
        return gains, float(self.init_std**2 * np.trace(P) + noise_cost)

    def finite_horizon_gains(self) -> np.ndarray:
        """Gains of the optimal H-step policy u[t] = -K[t] x[t], shape (horizon, action_dim, state_dim)."""
        return self._backward_riccati()[0]

    def finite_horizon_optimal_cost(self) -> float:
        """Optimal expected H-step cost over all policies (attained by finite_horizon_gains())."""
        return self._backward_riccati()[1]
