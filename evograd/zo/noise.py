"""Gaussian directions regenerated from seeds and applied to a module's parameters in place, chunk by chunk.

A direction z has one entry per trainable parameter entry and is never stored. Parameter tensor number
`index` (its position in `model.named_parameters()`) draws its part of direction `direction` at step `step`
from a `torch.Generator` seeded with `direction_seed(seed, step, direction, index)`, `chunk` values at a time
(`Tensor.normal_` into one reusable buffer): entries [0, chunk), then [chunk, 2 chunk), ... So the same z comes
back every time it is drawn again, the only extra memory is one chunk-sized buffer per device and dtype
(a second one during the update), and a tensor's noise does not depend on which other tensors are trained.
Masked entries (mask False) get z = 0: they are never perturbed, and their update is zero.

Restoring after p + mu z - 2 mu z + mu z is not exact in floating point: each of the three in-place additions
rounds once, so an entry comes back within 3 * 2**-24 * (|p| + mu |z|) in float32 (about 1.8e-7 of its size;
see `restore_bound`); masked entries and entries whose z is 0 come back bit for bit. Measured on a
1024-2048-2048 MLP (torch's default init, mu = 1e-3): 46% of the entries differ after a restore, by at most
1.9e-9 and 0.6 ulp of p on average; over steps this is a random walk far below the updates' size.
"""
from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from ..core.validation import ParameterError

CHUNK = 2**16  # values drawn per call: a 256 KiB float32 buffer


def direction_seed(seed: int, step: int, direction: int, index: int) -> int:
    """The 64-bit generator seed of parameter tensor `index` in direction `direction` of step `step`."""
    return int(np.random.SeedSequence([seed, step, direction, index]).generate_state(1, np.uint64)[0])


def restore_bound(p: torch.Tensor, z: torch.Tensor, mu: float) -> torch.Tensor:
    """Entrywise bound on |restored - p| after +mu z, -2 mu z, +mu z in p's floating-point dtype: three
    roundings, each at most half an ulp of a value no larger than |p| + mu |z|."""
    unit = torch.finfo(p.dtype).eps / 2
    return 3 * unit * (p.abs() + mu * z.abs()) * (1 + 4 * unit) + torch.finfo(p.dtype).tiny


@dataclass
class Slot:
    """One trainable parameter tensor: its name, position in named_parameters, flat view, flat mask."""

    name: str
    index: int
    flat: torch.Tensor
    mask: torch.Tensor | None  # flat bool, True where the entry is trained; None: all of it


def slots(model: torch.nn.Module, mask: Any, owner: str) -> list[Slot]:
    """The module's trainable parameters (requires_grad, not wholly masked) as flat views of their storage."""
    if not isinstance(model, torch.nn.Module):
        raise ParameterError(f"The 'model' parameter of {owner} must be a torch.nn.Module. Got {model!r} instead.")
    named = list(model.named_parameters())
    masks = _masks(named, mask, owner)
    out = []
    for index, (name, p) in enumerate(named):
        if not p.requires_grad:
            continue
        if not p.is_floating_point():
            raise ParameterError(f"{owner}: parameter {name!r} has dtype {p.dtype}; only floating-point "
                                 f"parameters can be perturbed (set requires_grad=False to leave it alone)")
        if not p.is_contiguous():
            raise ParameterError(f"{owner}: parameter {name!r} is not contiguous, so it has no flat view to "
                                 f"perturb in place; make it contiguous (p.data = p.data.contiguous())")
        m = masks.get(name)
        if m is not None and not bool(m.any()):
            continue  # wholly masked: never touched
        out.append(Slot(name, index, p.detach().view(-1), m))
    if not out:
        raise ParameterError(f"{owner}: the model has no parameter to train (none requires grad, or all are "
                             f"masked)")
    return out


