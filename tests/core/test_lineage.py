"""Seed-list individuals (LineageCandidates), the GA's "seeds" encoding, and the shared noise table."""
import copy
import pickle

import numpy as np
import pytest

import evograd as eg
from evograd import functions
from evograd.core.candidates import Candidates, LineageCandidates, SeededCandidates, concat_lineages
from evograd.core.noise import TABLE_SIZE, noise, noise_from_seed, noise_table, table_offset
from evograd.optim.ga import GA


def run(opt, f, gens):
    for _ in range(gens):
        opt.tell(f(opt.ask()))
    return opt


def rebuilt(cands, a, b):
    """What a worker task rebuilds from its slice, after a trip through pickle."""
    return Candidates.from_state(pickle.loads(pickle.dumps(cands.slice_state(a, b)))).materialize()


# ---------------------------------------------------------------------------------------------- noise
def test_noise_sources():
    assert np.array_equal(noise(12345, 7), noise_from_seed(12345, 7))
    off = table_offset(2**62 + 5, 100)
    t = noise(2**62 + 5, 100, "table")
    assert t.dtype == np.float64 and np.array_equal(t, noise_table()[off : off + 100].astype(np.float64))
    assert not np.array_equal(t, noise(2**62 + 6, 100, "table"))
    assert abs(noise_table()[:100_000].std() - 1) < 0.01
    with pytest.raises(ValueError, match="does not fit"):
        noise(1, TABLE_SIZE + 1, "table")
    with pytest.raises(ValueError, match="unknown noise source"):
        noise(1, 3, "urandom")


@pytest.mark.parametrize("name", ["openai_es", "snes", "ars"])
def test_seeded_optimizers_ship_their_noise_source(name):
    opt = eg.make(name, x0=np.ones(30), seed=0, noise="table")
    cands = opt.ask_candidates()
    assert cands.source == "table"
    X = cands.materialize()
    assert np.array_equal(rebuilt(cands, 0, len(cands)), X)
    assert np.array_equal(rebuilt(cands, 3, 7), X[3:7])
    # same seeds, other source: other directions
    assert not np.array_equal(eg.make(name, x0=np.ones(30), seed=0).ask(), X)
    # a state saved before the source existed loads as "rng"
    old = eg.make(name, x0=np.ones(30), seed=0).ask_candidates().to_state()
    del old["source"]
    assert Candidates.from_state(old).source == "rng"
    with pytest.raises(eg.ParameterError, match="'noise' parameter"):
        eg.make(name, x0=np.ones(3), noise="gpu")


# ---------------------------------------------------------------------------------------------- lineages
def test_a_row_is_its_base_plus_its_mutations_in_lineage_order():
    rng = np.random.default_rng(0)
    bases = rng.normal(size=(2, 9))
    lineages = [[], [5], [5, 7], [5, 8], [5, 7, 1], [5, 7, 2], [3]]
    base_of = [0, 0, 0, 0, 0, 0, 1]
    seeds, offsets = concat_lineages([np.array(x, dtype=np.int64) for x in lineages])
    cands = LineageCandidates(bases, base_of, seeds, offsets, 0.3, "table")
    X = cands.materialize()
    for r, lin in enumerate(lineages):
        want = bases[base_of[r]].copy()
        for s in lin:
            want += 0.3 * noise(s, 9, "table")
        assert np.array_equal(X[r], want)
    # any subset in any order, with repeats, through the sibling-sharing path
    fresh = LineageCandidates.from_state(cands.to_state())
    assert np.array_equal(fresh.take([5, 2, 4, 4, 0, 6]), X[[5, 2, 4, 4, 0, 6]])
    sub = cands.subset([6, 1])  # only base 1 and base 0's used rows
    assert sub.bases.shape == (2, 9) and np.array_equal(sub.materialize(), X[[6, 1]])
    assert cands.subset([1, 2]).bases.shape == (1, 9)


@pytest.mark.parametrize("source", ["rng", "table"])
@pytest.mark.parametrize("elitism,population_x0", [(0, False), (3, False), (2, True)])
def test_asker_and_worker_rows_are_bit_identical(source, elitism, population_x0):
    rng = np.random.default_rng(1)
    x0 = rng.normal(size=(10, 40)) if population_x0 else rng.normal(size=40)
    opt = GA(x0=x0, popsize=10, truncation=4, elitism=elitism, sigma0=0.5, noise=source, seed=2)
    for gen in range(7):
        cands = opt.ask_candidates()
        assert isinstance(cands, LineageCandidates)
        X = cands.materialize()  # the asking process's rows: parents' cached rows plus one mutation
        longest = np.diff(cands.offsets).max()
        assert longest <= gen + (0 if population_x0 else 1)  # one seed per generation at most
        for a, b in [(0, 10), (0, 3), (3, 4), (4, 10)]:
            assert np.array_equal(rebuilt(cands, a, b), X[a:b])
        f = functions.rastrigin(X)
        opt.tell(f)
        assert np.array_equal(opt.center, X[np.argmin(f)])  # the parents' cache holds the asked rows
    assert longest >= 2  # the rows checked really were sums of several mutations


