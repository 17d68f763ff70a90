"""RunningMeanStd: exact merging from count 0 (the ES default) and SB3's prior count (PPO's VecNormalize)."""

import numpy as np
import pytest

from evograd import ParameterError
from evograd.core.running_stats import RunningMeanStd


def test_count_zero_merges_exactly_and_a_prior_count_is_sb3s_epsilon():
    rng = np.random.default_rng(0)
    batches = [rng.normal(3.0, 2.0, size=(n, 2)) for n in (1, 5, 17)]
    exact = RunningMeanStd(2)
    for b in batches:
        exact.update(b)
    whole = np.concatenate(batches)
    assert exact.count == len(whole)
    np.testing.assert_allclose(exact.mean, whole.mean(0), rtol=1e-12)
    np.testing.assert_allclose(exact.var, whole.var(0), rtol=1e-12)
    # count=1e-4: SB3's RunningMeanStd(epsilon=1e-4), i.e. a pseudo-observation of weight 1e-4 with mean 0, var 1
    prior = RunningMeanStd(2, count=1e-4)
    for b in batches:
        prior.update(b)
    n, eps = len(whole), 1e-4
    mean = whole.sum(0) / (n + eps)
    var = (eps * 1.0 + ((whole - mean) ** 2).sum(0) + eps * mean**2) / (n + eps)
    assert prior.count == pytest.approx(n + eps, rel=1e-15)
    np.testing.assert_allclose(prior.mean, mean, rtol=1e-12)
    np.testing.assert_allclose(prior.var, var, rtol=1e-12)
    assert RunningMeanStd.from_state_dict(prior.state_dict()).count == prior.count
    with pytest.raises(ParameterError, match="'count' parameter of RunningMeanStd"):
        RunningMeanStd(2, count=-1.0)
