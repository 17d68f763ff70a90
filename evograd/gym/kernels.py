"""Batched policy kernels for the rollout workers: every slot's action from one computation per env step.

Observations come as (obs_dim, n_slots). Each member's output is computed with an operation order that does
not depend on the batch (BLAS and numpy's pairwise reductions change their rounding with the batch shape),
so a candidate's return is the same however the population is split across workers: linear policies as a
sequential sum in numpy (no torch per step), other modules per member under torch.vmap. `assign` loads
new members' parameters into free slots; calling the kernel maps observations to env actions.
"""
from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from .policies import Policy


class LinearKernel:
    """logits = b + w_0 o_0 + w_1 o_1 + ..., summed strictly left to right for every member.

    The sum is the last row of a cumulative sum over the observation axis: np.cumsum is sequential by
    definition (out[j] = out[j-1] + x[j]), so a member's rounding cannot depend on the batch, unlike
    BLAS or numpy's pairwise reductions; and it is 3 numpy calls per step whatever obs_dim is.
    For two discrete actions only the sign of logit1 - logit0 matters, so the weights are stored as that
    difference (differs from argmax of the two logits only by rounding).
    """

    def __init__(self, policy: Policy, n: int, post: Callable):
        self.O, self.A, self.bias = policy.obs_dim, policy.act_dim, policy.net.bias is not None
        self.pair = policy.discrete and self.A == 2
        rows = 1 if self.pair else self.A
        self.post = (lambda d: d[0] > 0.0) if self.pair else post
        self.W = np.zeros((self.O + 1, rows, n))  # row 0: bias (times a constant-1 input), rows 1..O: weights
        self.x = np.ones((self.O + 1, 1, n))
        self._prod, self._cum = np.empty_like(self.W), np.empty_like(self.W)

    def assign(self, slots: np.ndarray, P: np.ndarray) -> None:
        m, AO = len(slots), self.A * self.O
        W = P[:, :AO].reshape(m, self.A, self.O)
        b = P[:, AO:] if self.bias else np.zeros((m, self.A))
        if self.pair:
            W, b = W[:, 1:] - W[:, :1], b[:, 1:] - b[:, :1]
        self.W[1:, :, slots] = W.transpose(2, 1, 0)
        self.W[0, :, slots] = b  # int + array index around a slice: numpy puts the slot axis first

    def __call__(self, o: np.ndarray) -> np.ndarray:
        self.x[1:, 0, :] = o
        np.multiply(self.W, self.x, out=self._prod)
        np.cumsum(self._prod, axis=0, out=self._cum)
        return self.post(self._cum[-1])


class TorchKernel:
    """Any module, one functional call per member under vmap (per-member matmuls, batch-independent)."""

    def __init__(self, policy: Policy, n: int, post: Callable):
        self.net, self.post = policy.net, post
        self.shapes = [(name, p.shape, p.dtype) for name, p in self.net.named_parameters()]
        self.P = {name: torch.zeros((n, *shape), dtype=dt) for name, shape, dt in self.shapes}
        self.dtype = self.shapes[0][2] if self.shapes else torch.float32
        call = lambda params, x: torch.func.functional_call(self.net, params, (x[None],))[0]
        self._batched = torch.func.vmap(call)

    def assign(self, slots: np.ndarray, P: np.ndarray) -> None:
        i, idx = 0, torch.from_numpy(np.asarray(slots))
        for name, shape, dt in self.shapes:
            k = int(np.prod(shape))
            self.P[name][idx] = torch.from_numpy(P[:, i:i + k].reshape(len(slots), *shape)).to(dt)
            i += k

    @torch.no_grad()
    def __call__(self, o: np.ndarray) -> np.ndarray:
        out = self._batched(self.P, torch.from_numpy(np.ascontiguousarray(o.T)).to(self.dtype))
        return self.post(out.double().numpy().T)
