"""CartPole dynamics for many independent episodes at once, bit-identical to Gymnasium's single env.

Why not `gym.make_vec("CartPole-v1", vectorization_mode="vector_entry_point")`: it draws every slot's
start state from one shared generator and has no per-slot reset, so an episode's start state depends on
which slot ran it and on what the other slots did. Population evaluation needs each (candidate, episode)
to start from the state `gym.make("CartPole-v1").reset(seed=s)` gives, whatever the batch. This module
copies the semantics of gymnasium/envs/classic_control/cartpole.py (Euler integrator, same float64
operation order, float32 observations, reward 1 on every step including the terminal one) and the
TimeLimit wrapper (truncated once `max_episode_steps` steps were taken).

State is stored transposed, (4, n), so each physical quantity is one contiguous row and every
operation below is one numpy call over all slots.
"""
from __future__ import annotations

import math

import numpy as np

# Constants spelled exactly as in gymnasium's CartPoleEnv.__init__, so derived values round identically.
GRAVITY = 9.8
MASSCART = 1.0
MASSPOLE = 0.1
TOTAL_MASS = MASSPOLE + MASSCART
LENGTH = 0.5
POLEMASS_LENGTH = MASSPOLE * LENGTH
FORCE_MAG = 10.0
TAU = 0.02
THETA_THRESHOLD = 12 * 2 * math.pi / 360
X_THRESHOLD = 2.4
MAX_EPISODE_STEPS = {"CartPole-v0": 200, "CartPole-v1": 500}


def reset_state(seed: int) -> np.ndarray:
    """The start state `CartPoleEnv.reset(seed=seed)` draws (its np_random is default_rng(seed))."""
    return np.random.default_rng(seed).uniform(low=-0.05, high=0.05, size=(4,))


# ------------------------------------------------------------------------------------------------
# numpy's seeding, batched. Building one default_rng per episode costs ~10-40 us (two SeedSequence
# hashes and a PCG64 object), as much as ~100 batched CartPole steps per 256 episodes. These functions
# compute the same numbers for many seeds in a few dozen numpy calls: SeedSequence as in
# numpy/random/bit_generator.pyx (pool size 4) and PCG64 (XSL-RR, 128-bit LCG) as in pcg64.h.
# Tests compare them with np.random.SeedSequence / default_rng bit for bit.
_U32 = np.uint32
_MASK32 = 0xFFFFFFFF
_INIT_A, _MULT_A, _INIT_B, _MULT_B = 0x43B0D7E5, 0x931E8875, 0x8B51F9DD, 0x58F38DED
_MIX_L, _MIX_R = _U32(0xCA01F9DD), _U32(0x4973F715)


def seedseq_state(words: np.ndarray, n_words: int) -> np.ndarray:
    """`SeedSequence(entropy).generate_state(n_words, uint32)` for many entropies at once.

    words: (m, L) uint32, each row the entropy already split into uint32 words, lowest first, as
    numpy's _coerce_to_uint32_array does (so rows of one batch must have equal word counts).
    """
    words = np.asarray(words, dtype=_U32)
    m, L = words.shape
    h = _INIT_A

    def hashmix(value):
        nonlocal h
        value = value ^ _U32(h)
        h = (h * _MULT_A) & _MASK32
        value = value * _U32(h)
        return value ^ (value >> _U32(16))

    def mix(x, y):
        r = _MIX_L * x - _MIX_R * y
        return r ^ (r >> _U32(16))

    zero = np.zeros(m, dtype=_U32)
    pool = [hashmix(words[:, i] if i < L else zero) for i in range(4)]
    for src in range(4):
        for dst in range(4):
            if src != dst:
                pool[dst] = mix(pool[dst], hashmix(pool[src]))
    for src in range(4, L):
        for dst in range(4):
            pool[dst] = mix(pool[dst], hashmix(words[:, src]))
    out = np.empty((m, n_words), dtype=_U32)
    hb = _INIT_B
    for i in range(n_words):
        v = pool[i % 4] ^ _U32(hb)
        hb = (hb * _MULT_B) & _MASK32
        v = v * _U32(hb)
        out[:, i] = v ^ (v >> _U32(16))
    return out


