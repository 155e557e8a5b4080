"""min_necessary: the smallest top fraction of tokens whose removal changes the model's prediction.

The formula lives in effbench (`effbench.metrics.minimal.min_necessary`); this module only adapts it to `evaluate`.
"""

from effbench.metrics import evaluate_module
from effbench.metrics.minimal import NAIM_ASHER_CITATION, min_necessary

_DESCRIPTION = """The smallest k/m, for k = max(1, ceil(q m)) with q on the grid (distinct ks), such that removing
the top k scorable tokens changes argmax away from y; 1.0 with a flag if none does. Lower is better. See README.md."""

_KWARGS_DESCRIPTION = """
Args:
    num_tokens: per example, m, the number of scorable tokens.
    target: per example, y, the model's prediction on the full input.
    grid_probabilities: per example, the class probabilities with the top k tokens removed, one row per
        distinct k of the grid, ascending (effbench.metrics.minimal.grid_ks(m, grid) lists them).
    grid: the fractions q (default 1, 2, 3, 5, 7, 10, 15, 20, 30, 50, 70, 100 percent).
Returns:
    min_necessary: the mean over examples; per_example: each example's value; flags: each example's flags.
Examples:
    >>> min_necessary = evaluate.load("metrics/min_necessary")
    >>> result = min_necessary.compute(num_tokens=[3], target=[1],
    ...                                grid_probabilities=[[[0.35, 0.65], [0.75, 0.25], [0.8, 0.2]]])
    >>> round(result["min_necessary"], 6)
    0.666667
"""


class MinNecessary(evaluate_module.MinimalConditionModule):
    """evaluate's view of effbench's `min_necessary` metric (evaluate names the module after this class)."""

    RESULT = "min_necessary"
    DESCRIPTION = _DESCRIPTION
    INPUTS = _KWARGS_DESCRIPTION
    CITATION = NAIM_ASHER_CITATION
    REFERENCE_URLS = ["https://arxiv.org/abs/2410.18541"]
    CONDITION = min_necessary
