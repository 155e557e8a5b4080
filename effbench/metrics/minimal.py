"""Minimal conditions: the smallest top fraction of tokens that is sufficient, or necessary, for the prediction.

These measure claim 4 of Naim & Asher (2024): an explanation that gives minimally sufficient and
necessary conditions for the prediction needs few of its top tokens to keep, or to flip, it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from effbench.metrics.base import MINIMAL_GRID, Metric, MetricResult, rankings, top_k

if TYPE_CHECKING:
    from effbench.metrics.perturbation import Perturbation, PerturbationEngine
    from effbench.types import Attribution, Batch

ONLY_FULL_INPUT = "only_full_input"
NEVER_FLIPS = "never_flips"

NAIM_ASHER_CITATION = """@inproceedings{naim2024explaining,
    title = {On Explaining with Attention Matrices},
    author = {Naim, Omar and Asher, Nicholas},
    booktitle = {Proceedings of the 27th European Conference on Artificial Intelligence (ECAI 2024)},
    year = {2024},
    eprint = {2410.18541},
    archivePrefix = {arXiv},
    url = {https://arxiv.org/abs/2410.18541},
}"""


def grid_ks(num_tokens: int, grid: list[float]) -> list[int]:
    """The distinct k = max(1, ceil(q * m)) for q on the grid, ascending."""
    return sorted({top_k(fraction, num_tokens) for fraction in grid})


def _smallest_fraction(ks: list[int], num_tokens: int, satisfied: np.ndarray) -> float | None:
    """The smallest k/m whose grid point is satisfied, or None if none is."""
    hits = [k for k, ok in zip(ks, satisfied) if ok]
    return min(hits) / num_tokens if hits else None


def _grid_predictions(num_tokens: int, grid: list[float], grid_probabilities: np.ndarray) -> tuple[list[int], np.ndarray]:
    ks = grid_ks(num_tokens, grid)
    grid_probabilities = np.asarray(grid_probabilities, dtype=np.float64)
    if grid_probabilities.ndim != 2 or len(grid_probabilities) != len(ks):
        raise ValueError(
            f"expected class probabilities for each of the {len(ks)} distinct grid points k = {ks} "
            f"(m = {num_tokens}), got an array of shape {grid_probabilities.shape}"
        )
    return ks, grid_probabilities.argmax(axis=-1)


def min_sufficient(num_tokens: int, target: int, grid_probabilities: np.ndarray, grid: list[float]) -> tuple[float, list[str]]:
    """Smallest k/m such that keeping only the top k keeps argmax = y; 1.0 (flagged) if only the full input does.

    `grid_probabilities` [len(grid_ks), C]: class probabilities with only the top k kept, for each k of
    `grid_ks(num_tokens, grid)`. Keeping all m tokens is the full input, which predicts y by definition:
    1.0 whatever that grid point says.
    """
    ks, predicted = _grid_predictions(num_tokens, grid, grid_probabilities)
    fraction = _smallest_fraction(ks, num_tokens, predicted == target)
    return (1.0, [ONLY_FULL_INPUT]) if fraction is None or fraction == 1.0 else (fraction, [])


def min_necessary(num_tokens: int, target: int, grid_probabilities: np.ndarray, grid: list[float]) -> tuple[float, list[str]]:
    """Smallest k/m such that removing the top k changes argmax away from y; 1.0 with a flag if none does.

    `grid_probabilities` [len(grid_ks), C]: class probabilities with the top k removed, for each k of
    `grid_ks(num_tokens, grid)`.
    """
    ks, predicted = _grid_predictions(num_tokens, grid, grid_probabilities)
    fraction = _smallest_fraction(ks, num_tokens, predicted != target)
    return (1.0, [NEVER_FLIPS]) if fraction is None else (fraction, [])


class _MinimalFraction(Metric):
    family = "minimal"
    citation = NAIM_ASHER_CITATION
    direction = "lower"
    range = (0.0, 1.0)
    defaults = {"mode": "remove", "grid": MINIMAL_GRID}

    def validate(self) -> None:
        self._check_mode()
        self._check_fractions("grid")

    def positions_to_perturb(self, ranked: np.ndarray, k: int) -> frozenset[int]:
        raise NotImplementedError

    def fraction(self, num_tokens: int, target: int, grid_probabilities: np.ndarray) -> tuple[float, list[str]]:
        raise NotImplementedError

    def compute(self, engine: PerturbationEngine, batch: Batch, attribution: Attribution) -> MetricResult:
        ranked_rows, flags = rankings(batch, attribution)
        grid = self.params["grid"]
        perturbations: list[Perturbation] = []
        scored = [index for index, ranked in enumerate(ranked_rows) if ranked is not None]
        for index in scored:
            ranked = ranked_rows[index]
            perturbations.extend((index, self.positions_to_perturb(ranked, k)) for k in grid_ks(len(ranked), grid))
        probabilities = engine.probabilities(batch, perturbations, self.params["mode"])
        targets = batch.targets.cpu().numpy()
        values = np.full(len(batch), np.nan)
        start = 0
        for index in scored:
            num_tokens = len(ranked_rows[index])
            stop = start + len(grid_ks(num_tokens, grid))
            values[index], new_flags = self.fraction(num_tokens, int(targets[index]), probabilities[start:stop])
            flags[index].extend(new_flags)
            start = stop
        return MetricResult(values=values, flags=flags)


class MinSufficient(_MinimalFraction):
    """Smallest fraction k/m on the grid whose top k tokens alone keep the prediction. Lower is better."""

    name = "min_sufficient"
    version = 2  # 2: constant scores are flagged; scores snapped to the tie grid before ranking

    def positions_to_perturb(self, ranked: np.ndarray, k: int) -> frozenset[int]:
        return frozenset(ranked[k:].tolist())

    def fraction(self, num_tokens: int, target: int, grid_probabilities: np.ndarray) -> tuple[float, list[str]]:
        return min_sufficient(num_tokens, target, grid_probabilities, self.params["grid"])


class MinNecessary(_MinimalFraction):
    """Smallest fraction k/m on the grid whose removal changes the prediction. Lower is better."""

    name = "min_necessary"
    version = 2  # 2: constant scores are flagged; scores snapped to the tie grid before ranking

    def positions_to_perturb(self, ranked: np.ndarray, k: int) -> frozenset[int]:
        return frozenset(ranked[:k].tolist())

    def fraction(self, num_tokens: int, target: int, grid_probabilities: np.ndarray) -> tuple[float, list[str]]:
        return min_necessary(num_tokens, target, grid_probabilities, self.params["grid"])
