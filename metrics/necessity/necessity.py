"""necessity: ERASER comprehensiveness as AOPC, from the model's probabilities of y on the perturbed inputs.

The formula lives in effbench (`effbench.metrics.erasure.aopc`); this module only adapts it to `evaluate`.
"""

import datasets
import evaluate
import numpy as np

from effbench.metrics.base import ERASER_BINS
from effbench.metrics.erasure import ERASER_CITATION, aopc

_DESCRIPTION = """ERASER comprehensiveness (AOPC): the mean over the bins q of p(y|x) - p(y| x without its top-k(q) tokens),
k = max(1, ceil(q m)) over the m scorable tokens, ranked by attribution score. Higher is better. See README.md."""

_KWARGS_DESCRIPTION = """
Args:
    full_probability: per example, p(y|x) on the full input, y the model's prediction.
    perturbed_probabilities: per example, p(y| x without its top-k(q) tokens), one per bin q, in the order of `bins`.
    bins: the fractions q (default ERASER's 0.01, 0.05, 0.10, 0.20, 0.50); only their count is checked here.
Returns:
    necessity: the mean over examples; per_example: each example's value.
Examples:
    >>> necessity = evaluate.load("metrics/necessity")
    >>> result = necessity.compute(full_probability=[0.95], perturbed_probabilities=[[0.55, 0.55, 0.55, 0.55, 0.45]])
    >>> round(result["necessity"], 6)
    0.42
"""


class Necessity(evaluate.Metric):
    """evaluate's view of effbench's `necessity` metric (evaluate names the module after this class)."""

    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=ERASER_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(
                {
                    "full_probability": datasets.Value("float64"),
                    "perturbed_probabilities": datasets.Sequence(datasets.Value("float64")),
                }
            ),
            reference_urls=["https://aclanthology.org/2020.acl-main.408"],
        )

    def _compute(self, full_probability, perturbed_probabilities, bins=ERASER_BINS):
        if any(len(row) != len(bins) for row in perturbed_probabilities):
            raise ValueError(f"each example needs one perturbed probability per bin ({len(bins)} bins: {list(bins)})")
        values = aopc(np.asarray(full_probability), np.asarray(perturbed_probabilities))
        return {"necessity": float(np.mean(values)), "per_example": [float(v) for v in values]}
