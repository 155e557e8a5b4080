import numpy as np
import pytest

from effbench.stats import bootstrap_mean, paired_bootstrap_pvalue


def test_bootstrap_interval_contains_the_mean_and_is_reproducible():
    values = np.random.default_rng(1).normal(0.3, 0.2, size=200)
    result = bootstrap_mean(values)
    assert result["n"] == 200
    assert result["mean"] == pytest.approx(values.mean())
    assert result["low"] < result["mean"] < result["high"]
    assert bootstrap_mean(values) == result
    assert bootstrap_mean(values, seed=1) != result


def test_bootstrap_interval_matches_the_standard_error():
    """For a mean, the 95% percentile interval is about mean +- 1.96 standard errors."""
    values = np.random.default_rng(2).normal(0.0, 1.0, size=400)
    result = bootstrap_mean(values, resamples=4000)
    half_width = (result["high"] - result["low"]) / 2
    standard_error = values.std() / np.sqrt(len(values))
    assert half_width == pytest.approx(1.96 * standard_error, rel=0.1)


def test_bootstrap_interval_narrows_with_n_and_with_lower_confidence():
    rng = np.random.default_rng(3)
    small = bootstrap_mean(rng.normal(size=20))
    large = bootstrap_mean(rng.normal(size=2000))
    assert large["high"] - large["low"] < (small["high"] - small["low"]) / 4
    values = rng.normal(size=100)
    wide, narrow = bootstrap_mean(values, confidence=0.99), bootstrap_mean(values, confidence=0.5)
    assert narrow["high"] - narrow["low"] < wide["high"] - wide["low"]


def test_bootstrap_drops_non_finite_values_and_handles_degenerate_input():
    result = bootstrap_mean([1.0, np.nan, 3.0])
    assert result["n"] == 2 and result["mean"] == 2.0
    assert 1.0 <= result["low"] <= result["high"] <= 3.0
    empty = bootstrap_mean([np.nan])
    assert empty["n"] == 0 and np.isnan(empty["mean"])
    constant = bootstrap_mean([0.5] * 10)
    assert constant["low"] == constant["mean"] == constant["high"] == 0.5


def test_paired_pvalue_small_for_clearly_different_pairs_and_large_for_identical_ones():
    rng = np.random.default_rng(4)
    a = rng.normal(0.5, 0.1, size=100)
    b = a - 0.2 + rng.normal(0, 0.05, size=100)
    assert paired_bootstrap_pvalue(a, b) == pytest.approx(1 / 1001)  # no resample as extreme: the smallest p
    assert paired_bootstrap_pvalue(a, a) == 1.0
    noise = rng.normal(0, 0.1, size=100)
    close = a + noise - noise.mean() + 0.001  # a mean difference of 0.001 against a spread of 0.1
    assert paired_bootstrap_pvalue(a, close) > 0.5
    assert paired_bootstrap_pvalue(a, close) == paired_bootstrap_pvalue(a, close)  # seeded
    assert paired_bootstrap_pvalue(a, close, seed=1) != paired_bootstrap_pvalue(a, close)
    assert paired_bootstrap_pvalue(a, b) == paired_bootstrap_pvalue(b, a)  # two-sided


def test_paired_pvalue_uses_the_pairing():
    """Differences that are small but consistent are significant, though the two samples overlap widely."""
    rng = np.random.default_rng(5)
    a = rng.normal(0, 1, size=50)
    b = a + 0.05 + rng.normal(0, 0.01, size=50)
    assert paired_bootstrap_pvalue(a, b) < 0.01


def test_bad_inputs_are_refused():
    with pytest.raises(ValueError, match="same length"):
        paired_bootstrap_pvalue([1.0, 2.0], [1.0])
    with pytest.raises(ValueError, match="resamples"):
        bootstrap_mean([1.0], resamples=0)
    with pytest.raises(ValueError, match="confidence"):
        bootstrap_mean([1.0], confidence=1.5)
