"""Timing for the benchmarks: interleaved rounds, best of each, so that other load disturbs least."""

from __future__ import annotations

import time

ROUNDS = 7


def best_time(function, rounds: int) -> float:
    """The fastest of `rounds` runs, in seconds: the least disturbed by other load."""
    best = float("inf")
    for _ in range(rounds):
        start = time.perf_counter()
        function()
        best = min(best, time.perf_counter() - start)
    return best

