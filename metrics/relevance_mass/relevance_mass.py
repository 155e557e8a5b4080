"""relevance_mass: the share of the positive scores that lies on the evidence tokens.

The formula lives in effbench (`effbench.metrics.localisation.relevance_mass`); this module only adapts it to `evaluate`.
"""

import datasets
import evaluate
import numpy as np

from effbench.metrics.localisation import ARRAS_CITATION, relevance_mass

_DESCRIPTION = """Sum of the positive scores on the evidence over the sum of the positive scores. Higher is better. Examples without evidence give NaN and the flag
no_evidence; the mean is over the others. See README.md."""

_KWARGS_DESCRIPTION = """
Args:
    scores: per example, the attribution scores of its scorable tokens.
    evidence: per example, 1 for each of those tokens that is evidence, else 0.
Returns:
    relevance_mass: the mean over the examples with a value; per_example: each example's value (NaN where undefined);
    flags: each example's flags.
Examples:
    >>> relevance_mass = evaluate.load("metrics/relevance_mass")
    >>> result = relevance_mass.compute(scores=[[0.5, -1.0, 0.5, 1.0]], evidence=[[0, 0, 1, 1]])
    >>> result["relevance_mass"]
    0.75
"""


class RelevanceMass(evaluate.Metric):
    """evaluate's view of effbench's `relevance_mass` metric (evaluate names the module after this class)."""

    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=ARRAS_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features({"scores": datasets.Sequence(datasets.Value("float64")),
                                         "evidence": datasets.Sequence(datasets.Value("int64"))}),
            reference_urls=["https://doi.org/10.1016/j.inffus.2021.11.008"],
        )

    def _compute(self, scores, evidence):
        if any(len(row_scores) != len(row_evidence) for row_scores, row_evidence in zip(scores, evidence)):
            raise ValueError("give one evidence value (1 or 0) per score of each example")
        results = [relevance_mass(row_scores, row_evidence) for row_scores, row_evidence in zip(scores, evidence)]
        values = [value for value, _ in results]
        defined = [value for value in values if not np.isnan(value)]
        mean = float(np.mean(defined)) if defined else float("nan")
        return {"relevance_mass": mean, "per_example": values, "flags": [flags for _, flags in results]}
