"""Sparsity: how concentrated the attribution mass is, as the Gini index of |s|."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from effbench.metrics.base import Metric, MetricResult, scorable_scores

if TYPE_CHECKING:
    from effbench.metrics.perturbation import PerturbationEngine
    from effbench.types import Attribution, Batch

ALL_ZERO_SCORES = "all_zero_scores"

CHALASANI_CITATION = """@inproceedings{chalasani2020concise,
    title = {Concise Explanations of Neural Networks using Adversarial Training},
    author = {Chalasani, Prasad and Chen, Jiefeng and Chowdhury, Amrita Roy and Wu, Xi and Jha, Somesh},
    booktitle = {Proceedings of the 37th International Conference on Machine Learning},
    series = {Proceedings of Machine Learning Research},
    volume = {119},
    pages = {1383--1391},
    year = {2020},
    publisher = {PMLR},
    url = {https://proceedings.mlr.press/v119/chalasani20a.html},
}"""


def gini(scores: np.ndarray) -> tuple[float, list[str]]:
    """Gini index of |s|: with |s| sorted ascending, G = sum_j (2j - m - 1) |s|_(j) / (m * sum_j |s|_j), j = 1..m.

    All-zero scores give 0 with a flag.
    """
    magnitudes = np.sort(np.abs(np.asarray(scores, dtype=np.float64)))
    total = magnitudes.sum()
    if len(magnitudes) == 0 or total == 0:
        return 0.0, [ALL_ZERO_SCORES]
    m = len(magnitudes)
    weights = 2 * np.arange(1, m + 1) - m - 1
    return float(np.dot(weights, magnitudes) / (m * total)), []


class Sparsity(Metric):
    """Gini index of the absolute scores over the scorable tokens. Higher is sparser."""

    name = "sparsity"
    version = 1
    family = "sparsity"
    direction = "higher"
    range = (0.0, 1.0)
    citation = CHALASANI_CITATION
    defaults = {}

    def compute(self, engine: PerturbationEngine, batch: Batch, attribution: Attribution) -> MetricResult:
        _, scores, flags = scorable_scores(batch, attribution)
        values = np.full(len(batch), np.nan)
        for index, row_flags in enumerate(flags):
            if row_flags:
                continue
            values[index], new_flags = gini(scores[index])
            row_flags.extend(new_flags)
        return MetricResult(values=values, flags=flags)
