"""Individuals encoded as seed lists (Such et al. 2017): a base point plus the mutations that led to it.

A Deep GA child is its parent plus `sigma * noise(seed)`, so an individual is fully named by its base (the
initial point or a row of the initial population) and the seeds of the mutations along its line of descent.
Shipping the seeds instead of the parameters makes a worker task cost O(bases + lineage lengths) bytes.

Bit-identity: a row is always summed in lineage order, one mutation at a time, through `add_mutation`
(`row += sigma * noise(seed)`), so a row built from scratch in a worker has the same bits as the asking
process's row built incrementally from its parent's cached row.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from .candidates import Candidates
from .noise import noise


def add_mutation(row: np.ndarray, seed: int, sigma, source: str, buf: np.ndarray | None = None) -> np.ndarray:
    """row += sigma * noise(seed): the only way a mutation is ever applied (see the module docstring)."""
    eps = noise(seed, row.shape[0], source, out=buf)
    np.multiply(eps, sigma, out=eps)
    row += eps
    return row


def concat_lineages(parts: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Flat seeds and offsets (CSR: row r owns seeds[offsets[r]:offsets[r + 1]]) of per-row seed arrays."""
    lengths = np.array([len(p) for p in parts], dtype=np.int64)
    offsets = np.zeros(len(parts) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    seeds = np.concatenate(parts).astype(np.int64) if parts else np.zeros(0, dtype=np.int64)
    return seeds, offsets


class LineageCandidates(Candidates):
    """Row r is `bases[base_of[r]]` plus `sigma * noise(s, dim, source)` for each seed s of its lineage, in order.

    Lineages are stored flat: row r's seeds are `seeds[offsets[r]:offsets[r + 1]]`. `row_cache` holds the
    dense rows when the asking process already has them; it is never shipped or saved. Without it, `take`
    rebuilds a row in O(lineage length x dim); rows that share all but their last seed (siblings, an elite
    and its children) share that work, with one extra row of memory.
    """

    kind = "lineage"

    def __init__(self, bases, base_of, seeds, offsets, sigma, source: str = "rng", row_cache: np.ndarray | None = None):
        self.bases = np.asarray(bases, dtype=np.float64)
        self.base_of = np.asarray(base_of, dtype=np.int64)
        self.seeds = np.asarray(seeds, dtype=np.int64)
        self.offsets = np.asarray(offsets, dtype=np.int64)
        self.sigma = np.asarray(sigma, dtype=np.float64)
        self.source = str(source)
        self._row_cache = row_cache
        if self.bases.ndim != 2:
            raise ValueError(f"lineage bases must be 2-d, got shape {self.bases.shape}")
        n = len(self.base_of)
        if self.offsets.shape != (n + 1,) or self.offsets[0] != 0 or self.offsets[-1] != len(self.seeds):
            raise ValueError("lineage offsets must have one entry per row plus one, from 0 to len(seeds)")

    def __len__(self) -> int:
        return self.base_of.shape[0]

    @property
    def dim(self) -> int:
        return self.bases.shape[1]

    def lineage(self, r: int) -> np.ndarray:
        """The mutation seeds of row r, oldest first."""
        return self.seeds[self.offsets[r] : self.offsets[r + 1]]

    def take(self, idx) -> np.ndarray:
        idx = np.asarray(idx, dtype=np.int64)
        if self._row_cache is not None:
            return self._row_cache[idx]
        out = np.empty((len(idx), self.dim))
        groups: dict[tuple, list[int]] = {}  # rows with the same base and the same lineage but the last seed
        for pos, r in enumerate(idx):
            lin = self.lineage(r)
            groups.setdefault((int(self.base_of[r]), len(lin) > 0, lin[:-1].tobytes()), []).append(pos)
        prefix, buf = np.empty(self.dim), np.empty(self.dim)
        for (base, mutated, _), members in groups.items():
            prefix[:] = self.bases[base]
            if not mutated:
                out[members] = prefix
                continue
            for s in self.lineage(idx[members[0]])[:-1]:
                add_mutation(prefix, s, self.sigma, self.source, buf)
            for pos in members:
                out[pos] = prefix
                add_mutation(out[pos], self.lineage(idx[pos])[-1], self.sigma, self.source, buf)
        return out

    def materialize(self) -> np.ndarray:
        """All rows; built rows are kept as the cache, so asking again costs nothing."""
        if self._row_cache is None:
            self._row_cache = self.take(np.arange(len(self)))
        return self._row_cache

    def subset(self, idx) -> "LineageCandidates":
        """Rows idx (in that order) with only the bases they use; the dense cache follows if there is one."""
        idx = np.asarray(idx, dtype=np.int64)
        used, base_of = np.unique(self.base_of[idx], return_inverse=True)
        seeds, offsets = concat_lineages([self.lineage(r) for r in idx])
        cache = None if self._row_cache is None else self._row_cache[idx]
        return LineageCandidates(self.bases[used], base_of.reshape(-1), seeds, offsets, self.sigma, self.source, cache)

    def slice_state(self, a: int, b: int) -> dict[str, Any]:
        # the bases rows a..b-1 descend from and their seeds: O(bases x dim + lineage lengths), no row data
        return self.subset(np.arange(a, b)).to_state(copy=False)

    def to_state(self, copy: bool = True) -> dict[str, Any]:
        c = np.copy if copy else np.asarray
        return {"kind": self.kind, "bases": c(self.bases), "base_of": c(self.base_of), "seeds": c(self.seeds),
                "offsets": c(self.offsets), "sigma": c(self.sigma), "source": self.source}

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> "LineageCandidates":
        return cls(state["bases"], state["base_of"], state["seeds"], state["offsets"], state["sigma"],
                   state.get("source", "rng"))
