"""L-BFGS with a strong-Wolfe line search (Nocedal & Wright, Numerical Optimization, 2nd ed., Alg. 7.4, 7.5,
3.5 and 3.6), a quasi-Newton baseline for smooth deterministic objectives whose exact gradient is known.

Through the protocol it is a population of one: `ask()` returns the one point the method wants evaluated
next, as shape (1, dim), and `tell(values, grads)` takes its value and gradient. The points are x0, then the
trial points x + t d of each line search; a line search that ends moves the iterate to its accepted point
and starts the next one from the new two-loop direction, without another evaluation.

The arithmetic follows torch.optim.LBFGS(line_search_fn="strong_wolfe") step by step (its minFunc-derived
bracketing and zoom with cubic interpolation, c1 = 1e-4, c2 = 0.9; the memory update skipped when
y's <= 1e-10; the first step min(1, 1 / |g|_1) * lr, later steps lr; its stopping tests), in float64 numpy,
so both visit the same points up to rounding (tests/optim/test_lbfgs.py compares them). Two deviations: a
line search takes at most `max_ls` + 1 evaluations (torch spends the rest of its `max_eval`), and a trial
whose value or gradient is NaN/inf counts as a step too far (its cubic interpolation falls back to the
middle of the bracket), where torch would carry the NaN on.

State is plain data: the iterate, its value and gradient, the (s, y) memory, the current direction and
initial step, and the (value, gradient) pairs told during the current line search. The line search is a
generator; after `load_state_dict` it is rebuilt by replaying those pairs, which reproduces its next trial
point bit for bit.
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np

from ..core.validation import check_float, check_int
from .base import Optimizer, named

C1, C2 = 1e-4, 0.9  # sufficient decrease and curvature constants of the strong Wolfe conditions
MIN_CURVATURE = 1e-10  # a pair (s, y) enters the memory only if y's exceeds this (torch's rule)


@named("lbfgs")
class LBFGS(Optimizer):
    """Limited-memory BFGS with a strong-Wolfe line search; one evaluation per ask, with its gradient.

    Parameters
    ----------
    x0 : array (dim,)
        Starting point.
    lr : float > 0, default 1.0
        Initial step of every line search along the quasi-Newton direction (the first iteration's, along
        the steepest descent direction, is min(1, 1 / |g|_1) * lr), as in torch.optim.LBFGS.
    history : int >= 1, default 10
        Correction pairs (s, y) kept for the two-loop recursion (torch's `history_size`; its default is 100).
    tolerance_grad : float >= 0, default 1e-7
        Stop once max |g| at the iterate is at most this.
    tolerance_change : float >= 0, default 1e-9
        Stop once a step (max |t d|), the change of the value between iterates or the directional
        derivative at the start of a line search is this small; a line search also ends when its bracket
        is narrower than this (in max |t d|).
    max_ls : int >= 1, default 25
        A line search evaluates at most max_ls + 1 points and then accepts its best one.
    mask : bool array (dim,) or None, default None
        Coordinates to search; the others stay at x0 and their gradients are not used (see `Optimizer`).
    seed, maximize
        See `Optimizer` (the method is deterministic: the seed is only recorded).

    Attributes
    ----------
    stopped : dict
        Empty while the method runs; once it has converged, the test that fired and its value
        ("tolerance_grad", "tolerance_change_slope", "tolerance_change_step", "tolerance_change_value", or
        "nonfinite_start" when x0 itself gave NaN/inf). Nothing breaks then: `ask` keeps returning the
        final iterate and `tell` leaves it there; ending the loop is the caller's decision (as with CMAES).
    iterations : int
        L-BFGS iterations (line searches) started.
    """

    needs_grad = True

    def __init__(self, x0: Any = None, lr: float = 1.0, history: int = 10, tolerance_grad: float = 1e-7,
                 tolerance_change: float = 1e-9, max_ls: int = 25, seed: int | None = None, maximize: bool = False,
                 mask: Any = None):
        super().__init__(x0, seed=seed, maximize=maximize, mask=mask)
        owner = type(self).__name__
        self.lr = check_float(lr, "lr", owner, low=0.0, low_inclusive=False)
        self.history = check_int(history, "history", owner, low=1)
        self.tolerance_grad = check_float(tolerance_grad, "tolerance_grad", owner, low=0.0)
        self.tolerance_change = check_float(tolerance_change, "tolerance_change", owner, low=0.0)
        self.max_ls = check_int(max_ls, "max_ls", owner, low=1)
        self._s: dict[str, Any] = {
            "x": self.x0.copy(), "f": None, "g": None, "n_iter": 0, "stopped": {},
            "old_dirs": [], "old_stps": [], "ro": [], "H_diag": 1.0, "prev_g": None, "prev_f": None,
            "d": None, "t": None, "gtd": None, "trials": [],
        }
        self._search = None  # the line-search generator (rebuilt from _s by replay when missing)
        self._trial_t: float | None = None

    # ------------------------------------------------------------------ protocol
    @property
    def popsize(self) -> int:
        return 1

    @property
    def center(self) -> np.ndarray:
        """The current iterate (the last point a line search accepted; x0 before the first)."""
        return self.embed(self._s["x"])

    @property
    def stopped(self) -> dict[str, Any]:
        return dict(self._s["stopped"])

    @property
    def converged(self) -> bool:
        return bool(self._s["stopped"])

    @property
    def iterations(self) -> int:
        return int(self._s["n_iter"])

    def _ask(self) -> np.ndarray:
        s = self._s
        if s["g"] is None or s["stopped"]:
            return s["x"][None, :].copy()
        self._ensure_search()
        return (s["x"] + self._trial_t * s["d"])[None, :]

    def _tell(self, f: np.ndarray, grads: np.ndarray) -> None:
        s = self._s
        value, g = float(f[0]), grads[0].copy()
        if s["stopped"]:
            return
        if not (math.isfinite(value) and np.isfinite(g).all()):
            value, g = math.inf, np.full_like(g, np.nan)  # a step too far (see the module docstring)
        if s["g"] is None:  # the evaluation of x0
            if not math.isfinite(value):
                s["stopped"] = {"nonfinite_start": value}
                return
            s["f"], s["g"] = value, g
            grad_max = float(np.abs(g).max())
            if grad_max <= self.tolerance_grad:
                s["stopped"] = {"tolerance_grad": grad_max}
            else:
                self._next_iteration()
            return
        self._ensure_search()
        s["trials"].append([value, g])
        try:
            self._trial_t = self._search.send((value, g))
        except StopIteration as end:
            self._search = None
            self._accept(*end.value)

    # ------------------------------------------------------------------ iterations
    def _next_iteration(self) -> None:
        """Direction (steepest descent first, then the two-loop recursion on the updated memory), initial step
        and directional derivative of the next line search, or the slope test's stop (torch's order)."""
        s = self._s
        s["n_iter"] += 1
        g = s["g"]
        if s["n_iter"] == 1:
            d = -g
        else:
            y, step = g - s["prev_g"], s["d"] * s["t"]
            ys = float(y @ step)
            if ys > MIN_CURVATURE:
                if len(s["old_dirs"]) == self.history:
                    for key in ("old_dirs", "old_stps", "ro"):
                        s[key].pop(0)
                s["old_dirs"].append(y)
                s["old_stps"].append(step)
                s["ro"].append(1.0 / ys)
                s["H_diag"] = ys / float(y @ y)
            d = two_loop(g, s["old_dirs"], s["old_stps"], s["ro"], s["H_diag"])
        s["prev_g"], s["prev_f"] = g.copy(), s["f"]
        t = min(1.0, 1.0 / float(np.abs(g).sum())) * self.lr if s["n_iter"] == 1 else self.lr
        gtd = float(g @ d)
        if gtd > -self.tolerance_change:
            s["stopped"] = {"tolerance_change_slope": gtd}
            return
        s["d"], s["t"], s["gtd"], s["trials"] = d, t, gtd, []
        self._ensure_search()

    def _accept(self, value: float, g: np.ndarray, t: float) -> None:
        """Move to the line search's accepted point, then stop or start the next iteration."""
        s = self._s
        step = s["d"] * t
        s["x"] = s["x"] + t * s["d"]  # the very expression its trial was evaluated at
        s["f"], s["g"], s["t"], s["trials"] = value, g, t, []
        grad_max, step_max = float(np.abs(g).max()), float(np.abs(step).max())
        if grad_max <= self.tolerance_grad:
            s["stopped"] = {"tolerance_grad": grad_max}
        elif step_max <= self.tolerance_change:
            s["stopped"] = {"tolerance_change_step": step_max}
        elif abs(value - s["prev_f"]) < self.tolerance_change:
            s["stopped"] = {"tolerance_change_value": abs(value - s["prev_f"])}
        else:
            self._next_iteration()

    def _ensure_search(self) -> None:
        """The current line search's generator, rebuilt after load_state_dict by replaying the told pairs."""
        if self._search is not None:
            return
        s = self._s
        gen = strong_wolfe(s["f"], s["g"], s["gtd"], s["t"], s["d"], self.tolerance_change, self.max_ls)
        t = next(gen)
        for value, g in s["trials"]:
            t = gen.send((value, g))
        self._search, self._trial_t = gen, t

    # ------------------------------------------------------------------ state
    def _state(self) -> dict[str, Any]:
        s = self._s
        out = {k: (v.copy() if isinstance(v, np.ndarray) else v) for k, v in s.items()}
        for key in ("old_dirs", "old_stps"):
            out[key] = [a.copy() for a in s[key]]
        out["ro"], out["stopped"] = list(s["ro"]), dict(s["stopped"])
        out["trials"] = [[float(v), g.copy()] for v, g in s["trials"]]
        return out

    def _load_state(self, state: dict[str, Any]) -> None:
        def arr(v):
            return None if v is None else np.array(v, dtype=np.float64)

        s = {k: state[k] for k in self._s}
        for key in ("x", "g", "prev_g", "d"):
            s[key] = arr(s[key])
        for key in ("old_dirs", "old_stps"):
            s[key] = [arr(a) for a in s[key]]
        s["ro"], s["stopped"] = [float(r) for r in s["ro"]], dict(s["stopped"])
        s["trials"] = [[float(v), arr(g)] for v, g in s["trials"]]
        s["n_iter"] = int(s["n_iter"])
        self._s, self._search, self._trial_t = s, None, None