def int_to_words(n: int) -> list[int]:
    """One non-negative int as numpy's SeedSequence splits it: uint32 words, lowest first ([0] for 0)."""
    n = int(n)
    if n < 0:
        raise ValueError(f"seed entropy must be non-negative; got {n}")
    words = [n & _MASK32]
    while n > _MASK32:
        n >>= 32
        words.append(n & _MASK32)
    return words


def int_words(values, n: int) -> np.ndarray:
    """Non-negative ints as (len, n) uint32 words, lowest first (caller checks each fits in n words)."""
    v = np.array([int(x) for x in values], dtype=np.uint64)
    return np.stack([(v >> np.uint64(32 * i)) & np.uint64(_MASK32) for i in range(n)], axis=1).astype(_U32)


_U64 = np.uint64
_M32 = _U64(_MASK32)
_PCG_MULT = (_U64(0x2360ED051FC65DA4), _U64(0x4385DF649FCCF645))


def _mulhi64(a, b):
    a0, a1, b0, b1 = a & _M32, a >> _U64(32), b & _M32, b >> _U64(32)
    p00, p01, p10, p11 = a0 * b0, a0 * b1, a1 * b0, a1 * b1
    mid = (p00 >> _U64(32)) + (p01 & _M32) + (p10 & _M32)
    return p11 + (p01 >> _U64(32)) + (p10 >> _U64(32)) + (mid >> _U64(32))


def _pcg_step(hi, lo, inc_hi, inc_lo):
    mh, ml = _PCG_MULT
    new_hi = _mulhi64(lo, ml) + hi * ml + lo * mh
    new_lo = lo * ml
    out_lo = new_lo + inc_lo
    return new_hi + inc_hi + (out_lo < new_lo).astype(_U64), out_lo


def default_rng_uniform(seeds, low: float, high: float, size: int) -> np.ndarray:
    """`np.random.default_rng(s).uniform(low, high, size)` for every seed s: shape (len(seeds), size)."""
    seeds = [int(s) for s in seeds]
    out = np.empty((len(seeds), size))
    for n_words in (1, 2):  # numpy splits an int seed into 1 or 2 uint32 words (< 2**64 supported)
        rows = [i for i, s in enumerate(seeds) if (s > _MASK32) == (n_words == 2)]
        if not rows:
            continue
        if any(seeds[i] < 0 or seeds[i] >= 2**64 for i in rows):
            raise ValueError("seeds must lie in [0, 2**64)")
        st = seedseq_state(int_words([seeds[i] for i in rows], n_words), 8).astype(_U64)
        w = st[:, 0::2] | (st[:, 1::2] << _U64(32))  # generate_state(4, uint64): little-endian pairs
        init_hi, init_lo, seq_hi, seq_lo = w[:, 0], w[:, 1], w[:, 2], w[:, 3]
        inc_hi = (seq_hi << _U64(1)) | (seq_lo >> _U64(63))
        inc_lo = (seq_lo << _U64(1)) | _U64(1)
        hi, lo = _pcg_step(np.zeros_like(init_hi), np.zeros_like(init_lo), inc_hi, inc_lo)
        lo2 = lo + init_lo
        hi, lo = hi + init_hi + (lo2 < lo).astype(_U64), lo2
        hi, lo = _pcg_step(hi, lo, inc_hi, inc_lo)
        span = high - low
        for j in range(size):
            hi, lo = _pcg_step(hi, lo, inc_hi, inc_lo)
            x, rot = hi ^ lo, hi >> _U64(58)
            r = (x >> rot) | (x << ((_U64(64) - rot) & _U64(63)))
            out[rows, j] = low + span * ((r >> _U64(11)).astype(np.float64) * (1.0 / 9007199254740992.0))
    return out


