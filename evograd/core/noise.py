"""Standard-normal directions named by integer seeds, from one of two sources.

Every compact population form (`SeededCandidates`, `LineageCandidates`) ships seeds and lets the receiving
process regenerate the noise, so the asking process and every worker must turn a seed into the same vector.
Two sources do that:

- "rng": `np.random.default_rng(seed).standard_normal(dim)`, an independent stream per seed. Exact Gaussian
  vectors of any length; costs generating `dim` normals per seed (about 10 ms at a million parameters).
- "table": a slice of one fixed table of 2**25 float32 standard normals (128 MB), built once per process on
  first use, at an offset derived from the seed, as in OpenAI's ES code (which used 250M floats). A slice copy
  costs a fraction of generating the normals (about 50x less at a million parameters), and regenerating
  noise is what a worker rebuilding many rows, or a GA lineage of many mutations, spends its time on.
  Directions of different seeds are overlapping, shifted windows of the same table: uncorrelated in
  expectation, but not independent draws, and `dim` is limited to the table.
"""
from __future__ import annotations

import numpy as np

SOURCES = ("rng", "table")
TABLE_SIZE = 2**25
TABLE_SEED = 0x7AB1E5EED  # fixed forever: changing it changes every "table" result ever produced
_table: np.ndarray | None = None


def noise_from_seed(seed: int, dim: int) -> np.ndarray:
    """The "rng" direction of `seed`; identical in every process and on every platform."""
    return np.random.default_rng(int(seed)).standard_normal(dim)


def noise_table() -> np.ndarray:
    """The shared float32 table, built on first use and kept for the life of the process."""
    global _table
    if _table is None:
        _table = np.random.default_rng(TABLE_SEED).standard_normal(TABLE_SIZE, dtype=np.float32)
        _table.setflags(write=False)
    return _table


def table_offset(seed: int, dim: int) -> int:
    """Start of the seed's window; seeds are uniform 63-bit integers, so offsets are near-uniform."""
    if dim > TABLE_SIZE:
        raise ValueError(f"noise='table' holds {TABLE_SIZE:,} numbers; dim {dim:,} does not fit (use noise='rng')")
    return int(seed) % (TABLE_SIZE - dim + 1)


def noise(seed: int, dim: int, source: str = "rng", out: np.ndarray | None = None) -> np.ndarray:
    """The float64 standard-normal direction that `seed` names in `source`, written into `out` if given."""
    if out is None:
        out = np.empty(dim)
    if source == "rng":
        np.random.default_rng(int(seed)).standard_normal(out=out)
    elif source == "table":
        off = table_offset(seed, dim)
        out[...] = noise_table()[off : off + dim]
    else:
        raise ValueError(f"unknown noise source {source!r}; expected one of {SOURCES}")
    return out