def two_loop(g: np.ndarray, old_dirs: list, old_stps: list, ro: list, H_diag: float) -> np.ndarray:
    """The L-BFGS direction -H g (Alg. 7.4) from the memory of pairs y (old_dirs), s (old_stps), 1/y's (ro) and
    the initial inverse Hessian H_diag * I, in torch.optim.LBFGS's operation order."""
    al = [0.0] * len(old_dirs)
    q = -g
    for i in range(len(old_dirs) - 1, -1, -1):
        al[i] = float(old_stps[i] @ q) * ro[i]
        q = q + (-al[i]) * old_dirs[i]
    r = q * H_diag
    for i in range(len(old_dirs)):
        be_i = float(old_dirs[i] @ r) * ro[i]
        r = r + (al[i] - be_i) * old_stps[i]
    return r


def cubic_interpolate(x1, f1, g1, x2, f2, g2, bounds=None) -> float:
    """Minimizer of the cubic through (x1, f1, g1) and (x2, f2, g2), clipped to `bounds` (default: between the
    two points); the middle of the bounds when the cubic has no minimizer or a value is not finite."""
    lo, hi = bounds if bounds is not None else (min(x1, x2), max(x1, x2))
    d1 = g1 + g2 - 3 * (f1 - f2) / (x1 - x2)
    d2_square = d1**2 - g1 * g2
    if d2_square >= 0:
        d2 = math.sqrt(d2_square)
        if x1 <= x2:
            min_pos = x2 - (x2 - x1) * ((g2 + d2 - d1) / (g2 - g1 + 2 * d2))
        else:
            min_pos = x1 - (x1 - x2) * ((g1 + d2 - d1) / (g1 - g2 + 2 * d2))
        if math.isfinite(min_pos):
            return min(max(min_pos, lo), hi)
    return (lo + hi) / 2.0