def _masks(named: list, mask: Any, owner: str) -> dict[str, torch.Tensor]:
    """Flat bool masks by parameter name, from a dict name -> bool tensor or a callable (name, p) -> tensor."""
    if mask is None:
        return {}
    params = dict(named)
    if callable(mask) and not isinstance(mask, Mapping):
        given = {name: mask(name, p) for name, p in named}
    elif isinstance(mask, Mapping):
        unknown = sorted(set(mask) - set(params))
        if unknown:
            raise ParameterError(f"The 'mask' parameter of {owner} names {unknown}, not parameters of the model "
                                 f"(its parameters: {', '.join(list(params)[:8])}{', ...' if len(params) > 8 else ''})")
        given = dict(mask)
    else:
        raise ParameterError(f"The 'mask' parameter of {owner} must be a dict name -> bool tensor, a callable "
                             f"(name, parameter) -> bool tensor or None, or None. Got {mask!r} instead.")
    return {name: _one_mask(name, m, params[name], owner) for name, m in given.items() if m is not None}


def _one_mask(name: str, m: Any, p: torch.Tensor, owner: str) -> torch.Tensor:
    if not isinstance(m, torch.Tensor) or m.dtype != torch.bool:
        what = f"a {m.dtype} tensor" if isinstance(m, torch.Tensor) else repr(m)
        raise ParameterError(f"The 'mask' parameter of {owner} must give a bool tensor for parameter {name!r}. "
                             f"Got {what} instead.")
    if tuple(m.shape) != tuple(p.shape):
        raise ParameterError(f"The 'mask' parameter of {owner} gives parameter {name!r} a mask of shape "
                             f"{tuple(m.shape)}; the parameter's shape is {tuple(p.shape)}")
    return m.to(p.device).contiguous().view(-1)


class Noise:
    """Seeded Gaussian chunks written into reusable buffers (one set per device and dtype)."""

    def __init__(self, chunk: int = CHUNK):
        self.chunk = chunk
        self._generators: dict[tuple, torch.Generator] = {}
        self._buffers: dict[tuple, torch.Tensor] = {}

    def generator(self, device: torch.device, which: int = 0) -> torch.Generator:
        key = (str(device), which)
        if key not in self._generators:
            self._generators[key] = torch.Generator(device=device)
        return self._generators[key]

    def buffer(self, like: torch.Tensor, which: int = 0) -> torch.Tensor:
        key = (str(like.device), like.dtype, which)
        if key not in self._buffers:
            self._buffers[key] = torch.empty(self.chunk, dtype=like.dtype, device=like.device)
        return self._buffers[key]

    def chunks(self, slot: Slot, seed: int) -> Iterator[tuple[int, int, torch.Tensor]]:
        """(start, stop, z[start:stop]) over the slot, z masked; the yielded view is overwritten next time."""
        gen = self.generator(slot.flat.device)
        gen.manual_seed(seed)
        buf = self.buffer(slot.flat)
        n = slot.flat.numel()
        for start in range(0, n, self.chunk):
            stop = min(start + self.chunk, n)
            z = buf[: stop - start]
            z.normal_(generator=gen)
            if slot.mask is not None:
                z.mul_(slot.mask[start:stop])
            yield start, stop, z

    def combined_chunks(self, slot: Slot, seeds: list[int], coefs: list[float]
                        ) -> Iterator[tuple[int, int, torch.Tensor]]:
        """(start, stop, sum_i coefs[i] z_i[start:stop]) over the slot, drawing the q directions in lockstep
        (q generators, two chunk buffers), masked."""
        gens = [self.generator(slot.flat.device, which=i) for i in range(len(seeds))]
        for gen, seed in zip(gens, seeds):
            gen.manual_seed(seed)
        z_buf, g_buf = self.buffer(slot.flat), self.buffer(slot.flat, which=1)
        n = slot.flat.numel()
        for start in range(0, n, self.chunk):
            stop = min(start + self.chunk, n)
            z, g = z_buf[: stop - start], g_buf[: stop - start]
            g.zero_()
            for gen, coef in zip(gens, coefs):
                z.normal_(generator=gen)
                g.add_(z, alpha=coef)
            if slot.mask is not None:
                g.mul_(slot.mask[start:stop])
            yield start, stop, g


def perturb(params: list[Slot], noise: Noise, seeds: Callable[[Slot], int], scale: float) -> None:
    """p += scale * z for every slot, chunk by chunk (seeds(slot): that slot's generator seed)."""
    for slot in params:
        for start, stop, z in noise.chunks(slot, seeds(slot)):
            slot.flat[start:stop].add_(z, alpha=scale)
