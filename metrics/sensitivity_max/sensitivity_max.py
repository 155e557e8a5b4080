"""sensitivity_max: Yeh et al.'s max-sensitivity, from an example's explanation and those of its perturbations.

The formula lives in effbench (`effbench.metrics.robustness.sensitivity`); this module only adapts it to `evaluate`.
"""

import datasets

from effbench.metrics import evaluate_module
from effbench.metrics.robustness import YEH_CITATION, sensitivity

_DESCRIPTION = """The largest relative change ||phi(x + delta) - phi(x)|| / ||phi(x)|| of the scores over the sampled
perturbations delta (a zero explanation's norm taken as 1). Lower is better. See README.md."""

_KWARGS_DESCRIPTION = """
Args:
    scores: per example, the scores of its scorable tokens on the unperturbed input.
    perturbed_scores: per example, the scores on each perturbed input (a list of lists of the same length).
Returns:
    sensitivity_max: the mean over examples; per_example: each example's value; flags: each example's flags (none, here).
Examples:
    >>> metric = evaluate.load("metrics/sensitivity_max")
    >>> result = metric.compute(scores=[[3.0, 4.0]], perturbed_scores=[[[3.0, 4.0], [3.0, 5.0], [0.0, 0.0]]])
    >>> round(result["sensitivity_max"], 6)
    1.0
"""


class SensitivityMax(evaluate_module.MetricModule):
    """evaluate's view of effbench's `sensitivity_max` metric (evaluate names the module after this class)."""

    RESULT = "sensitivity_max"
    DESCRIPTION = _DESCRIPTION
    INPUTS = _KWARGS_DESCRIPTION
    CITATION = YEH_CITATION
    FEATURES = {"scores": evaluate_module.FLOATS, "perturbed_scores": datasets.Sequence(evaluate_module.FLOATS)}
    REFERENCE_URLS = ["https://arxiv.org/abs/1901.09392"]

    def score_examples(self, scores, perturbed_scores):
        if any(not rows or any(len(row) != len(base) for row in rows) for base, rows in zip(scores, perturbed_scores)):
            raise ValueError("each example needs at least one perturbed explanation, each as long as its scores")
        return [(max(sensitivity(base, row) for row in rows), []) for base, rows in zip(scores, perturbed_scores)]