def strong_wolfe(f, g, gtd, t, d, tolerance_change, max_ls):
    """Line search for a step t along d from a point with value f, gradient g and slope gtd = g'd < 0 that
    satisfies the strong Wolfe conditions (Alg. 3.5 bracketing, Alg. 3.6 zoom; torch's _strong_wolfe).

    A generator: it yields a trial step t and is sent that point's (value, gradient); it returns
    (value, gradient, t) of the accepted step.
    """
    bracket, done, ls_iter = yield from _bracket(f, g, gtd, t, d, max_ls)
    return (yield from _zoom(bracket, done, ls_iter, f, gtd, d, tolerance_change, max_ls))


def _bracket(f, g, gtd, t, d, max_ls):
    """Phase 1: step forward (cubic extrapolation within [t + 0.01 (t - t_prev), 10 t]) until a step satisfies
    the conditions (done) or an interval [t_prev, t] must contain one. Returns (bracket, done, evaluations)."""
    f_new, g_new = yield t
    gtd_new = float(g_new @ d)
    t_prev, f_prev, g_prev, gtd_prev = 0.0, f, g, gtd
    ls_iter = 0
    while ls_iter < max_ls:
        if f_new > f + C1 * t * gtd or (ls_iter > 1 and f_new >= f_prev):
            return [[t_prev, t], [f_prev, f_new], [g_prev, g_new], [gtd_prev, gtd_new]], False, ls_iter
        if abs(gtd_new) <= -C2 * gtd:
            return [[t], [f_new], [g_new], [gtd_new]], True, ls_iter
        if gtd_new >= 0:
            return [[t_prev, t], [f_prev, f_new], [g_prev, g_new], [gtd_prev, gtd_new]], False, ls_iter
        min_step, max_step = t + 0.01 * (t - t_prev), t * 10
        t_prev, t = t, cubic_interpolate(t_prev, f_prev, gtd_prev, t, f_new, gtd_new, bounds=(min_step, max_step))
        f_prev, g_prev, gtd_prev = f_new, g_new, gtd_new
        f_new, g_new = yield t
        gtd_new = float(g_new @ d)
        ls_iter += 1
    return [[0.0, t], [f, f_new], [g, g_new], [gtd, gtd_new]], False, ls_iter  # out of evaluations


