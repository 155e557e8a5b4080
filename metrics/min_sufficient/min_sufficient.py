"""min_sufficient: the smallest top fraction of tokens that alone keeps the model's prediction.

The formula lives in effbench (`effbench.metrics.minimal.min_sufficient`); this module only adapts it to `evaluate`.
"""

import datasets
import evaluate
import numpy as np

from effbench.metrics.base import MINIMAL_GRID
from effbench.metrics.minimal import NAIM_ASHER_CITATION, min_sufficient

_DESCRIPTION = """The smallest k/m, for k = max(1, ceil(q m)) with q on the grid (distinct ks), such that keeping only
the top k scorable tokens keeps argmax = y; 1.0 (flagged) if only the full input does. Lower is better. See README.md."""

_KWARGS_DESCRIPTION = """
Args:
    num_tokens: per example, m, the number of scorable tokens.
    target: per example, y, the model's prediction on the full input.
    grid_probabilities: per example, the class probabilities with only the top k tokens kept, one row per
        distinct k of the grid, ascending (effbench.metrics.minimal.grid_ks(m, grid) lists them).
    grid: the fractions q (default 1, 2, 3, 5, 7, 10, 15, 20, 30, 50, 70, 100 percent).
Returns:
    min_sufficient: the mean over examples; per_example: each example's value; flags: each example's flags.
Examples:
    >>> min_sufficient = evaluate.load("metrics/min_sufficient")
    >>> result = min_sufficient.compute(num_tokens=[3], target=[1],
    ...                                 grid_probabilities=[[[0.7, 0.3], [0.3, 0.7], [0.25, 0.75]]])
    >>> round(result["min_sufficient"], 6)
    0.666667
"""


class MinSufficient(evaluate.Metric):
    """evaluate's view of effbench's `min_sufficient` metric (evaluate names the module after this class)."""

    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=NAIM_ASHER_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(
                {
                    "num_tokens": datasets.Value("int64"),
                    "target": datasets.Value("int64"),
                    "grid_probabilities": datasets.Sequence(datasets.Sequence(datasets.Value("float64"))),
                }
            ),
            reference_urls=["https://arxiv.org/abs/2410.18541"],
        )

    def _compute(self, num_tokens, target, grid_probabilities, grid=MINIMAL_GRID):
        results = [min_sufficient(*row, list(grid)) for row in zip(num_tokens, target, grid_probabilities)]
        values = [value for value, _ in results]
        return {"min_sufficient": float(np.mean(values)), "per_example": values, "flags": [flags for _, flags in results]}
