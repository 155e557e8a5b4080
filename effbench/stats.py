"""Aggregation: the mean with a percentile bootstrap interval, and a paired bootstrap test.

Both drop non-finite values (a metric gives NaN, with a flag, where it is undefined); `n` counts what is left.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

# Resample in blocks so that memory stays bounded for long value lists (the draws are the same either way).
_BLOCK_ELEMENTS = 1 << 22


def _resampled_means(values: np.ndarray, resamples: int, seed: int) -> np.ndarray:
    """Means of `resamples` resamples of `values` with replacement, drawn from numpy's PCG64 with `seed`."""
    rng = np.random.default_rng(seed)
    n = len(values)
    block = max(1, _BLOCK_ELEMENTS // n)
    means = np.empty(resamples)
    for start in range(0, resamples, block):
        stop = min(resamples, start + block)
        means[start:stop] = values[rng.integers(0, n, size=(stop - start, n))].mean(axis=1)
    return means


def _check(resamples: int, confidence: float = 0.95) -> None:
    if not isinstance(resamples, int) or resamples < 1:
        raise ValueError(f"resamples must be a positive integer, got {resamples!r}")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must lie in (0, 1), got {confidence!r}")


def bootstrap_mean(values: Sequence[float], resamples: int = 1000, seed: int = 0, confidence: float = 0.95) -> dict:
    """The mean and its percentile bootstrap interval: {mean, low, high, n}.

    low and high are the (1 - confidence)/2 and (1 + confidence)/2 quantiles (numpy's linear
    interpolation) of the means of `resamples` resamples with replacement. No finite values: NaNs, n = 0.
    """
    _check(resamples, confidence)
    values = np.asarray(values, dtype=np.float64)
    values = values[np.isfinite(values)]
    n = len(values)
    if n == 0:
        return {"mean": float("nan"), "low": float("nan"), "high": float("nan"), "n": 0}
    means = _resampled_means(values, resamples, seed)
    alpha = 1 - confidence
    low, high = np.quantile(means, [alpha / 2, 1 - alpha / 2])
    return {"mean": float(values.mean()), "low": float(low), "high": float(high), "n": n}


def paired_bootstrap_pvalue(a: Sequence[float], b: Sequence[float], resamples: int = 1000, seed: int = 0) -> float:
    """Two-sided p-value of "mean(a - b) = 0" by a paired bootstrap of the differences.

    The differences d are centred to impose the null (d - mean(d)) and resampled;
    p = (1 + #{|mean of resample| >= |mean(d)|}) / (resamples + 1). Pairs where either value
    is non-finite are dropped; with no pair left, p is NaN.
    """
    _check(resamples)
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 1:
        raise ValueError(f"paired values must be two 1-d sequences of the same length, got shapes {a.shape} and {b.shape}")
    differences = (a - b)[np.isfinite(a) & np.isfinite(b)]
    if len(differences) == 0:
        return float("nan")
    observed = abs(differences.mean())
    means = _resampled_means(differences - differences.mean(), resamples, seed)
    # A tolerance, so that float noise in the centring does not count as a difference.
    tolerance = 1e-12 * max(1.0, float(np.abs(differences).max()))
    extreme = np.count_nonzero(np.abs(means) >= observed - tolerance)
    return float((1 + extreme) / (resamples + 1))
