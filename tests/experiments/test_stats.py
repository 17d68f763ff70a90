"""evograd.experiments.stats: IQM, stratified-bootstrap intervals, probability of improvement, performance profiles
(Agarwal et al. 2021), held to their definitions, to scipy, to simulated coverage, and to rliable where it imports."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from evograd.experiments import stats

finite = st.floats(-1e6, 1e6, allow_nan=False, allow_infinity=False)
runs = st.lists(finite, min_size=1, max_size=40)
small_ints = st.lists(st.integers(-5, 5), min_size=1, max_size=15)  # many ties


@settings(max_examples=200, deadline=None)
@given(runs)
def test_iqm_is_scipy_trim_mean(x):
    scipy_stats = pytest.importorskip("scipy.stats")
    assert stats.iqm(x) == pytest.approx(scipy_stats.trim_mean(x, 0.25), rel=1e-9, abs=1e-6)


@settings(max_examples=100, deadline=None)
@given(st.lists(runs, min_size=1, max_size=5))
def test_iqm_pools_the_runs_of_all_tasks(tasks):
    scipy_stats = pytest.importorskip("scipy.stats")
    pooled = [v for t in tasks for v in t]
    assert stats.iqm(tasks) == pytest.approx(scipy_stats.trim_mean(pooled, 0.25), rel=1e-9, abs=1e-6)
    assert stats.mean(tasks) == pytest.approx(np.mean([np.mean(t) for t in tasks]), rel=1e-9, abs=1e-6)


@settings(max_examples=100, deadline=None)
@given(finite, st.lists(st.floats(0, 1e4), min_size=1, max_size=20), st.booleans())
def test_iqm_of_symmetric_data_is_its_mean(center, offsets, with_center):
    x = [center + d for d in offsets] + [center - d for d in offsets] + ([center] if with_center else [])
    assert stats.iqm(x) == pytest.approx(np.mean(x), rel=1e-9, abs=1e-6)
    assert stats.iqm(x) == pytest.approx(center, rel=1e-9, abs=1e-6)


def test_iqm_drops_a_quarter_each_side():
    assert stats.iqm([0, 1, 2, 3, 100, -100, 4, 5]) == pytest.approx(2.5)  # 8 runs: 2 dropped each side
    assert stats.iqm([1, 2, 30]) == pytest.approx(11)  # int(3/4) = 0: nothing dropped
    assert stats.iqm(np.array([[1.0, 10.0], [2.0, 20.0]])) == pytest.approx(stats.iqm([1, 2, 10, 20]))  # runs x tasks


@settings(max_examples=60, deadline=None)
@given(st.lists(finite, min_size=2, max_size=25), st.sampled_from(["iqm", "mean"]))
def test_interval_contains_the_point_estimate(x, name):
    agg = getattr(stats, name)
    est = stats.interval_estimate(x, agg, reps=1000)
    slack = 1e-9 * (1 + abs(est.value))
    assert est.low - slack <= est.value <= est.high + slack
    assert min(x) - slack <= est.low and est.high <= max(x) + slack


@pytest.mark.parametrize("agg", [stats.iqm, stats.mean])
def test_intervals_shrink_with_more_runs(agg):
    for seed in range(10):
        rng = np.random.default_rng(seed)
        few, many = rng.normal(0, 1, 8), rng.normal(0, 1, 128)
        w_few, w_many = (np.subtract(*stats.stratified_bootstrap_ci(x, agg, seed=seed)[::-1]) for x in (few, many))
        assert w_many < 0.6 * w_few, (seed, w_few, w_many)  # about 1/4 expected


@pytest.mark.parametrize("agg", [stats.mean, stats.iqm])
def test_intervals_cover_the_true_value_about_95_percent(agg):
    """1000 simulated experiments of 40 normal runs each: the 95% interval holds the true mean (= the true IQM of a
    symmetric distribution) in about 95% of them (percentile intervals run a little short, ~93%). With 1000
    experiments the binomial error is ~0.008, so the band [0.90, 0.98] is ~4 errors wide on either side."""
    rng = np.random.default_rng(12345)
    hits = 0
    for _ in range(1000):
        x = rng.normal(3.0, 2.0, 40)
        low, high = stats.stratified_bootstrap_ci(x, agg, reps=1000, seed=int(rng.integers(2**31)))
        hits += low <= 3.0 <= high
    assert 0.90 <= hits / 1000 <= 0.98, hits / 1000


def test_the_bootstrap_resamples_within_each_task():
    """A 1-run task at 0 beside a 5-run task at 10: any stratified resample keeps both tasks' run counts, so every
    replication equals the point estimate; resampling the pooled runs would not."""
    tasks = [[0.0], [10.0] * 5]
    for agg, value in ((stats.mean, 5.0), (stats.iqm, 10.0)):
        assert agg(tasks) == pytest.approx(value)
        reps = stats.bootstrap_replications(tasks, agg, reps=500)
        assert reps.shape == (500,) and np.allclose(reps, value)


def test_bootstrap_is_seeded_and_reps_is_checked():
    x = np.random.default_rng(0).normal(size=7)
    assert stats.stratified_bootstrap_ci(x) == stats.stratified_bootstrap_ci(x, seed=0)
    assert stats.stratified_bootstrap_ci(x, seed=1) != stats.stratified_bootstrap_ci(x, seed=0)
    assert stats.bootstrap_replications(x).shape == (stats.REPS,) == (2000,)
    looped = stats.stratified_bootstrap_ci(x, lambda t: float(np.median(t[0])), reps=300, vectorized=False)
    assert looped[0] <= np.median(x) <= looped[1]
    with pytest.raises(ValueError, match="reps"):
        stats.stratified_bootstrap_ci(x, reps=0)
    with pytest.raises(ValueError, match="finite"):
        stats.iqm([1.0, float("nan")])
    with pytest.raises(ValueError, match="at least one"):
        stats.iqm([[1.0], []])


def test_probability_of_improvement_identical_and_dominating():
    x = np.random.default_rng(1).normal(size=9)
    same = stats.probability_of_improvement(x, x.copy())
    assert same.value == 0.5 and same.low <= 0.5 <= same.high
    rng = np.random.default_rng(2)
    a, b = rng.normal(size=1000), rng.normal(size=1000)  # same distribution, independent runs
    assert abs(stats.probability_of_improvement(a, b, reps=20).value - 0.5) < 0.05
    better = stats.probability_of_improvement(x + 100, x)
    assert tuple(better) == (1.0, 1.0, 1.0)
    assert tuple(stats.probability_of_improvement(x, x + 100)) == (0.0, 0.0, 0.0)


@settings(max_examples=150, deadline=None)
@given(small_ints, small_ints)
def test_probability_of_improvement_is_antisymmetric_with_ties_half(x, y):
    xy, yx = stats.probability_of_improvement(x, y, reps=200), stats.probability_of_improvement(y, x, reps=200)
    assert xy.value + yx.value == pytest.approx(1.0)
    assert xy.low <= xy.value <= xy.high and 0 <= xy.low and xy.high <= 1
    wins = sum((a > b) + 0.5 * (a == b) for a in x for b in y)  # the Mann-Whitney U statistic
    assert xy.value == pytest.approx(wins / (len(x) * len(y)))


def test_probability_of_improvement_averages_tasks():
    x, y = [[1.0, 2.0], [0.0]], [[0.0, 0.0], [5.0, 6.0]]
    assert stats.probability_of_improvement(x, y).value == pytest.approx(0.5)  # (1 + 0) / 2
    with pytest.raises(ValueError, match="same tasks"):
        stats.probability_of_improvement(x, [[1.0]])


@settings(max_examples=60, deadline=None)
@given(st.lists(st.lists(st.floats(-3, 3), min_size=1, max_size=12), min_size=1, max_size=3))
def test_profile_is_non_increasing_in_tau(tasks):
    taus = np.linspace(-4, 4, 41)
    prof = stats.performance_profile(tasks, taus, reps=300)
    for curve in (prof.fraction, prof.low, prof.high):
        assert np.all(np.diff(curve) <= 1e-12)
    assert prof.fraction[0] == 1 and prof.fraction[-1] == 0
    assert np.all(prof.low <= prof.fraction + 1e-12) and np.all(prof.fraction <= prof.high + 1e-12)
    expected = np.mean([[np.mean(np.asarray(t) > tau) for tau in taus] for t in tasks], axis=0)
    assert np.allclose(prof.fraction, expected)


def test_normalize_and_censor():
    assert stats.normalize(20.0, 20.0, 475.0) == 0 and stats.normalize(475.0, 20.0, 475.0) == 1
    assert np.allclose(stats.normalize([-1000, -200], -1200, -200), [0.2, 1.0])
    with pytest.raises(ValueError, match="distinct"):
        stats.normalize(1.0, 5.0, 5.0)
    steps, censored = stats.censor_at_budget([1000, None, float("nan"), 2500], 3000)
    assert steps.tolist() == [1000, 3000, 3000, 2500] and censored == 2
    steps, censored = stats.censor_at_budget([np.nan, 10], [700, np.nan])  # per-run budgets
    assert steps.tolist() == [700, 10] and censored == 1
    with pytest.raises(ValueError, match="budget"):
        stats.censor_at_budget([None], np.nan)


def _rliable():
    try:  # rliable 1.2 installs but fails to import with pandas 3 (arch's deprecate_kwarg): then skip
        from rliable import library, metrics
    except Exception as exc:  # noqa: BLE001 (ImportError, or the TypeError of a broken arch/pandas pair)
        pytest.skip(f"rliable does not import here ({type(exc).__name__}: {exc})")
    return library, metrics


def test_agrees_with_rliable_where_it_imports():
    library, metrics = _rliable()
    rng = np.random.default_rng(3)
    a, b = rng.gamma(2.0, 50.0, size=(10, 3)), rng.normal(100, 40, size=(10, 3)).round()
    assert stats.iqm(a) == pytest.approx(metrics.aggregate_iqm(a))
    assert stats.mean(a) == pytest.approx(metrics.aggregate_mean(a))
    assert stats.probability_of_improvement(a, b, reps=10).value == pytest.approx(
        metrics.probability_of_improvement(a, b))
    _, ci = library.get_interval_estimates({"a": a}, lambda x: np.array([metrics.aggregate_iqm(x)]), reps=20000)
    low, high = stats.stratified_bootstrap_ci(a, stats.iqm, reps=20000)
    assert abs(low - ci["a"][0, 0]) < 0.05 * (high - low) and abs(high - ci["a"][1, 0]) < 0.05 * (high - low)
    taus = np.linspace(0, 300, 31)
    profiles, _ = library.create_performance_profile({"a": a}, taus, reps=10)
    assert np.allclose(stats.performance_profile(a, taus, reps=10).fraction, profiles["a"])
