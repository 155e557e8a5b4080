"""soft_comprehensiveness: soft_comprehensiveness (Soft-NC, Zhao & Aletras 2023), from the model's probabilities of y on the full, null and masked inputs.

The formula lives in effbench (`effbench.metrics.soft_erasure.soft_normalised_comprehensiveness`); this module only adapts it to `evaluate`.
"""

import datasets
import evaluate
import numpy as np

from effbench.metrics.soft_erasure import ZHAO_ALETRAS_CITATION, soft_normalised_comprehensiveness

_DESCRIPTION = """Soft normalised comprehensiveness (Zhao & Aletras 2023): keep each element of a token's vector with probability 1 - q_j. Higher is better. See README.md."""

_KWARGS_DESCRIPTION = """
Args:
    full_probability: per example, p(y|x) on the full input, y the model's prediction.
    null_probability: per example, p(y|x0) with every scorable token's vector zeroed.
    perturbed_probabilities: per example, p(y|x') for each sampled mask.
Returns:
    soft_comprehensiveness: the mean over examples; per_example: each example's value (NaN where undefined); flags: each example's flags.
Examples:
    >>> metric = evaluate.load("metrics/soft_comprehensiveness")
    >>> result = metric.compute(full_probability=[0.9], null_probability=[0.4], perturbed_probabilities=[[0.8, 0.6]])
    >>> round(result["soft_comprehensiveness"], 6)
    0.4
"""


class SoftComprehensiveness(evaluate.Metric):
    """evaluate's view of effbench's `soft_comprehensiveness` metric (evaluate names the module after this class)."""

    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=ZHAO_ALETRAS_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(
                {
                    "full_probability": datasets.Value("float64"),
                    "null_probability": datasets.Value("float64"),
                    "perturbed_probabilities": datasets.Sequence(datasets.Value("float64")),
                }
            ),
            reference_urls=["https://aclanthology.org/2023.acl-long.261", "https://github.com/casszhao/SoftFaith"],
        )

    def _compute(self, full_probability, null_probability, perturbed_probabilities):
        if any(len(row) == 0 for row in perturbed_probabilities):
            raise ValueError("each example needs at least one perturbed probability (one per sampled mask)")
        results = [soft_normalised_comprehensiveness(*row) for row in zip(full_probability, null_probability, perturbed_probabilities)]
        values = [value for value, _ in results]
        return {"soft_comprehensiveness": float(np.mean(values)), "per_example": values, "flags": [flags for _, flags in results]}