def _zoom(bracket, done, ls_iter, f, gtd, d, tolerance_change, max_ls):
    """Phase 2: shrink the bracket by safeguarded cubic interpolation until a trial satisfies the conditions,
    the bracket is narrower than tolerance_change, or max_ls is spent; returns the low end (value, grad, t)."""
    b_t, b_f, b_g, b_gtd = bracket
    d_norm = float(np.abs(d).max())
    insuf_progress = False
    low, high = (0, 1) if b_f[0] <= b_f[-1] else (1, 0)
    while not done and ls_iter < max_ls:
        if abs(b_t[1] - b_t[0]) * d_norm < tolerance_change:
            break
        t = cubic_interpolate(b_t[0], b_f[0], b_gtd[0], b_t[1], b_f[1], b_gtd[1])
        # a trial too close to an end of the bracket twice (or outside it) moves to 0.1 of its width inside
        eps = 0.1 * (max(b_t) - min(b_t))
        if min(max(b_t) - t, t - min(b_t)) < eps:
            if insuf_progress or t >= max(b_t) or t <= min(b_t):
                t = max(b_t) - eps if abs(t - max(b_t)) < abs(t - min(b_t)) else min(b_t) + eps
                insuf_progress = False
            else:
                insuf_progress = True
        else:
            insuf_progress = False
        f_new, g_new = yield t
        gtd_new = float(g_new @ d)
        ls_iter += 1
        if f_new > f + C1 * t * gtd or f_new >= b_f[low]:  # not a sufficient decrease: the new high end
            b_t[high], b_f[high], b_g[high], b_gtd[high] = t, f_new, g_new, gtd_new
            low, high = (0, 1) if b_f[0] <= b_f[1] else (1, 0)
        else:
            if abs(gtd_new) <= -C2 * gtd:
                done = True
            elif gtd_new * (b_t[high] - b_t[low]) >= 0:  # the old high end becomes the new low end
                b_t[high], b_f[high], b_g[high], b_gtd[high] = b_t[low], b_f[low], b_g[low], b_gtd[low]
            b_t[low], b_f[low], b_g[low], b_gtd[low] = t, f_new, g_new, gtd_new
    return b_f[low], b_g[low], b_t[low]
