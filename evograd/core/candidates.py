"""What `ask` produces, in the most compact form an optimizer can give.

`Optimizer.ask()` always returns a dense (n, dim) ndarray, which is what a user scripting a fitness
function wants. Underneath, `Optimizer.ask_candidates()` returns one of these objects, so an evaluator
that ships work to other processes can send a distribution ES's population as a center plus integer
noise seeds (workers regenerate the perturbations, see `evograd.core.noise`), or a GA's population as seed
lists (`LineageCandidates`), instead of n x dim floats. Every form can build any
subset of its rows (`take`) so a worker only materializes its own slice.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from .noise import noise, noise_from_seed  # noqa: F401  (noise_from_seed re-exported: its historical home)


def draw_seeds(rng: np.random.Generator, k: int) -> np.ndarray:
    """k fresh noise seeds from an optimizer's own stream."""
    return rng.integers(0, 2**63 - 1, size=k, dtype=np.int64)


class Candidates:
    """A population of candidate points. Subclasses differ only in how rows are stored."""

    kind = "abstract"

    def __len__(self) -> int:  # pragma: no cover - interface
        raise NotImplementedError

    @property
    def dim(self) -> int:  # pragma: no cover - interface
        raise NotImplementedError

    def take(self, idx) -> np.ndarray:
        """Rows `idx` as a dense (len(idx), dim) float64 array."""
        raise NotImplementedError  # pragma: no cover

    def materialize(self) -> np.ndarray:
        return self.take(np.arange(len(self)))

    def to_state(self) -> dict[str, Any]:
        raise NotImplementedError  # pragma: no cover

    def slice_state(self, a: int, b: int) -> dict[str, Any]:
        """Rows a..b-1 as plain state in this form's most compact encoding: what one worker task is sent.
        Compact forms override it so a slice costs O(dim + b - a), not O((b - a) x dim)."""
        return DenseCandidates(self.take(np.arange(a, b))).to_state()

    @staticmethod
    def from_state(state: dict[str, Any]) -> "Candidates":
        kind = state["kind"]
        if kind == DenseCandidates.kind:
            return DenseCandidates(state["X"])
        if kind == SeededCandidates.kind:
            return SeededCandidates(state["center"], state["sigma"], state["seeds"], state["direction"], state["sign"],
                                    source=state.get("source", "rng"))
        if kind == LineageCandidates.kind:
            return LineageCandidates.from_state(state)
        raise ValueError(f"unknown candidate form {kind!r} in state")


class DenseCandidates(Candidates):
    """An explicit (n, dim) matrix: the general form every optimizer can produce."""

    kind = "dense"

    def __init__(self, X: np.ndarray):
        self.X = np.asarray(X, dtype=np.float64)
        if self.X.ndim != 2:
            raise ValueError(f"dense candidates must be 2-d, got shape {self.X.shape}")

    def __len__(self) -> int:
        return self.X.shape[0]

    @property
    def dim(self) -> int:
        return self.X.shape[1]

    def take(self, idx) -> np.ndarray:
        return self.X[np.asarray(idx, dtype=np.int64)]

    def materialize(self) -> np.ndarray:
        return self.X

    def to_state(self) -> dict[str, Any]:
        return {"kind": self.kind, "X": self.X.copy()}


class SeededCandidates(Candidates):
    """Row r is `center + sign[r] * sigma * noise(seeds[direction[r]], dim, source)`.

    Covers antithetic and plain Gaussian sampling around one center (OpenAI-ES, ARS, SNES): shipping it
    costs one center plus a few integers per row, whatever the dimension. `sign` 0 gives the center itself.
    `source` ("rng" or "table", see `evograd.core.noise`) travels with the seeds.
    """

    kind = "seeded"

    def __init__(self, center, sigma, seeds, direction, sign, noise_cache: np.ndarray | None = None,
                 source: str = "rng"):
        # noise_cache: the (len(seeds), dim) directions when the optimizer already drew them, so the
        # process that asked does not generate them twice; it is never shipped or saved.
        self._noise_cache = noise_cache
        self.source = str(source)
        self.center = np.asarray(center, dtype=np.float64)
        self.sigma = np.asarray(sigma, dtype=np.float64)
        self.seeds = np.asarray(seeds, dtype=np.int64)
        self.direction = np.asarray(direction, dtype=np.int64)
        self.sign = np.asarray(sign, dtype=np.float64)
        if self.direction.shape != self.sign.shape:
            raise ValueError("direction and sign must have the same length")

    def __len__(self) -> int:
        return self.direction.shape[0]

    @property
    def dim(self) -> int:
        return self.center.shape[0]

    def noise(self, directions=None) -> np.ndarray:
        """The (k, dim) standard-normal directions (all seeds, or those indexed by `directions`)."""
        if self._noise_cache is not None:
            return self._noise_cache if directions is None else self._noise_cache[np.asarray(directions)]
        seeds = self.seeds if directions is None else self.seeds[np.asarray(directions, dtype=np.int64)]
        out = np.empty((len(seeds), self.dim))
        for i, s in enumerate(seeds):
            noise(s, self.dim, self.source, out=out[i])
        return out

    def take(self, idx) -> np.ndarray:
        # Row by row into one preallocated output: no (n, dim) temporaries beyond the result itself,
        # which matters at a million parameters.
        idx = np.asarray(idx, dtype=np.int64)
        dirs = self.direction[idx]
        if self._noise_cache is not None:
            eps, pos = self._noise_cache, dirs
        else:
            uniq, pos = np.unique(dirs, return_inverse=True)
            eps = self.noise(uniq)
        out = np.empty((len(idx), self.dim))
        for r, i in enumerate(idx):
            np.multiply(eps[pos[r]], self.sign[i] * self.sigma, out=out[r])
            out[r] += self.center
        return out

    def slice_state(self, a: int, b: int) -> dict[str, Any]:
        # only the seeds rows a..b-1 use, directions renumbered
        used, local = np.unique(self.direction[a:b], return_inverse=True)
        return {"kind": self.kind, "center": self.center, "sigma": self.sigma, "seeds": self.seeds[used],
                "direction": local.astype(np.int64).reshape(-1), "sign": self.sign[a:b], "source": self.source}

    def to_state(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "center": self.center.copy(),
            "sigma": self.sigma.copy(),
            "seeds": self.seeds.copy(),
            "direction": self.direction.copy(),
            "sign": self.sign.copy(),
            "source": self.source,
        }


# ------------------------------------------------------------------------------ lineages (seed lists)
# Individuals encoded as seed lists (Such et al. 2017): a base point plus the mutations that led to it.
#
# A Deep GA child is its parent plus `sigma * noise(seed)`, so an individual is fully named by its base (the
# initial point or a row of the initial population) and the seeds of the mutations along its line of descent.
# Shipping the seeds instead of the parameters makes a worker task cost O(bases + lineage lengths) bytes.
#
# Bit-identity: a row is always summed in lineage order, one mutation at a time, through `add_mutation`
# (`row += sigma * noise(seed)`), so a row built from scratch in a worker has the same bits as the asking
# process's row built incrementally from its parent's cached row.


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