def test_a_slice_ships_its_bases_and_seeds_not_its_rows():
    def slice_bytes(dim, a, b):
        opt = run(GA(x0=np.zeros(dim), popsize=64, sigma0=0.1, seed=0), functions.sphere, 5)
        cands = opt.ask_candidates()
        n_seeds = int(cands.offsets[b] - cands.offsets[a])
        return len(pickle.dumps(cands.slice_state(a, b))), n_seeds

    big_slice, seeds_big = slice_bytes(20_000, 0, 40)
    small_slice, seeds_small = slice_bytes(20_000, 0, 4)
    smaller_dim, _ = slice_bytes(10_000, 0, 40)
    # one base of dim floats, plus a few integers per row and per seed; never rows x dim
    assert 8 * 20_000 < big_slice < 8 * 20_000 + 8 * (2 * 40 + seeds_big) + 1_000
    assert big_slice - small_slice < 8 * (2 * 36 + seeds_big - seeds_small) + 200
    assert big_slice - smaller_dim == pytest.approx(8 * 10_000, abs=8 * 40)


@pytest.mark.parametrize("source", ["rng", "table"])
@pytest.mark.parametrize("mid_generation", [False, True])
def test_ga_state_round_trip_holds_seeds_and_is_bit_exact(source, mid_generation):
    kw = {"x0": np.linspace(-1, 1, 30), "popsize": 12, "elitism": 2, "noise": source, "seed": 3}
    a = run(GA(**kw), functions.rastrigin, 4)
    if mid_generation:
        a.ask()
    state = a.state_dict()
    lin = state["algorithm"]["lineages"]
    assert lin["bases"].shape == (1, 30) and "ranked" not in state["algorithm"]  # no dense rows saved
    assert lin["seeds"].dtype == np.int64 and len(lin["offsets"]) == max(a.truncation, a.elitism) + 1
    b = GA(**kw)
    b.load_state_dict(eg.serialization.loads(eg.serialization.dumps(copy.deepcopy(state))))
    np.testing.assert_array_equal(b.parents, a.parents)
    for _ in range(3):
        Xa, Xb = a.ask(), b.ask()
        np.testing.assert_array_equal(Xa, Xb)
        a.tell(functions.rastrigin(Xa))
        b.tell(functions.rastrigin(Xb))
    assert a.best.value == b.best.value
    with pytest.raises(eg.ParameterError, match="encoding='seeds'"):
        GA(**{**kw, "encoding": "dense"}).load_state_dict(state)


def test_encoding_defaults_and_the_crossover_error():
    assert GA(x0=np.zeros(3)).encoding == "seeds"
    assert GA(x0=np.zeros(3), crossover="uniform").encoding == "dense"
    assert isinstance(GA(x0=np.zeros(3), encoding="dense").ask_candidates(), eg.DenseCandidates)
    with pytest.raises(eg.ParameterError, match="'encoding' parameter of GA must be 'dense' with crossover"):
        GA(x0=np.zeros(3), crossover="uniform", encoding="seeds")
    with pytest.raises(eg.ParameterError, match="'encoding' parameter of GA"):
        GA(x0=np.zeros(3), encoding="bits")
    with pytest.raises(eg.ParameterError, match="'noise' parameter of GA"):
        GA(x0=np.zeros(3), noise="gpu")


@pytest.mark.parametrize("source", ["rng", "table"])
def test_gym_problem_with_two_workers_gets_the_same_returns_from_seeds_as_from_rows(source):
    from evograd.gym.problem import evaluate_compact_slice

    def fresh():
        return eg.GymProblem("CartPole-v1", policy="mlp", hidden_sizes=(8,), seed=0, n_jobs=2, max_episode_steps=25)

    compact, dense = fresh(), fresh()
    opt = GA(x0=compact.initial_params(), popsize=9, truncation=3, elitism=1, noise=source, maximize=True, seed=0)
    for _ in range(3):
        cands = opt.ask_candidates()
        assert isinstance(cands, LineageCandidates)
        tasks = compact._tasks(cands, np.arange(9), 0, 0, 1, False)
        assert len(tasks) == 2 and all(fn is evaluate_compact_slice for fn, _, _ in tasks)
        r_compact, r_dense = compact.evaluate(cands), dense.evaluate(opt.ask())
        assert np.array_equal(r_compact, r_dense) and np.all(np.isfinite(r_compact))
        opt.tell(r_compact)
    compact.close()
    dense.close()


def test_seeded_candidates_default_source_is_unchanged():
    c = SeededCandidates(np.zeros(4), 1.0, [9], [0], [1.0])
    assert c.source == "rng" and np.array_equal(c.materialize()[0], noise_from_seed(9, 4))
