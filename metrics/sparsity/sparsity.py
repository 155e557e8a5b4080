"""sparsity: the Gini index of the absolute attribution scores.

The formula lives in effbench (`effbench.metrics.sparsity.gini`); this module only adapts it to `evaluate`.
"""

from effbench.metrics import evaluate_module
from effbench.metrics.sparsity import CHALASANI_CITATION, gini

_DESCRIPTION = """Gini index of |s| over the scorable tokens: with |s| sorted ascending,
G = sum_j (2j - m - 1) |s|_(j) / (m sum_j |s|_j). All-zero scores give 0 and a flag. Higher is sparser. See README.md."""

_KWARGS_DESCRIPTION = """
Args:
    scores: per example, the attribution scores of its scorable tokens.
Returns:
    sparsity: the mean over examples; per_example: each example's value; flags: each example's flags.
Examples:
    >>> sparsity = evaluate.load("metrics/sparsity")
    >>> result = sparsity.compute(scores=[[0.3, 0.4, -0.2, 0.1]])
    >>> round(result["sparsity"], 6)
    0.25
"""


class Sparsity(evaluate_module.MetricModule):
    """evaluate's view of effbench's `sparsity` metric (evaluate names the module after this class)."""

    RESULT = "sparsity"
    DESCRIPTION = _DESCRIPTION
    INPUTS = _KWARGS_DESCRIPTION
    CITATION = CHALASANI_CITATION
    FEATURES = {"scores": evaluate_module.FLOATS}
    REFERENCE_URLS = ["https://proceedings.mlr.press/v119/chalasani20a.html"]

    def score_examples(self, scores):
        return [gini(row) for row in scores]