def reset_states(seeds) -> np.ndarray:
    """Start states for many seeds at once, (4, len(seeds)); equal to `reset_state` for each."""
    return default_rng_uniform(seeds, -0.05, 0.05, 4).T


class VectorCartPole:
    """n CartPole slots stepped together; each slot is reset on its own with its own seed.

    Every slot is stepped on every call (idle ones too: one numpy call over all rows costs the same as
    over the live ones); the caller decides which results count.
    """

    _FORCES = np.array([-FORCE_MAG, FORCE_MAG])

    def __init__(self, n: int, max_episode_steps: int = 500):
        self.n = int(n)
        self.max_episode_steps = int(max_episode_steps)
        self.state = np.zeros((4, self.n), dtype=np.float64)
        self.clock = 0  # steps taken by this vector; a slot is truncated when the clock reaches its deadline
        self.deadline = np.full(self.n, self.max_episode_steps, dtype=np.int64)

    def reset(self, slots: np.ndarray, seeds) -> None:
        self.state[:, slots] = reset_states(seeds)
        self.deadline[slots] = self.clock + self.max_episode_steps

    @property
    def elapsed(self) -> np.ndarray:
        return self.clock + self.max_episode_steps - self.deadline

    def obs(self) -> np.ndarray:
        """Observations as (4, n) float32, what the single env returns per slot."""
        return self.state.astype(np.float32)

    def step(self, action: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Advance every slot by one step with actions in {0, 1}; returns (terminated, truncated)."""
        x, x_dot, theta, theta_dot = self.state
        force = self._FORCES.take(action)  # action == 1 -> +force_mag, else -force_mag
        costheta = np.cos(theta)
        sintheta = np.sin(theta)
        temp = (force + POLEMASS_LENGTH * np.square(theta_dot) * sintheta) / TOTAL_MASS
        thetaacc = (GRAVITY * sintheta - costheta * temp) / (
            LENGTH * (4.0 / 3.0 - MASSPOLE * np.square(costheta) / TOTAL_MASS)
        )
        xacc = temp - POLEMASS_LENGTH * thetaacc * costheta / TOTAL_MASS
        # Euler, in place: each row is updated from the previous values of the rows it reads.
        x += TAU * x_dot
        x_dot += TAU * xacc
        theta += TAU * theta_dot
        theta_dot += TAU * thetaacc
        # |x| > t is the same test as (x < -t or x > t) for finite x, in fewer numpy calls.
        terminated = (np.abs(x) > X_THRESHOLD) | (np.abs(theta) > THETA_THRESHOLD)
        self.clock += 1
        truncated = self.deadline <= self.clock
        return terminated, truncated


def is_native_cartpole(env_spec) -> bool:
    """True for the registered, unmodified CartPole-v0/v1 (a user-registered variant keeps Gymnasium's env)."""
    if not isinstance(env_spec, str) or env_spec not in MAX_EPISODE_STEPS:
        return False
    import gymnasium as gym

    spec = gym.spec(env_spec)
    return spec.entry_point == "gymnasium.envs.classic_control.cartpole:CartPoleEnv" and not spec.kwargs


class CartPoleSlots:
    """The rollout engine's backend interface over VectorCartPole (observations as (4, n) float64)."""

    reward_is_one = True  # the return of an episode is its length

    def __init__(self, max_episode_steps: int):
        self.max_episode_steps = max_episode_steps
        self.vec: VectorCartPole | None = None

    def prepare(self, n: int) -> None:
        if self.vec is None or self.vec.n != n:
            self.vec = VectorCartPole(n, self.max_episode_steps)

    def reset(self, slots, seeds) -> None:
        self.vec.reset(slots, seeds)

    def obs(self) -> np.ndarray:
        return self.vec.obs().astype(np.float64)

    def step(self, actions, live):
        """(reward, done, bad): reward None (1 per step); never bad, as actions are 0/1 and the state bounded."""
        term, trunc = self.vec.step(actions)
        return None, term | trunc, None
