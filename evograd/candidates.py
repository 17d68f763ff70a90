"""What `ask` produces, in the most compact form an optimizer can give.

`Optimizer.ask()` always returns a dense (n, dim) ndarray, which is what a user scripting a fitness
function wants. Underneath, `Optimizer.ask_candidates()` returns one of these objects, so an evaluator
that ships work to other processes can send a distribution ES's population as a center plus integer
noise seeds (workers regenerate the perturbations, see `evograd.noise`), or a GA's population as seed
lists (`evograd.lineage.LineageCandidates`), instead of n x dim floats. Every form can build any
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
        if kind == "lineage":
            from .lineage import LineageCandidates  # it builds on this module

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
    `source` ("rng" or "table", see `evograd.noise`) travels with the seeds.
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
