"""model_randomisation: Spearman's rho between the scores on the trained and on the randomised model.

The formula lives in effbench (`effbench.metrics.randomisation.spearman`); this module only adapts it to `evaluate`.
"""

import numpy as np

from effbench.metrics import evaluate_module
from effbench.metrics.randomisation import ADEBAYO_CITATION, spearman

_DESCRIPTION = """Spearman's rho between an explainer's scores of the scorable tokens on the trained model and on a
copy with re-initialised head and top layers (NaN with a flag where undefined). Lower is better. See README.md."""

_KWARGS_DESCRIPTION = """
Args:
    scores: per example, the scores of its scorable tokens on the trained model, in position order.
    randomised_scores: per example, the same explainer's scores on the randomised model, in the same order.
Returns:
    model_randomisation: the mean over examples; per_example: each example's value; flags: each example's flags.
Examples:
    >>> metric = evaluate.load("metrics/model_randomisation")
    >>> result = metric.compute(scores=[[0.1, 0.3, 0.5]], randomised_scores=[[0.5, 0.3, 0.1]])
    >>> round(result["model_randomisation"], 6)
    -1.0
"""


class ModelRandomisation(evaluate_module.MetricModule):
    """evaluate's view of effbench's `model_randomisation` metric (evaluate names the module after this class)."""

    RESULT = "model_randomisation"
    DESCRIPTION = _DESCRIPTION
    INPUTS = _KWARGS_DESCRIPTION
    CITATION = ADEBAYO_CITATION
    FEATURES = {"scores": evaluate_module.FLOATS, "randomised_scores": evaluate_module.FLOATS}
    REFERENCE_URLS = ["https://arxiv.org/abs/1810.03292"]

    def score_examples(self, scores, randomised_scores):
        if any(len(first) != len(second) for first, second in zip(scores, randomised_scores)):
            raise ValueError("each example needs as many randomised scores as scores")
        return [spearman(np.asarray(first), np.asarray(second)) for first, second in zip(scores, randomised_scores)]
