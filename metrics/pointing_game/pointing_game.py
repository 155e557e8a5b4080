"""pointing_game: 1 if the top-scored token is evidence, else 0.

The formula lives in effbench (`effbench.metrics.localisation.pointing_game`); this module only adapts it to `evaluate`.
"""

import datasets
import evaluate
import numpy as np

from effbench.metrics.localisation import ZHANG_CITATION, pointing_game

_DESCRIPTION = """1 if the top-scored scorable token is evidence, else 0. Higher is better. Examples without evidence give NaN and the flag
no_evidence; the mean is over the others. See README.md."""

_KWARGS_DESCRIPTION = """
Args:
    scores: per example, the attribution scores of its scorable tokens.
    evidence: per example, 1 for each of those tokens that is evidence, else 0.
Returns:
    pointing_game: the mean over the examples with a value; per_example: each example's value (NaN where undefined);
    flags: each example's flags.
Examples:
    >>> pointing_game = evaluate.load("metrics/pointing_game")
    >>> result = pointing_game.compute(scores=[[0.1, 0.7, 0.2]], evidence=[[0, 1, 0]])
    >>> result["pointing_game"]
    1.0
"""


class PointingGame(evaluate.Metric):
    """evaluate's view of effbench's `pointing_game` metric (evaluate names the module after this class)."""

    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=ZHANG_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features({"scores": datasets.Sequence(datasets.Value("float64")),
                                         "evidence": datasets.Sequence(datasets.Value("int64"))}),
            reference_urls=["https://doi.org/10.1007/s11263-017-1059-x"],
        )

    def _compute(self, scores, evidence):
        if any(len(row_scores) != len(row_evidence) for row_scores, row_evidence in zip(scores, evidence)):
            raise ValueError("give one evidence value (1 or 0) per score of each example")
        results = [pointing_game(row_scores, row_evidence) for row_scores, row_evidence in zip(scores, evidence)]
        values = [value for value, _ in results]
        defined = [value for value in values if not np.isnan(value)]
        mean = float(np.mean(defined)) if defined else float("nan")
        return {"pointing_game": mean, "per_example": values, "flags": [flags for _, flags in results]}
