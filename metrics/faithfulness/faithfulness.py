"""faithfulness: Kendall tau-b between attribution scores and leave-one-out effects.

The formula lives in effbench (`effbench.metrics.faithfulness.loo_kendall_tau`); this module only adapts it to `evaluate`.
"""

import datasets

from effbench.metrics import evaluate_module
from effbench.metrics.faithfulness import JAIN_WALLACE_CITATION, loo_kendall_tau

_DESCRIPTION = """Kendall tau-b between the scores s_j of the scorable tokens and their leave-one-out effects
D_j = p(y|x) - p(y| x without token j). Constant scores (or effects, or fewer than 2 tokens) give 0 and a flag.
Higher is better. See README.md."""

_KWARGS_DESCRIPTION = """
Args:
    scores: per example, the attribution scores of its scorable tokens, in position order.
    full_probability: per example, p(y|x) on the full input, y the model's prediction.
    leave_one_out_probabilities: per example, p(y| x without token j) for each scorable token j, in position order.
Returns:
    faithfulness: the mean over examples; per_example: each example's value; flags: each example's flags.
Examples:
    >>> faithfulness = evaluate.load("metrics/faithfulness")
    >>> result = faithfulness.compute(scores=[[0.3, 0.4, -0.2, 0.1]], full_probability=[0.95],
    ...                               leave_one_out_probabilities=[[0.85, 0.55, 0.90, 0.75]])
    >>> round(result["faithfulness"], 6)
    0.666667
"""


class Faithfulness(evaluate_module.MetricModule):
    """evaluate's view of effbench's `faithfulness` metric (evaluate names the module after this class)."""

    RESULT = "faithfulness"
    DESCRIPTION = _DESCRIPTION
    INPUTS = _KWARGS_DESCRIPTION
    CITATION = JAIN_WALLACE_CITATION
    FEATURES = {"scores": evaluate_module.FLOATS, "full_probability": datasets.Value("float64"),
                "leave_one_out_probabilities": evaluate_module.FLOATS}
    REFERENCE_URLS = ["https://aclanthology.org/N19-1357"]

    def score_examples(self, scores, full_probability, leave_one_out_probabilities):
        return [loo_kendall_tau(*row) for row in zip(scores, full_probability, leave_one_out_probabilities)]
