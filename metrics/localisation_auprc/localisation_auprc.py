"""localisation_auprc: the average precision of the scores against the evidence tokens.

The formula lives in effbench (`effbench.metrics.localisation.localisation_auprc`); this module only adapts it to `evaluate`.
"""

import datasets
import evaluate
import numpy as np

from effbench.metrics.localisation import ERASER_CITATION, localisation_auprc

_DESCRIPTION = """Average precision of the scores over the scorable tokens against the evidence tokens. Higher is better. Examples without evidence give NaN and the flag
no_evidence; the mean is over the others. See README.md."""

_KWARGS_DESCRIPTION = """
Args:
    scores: per example, the attribution scores of its scorable tokens.
    evidence: per example, 1 for each of those tokens that is evidence, else 0.
Returns:
    localisation_auprc: the mean over the examples with a value; per_example: each example's value (NaN where undefined);
    flags: each example's flags.
Examples:
    >>> localisation_auprc = evaluate.load("metrics/localisation_auprc")
    >>> result = localisation_auprc.compute(scores=[[0.3, 0.5, 0.9]], evidence=[[1, 1, 0]])
    >>> round(result["localisation_auprc"], 6)
    0.583333
"""


class LocalisationAUPRC(evaluate.Metric):
    """evaluate's view of effbench's `localisation_auprc` metric (evaluate names the module after this class)."""

    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=ERASER_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features({"scores": datasets.Sequence(datasets.Value("float64")),
                                         "evidence": datasets.Sequence(datasets.Value("int64"))}),
            reference_urls=["https://aclanthology.org/2020.acl-main.408"],
        )

    def _compute(self, scores, evidence):
        if any(len(row_scores) != len(row_evidence) for row_scores, row_evidence in zip(scores, evidence)):
            raise ValueError("give one evidence value (1 or 0) per score of each example")
        results = [localisation_auprc(row_scores, row_evidence) for row_scores, row_evidence in zip(scores, evidence)]
        values = [value for value, _ in results]
        defined = [value for value in values if not np.isnan(value)]
        mean = float(np.mean(defined)) if defined else float("nan")
        return {"localisation_auprc": mean, "per_example": values, "flags": [flags for _, flags in results]}
