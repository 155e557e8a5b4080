"""What the evaluate modules of the metrics/<name>/ folders share.

Each folder's script subclasses one of these with its texts (what evaluate shows) and, where the inputs are its
own, its features and `score_examples`; the formulas stay in effbench. A script imports this module, not its
classes: evaluate takes the first `evaluate.Metric` subclass in a script's namespace as the script's metric.
"""

from __future__ import annotations

from typing import Any, ClassVar

import datasets
import evaluate
import numpy as np

from effbench.metrics.base import ERASER_BINS, MINIMAL_GRID
from effbench.metrics.erasure import aopc

FLOATS = datasets.Sequence(datasets.Value("float64"))


class MetricModule(evaluate.Metric):
    """evaluate's view of one of effbench's metrics.

    A subclass sets RESULT (the metric's name: the key of the mean in the result), DESCRIPTION, INPUTS (the
    arguments, what is returned, a doctest), CITATION, FEATURES (input name -> datasets feature) and
    REFERENCE_URLS, and implements `score_examples(**inputs)`: per example (value, flags). The result holds the
    mean over the examples (over those with a value where MEAN_OVER_DEFINED), `per_example` and `flags`.
    """

    RESULT: ClassVar[str]
    DESCRIPTION: ClassVar[str]
    INPUTS: ClassVar[str]
    CITATION: ClassVar[str]
    FEATURES: ClassVar[dict[str, Any]]
    REFERENCE_URLS: ClassVar[list[str]]
    MEAN_OVER_DEFINED: ClassVar[bool] = False

    def _info(self):
        return evaluate.MetricInfo(description=self.DESCRIPTION, citation=self.CITATION,
                                   inputs_description=self.INPUTS, features=datasets.Features(self.FEATURES),
                                   reference_urls=list(self.REFERENCE_URLS))

    def score_examples(self, **inputs) -> list[tuple[float, list[str]]]:
        raise NotImplementedError

    def _compute(self, **inputs):
        results = self.score_examples(**inputs)
        values = [float(value) for value, _ in results]
        averaged = [value for value in values if not np.isnan(value)] if self.MEAN_OVER_DEFINED else values
        mean = float(np.mean(averaged)) if averaged else float("nan")
        return {self.RESULT: mean, "per_example": values, "flags": [list(flags) for _, flags in results]}


class AopcModule(MetricModule):
    """ERASER's AOPC (necessity, sufficiency) from p(y|x) and p(y|perturbed x) per bin."""

    FEATURES = {"full_probability": datasets.Value("float64"), "perturbed_probabilities": FLOATS}

    def score_examples(self, full_probability, perturbed_probabilities, bins=ERASER_BINS):
        if any(len(row) != len(bins) for row in perturbed_probabilities):
            raise ValueError(f"each example needs one perturbed probability per bin ({len(bins)} bins: {list(bins)})")
        return [(value, []) for value in aopc(np.asarray(full_probability), np.asarray(perturbed_probabilities))]


class MinimalConditionModule(MetricModule):
    """The smallest share of the top-ranked tokens whose removal or keeping changes the prediction
    (min_necessary, min_sufficient): CONDITION(num_tokens, target, grid_probabilities, grid) -> (value, flags)."""

    CONDITION: ClassVar[Any]
    FEATURES = {"num_tokens": datasets.Value("int64"), "target": datasets.Value("int64"),
                "grid_probabilities": datasets.Sequence(FLOATS)}

    def score_examples(self, num_tokens, target, grid_probabilities, grid=MINIMAL_GRID):
        condition = type(self).CONDITION
        return [condition(*row, list(grid)) for row in zip(num_tokens, target, grid_probabilities)]


class SoftErasureModule(MetricModule):
    """Zhao & Aletras's soft normalised erasure metrics: NORMALISED(full, null, perturbed) -> (value, flags)."""

    NORMALISED: ClassVar[Any]
    FEATURES = {"full_probability": datasets.Value("float64"), "null_probability": datasets.Value("float64"),
                "perturbed_probabilities": FLOATS}

    def score_examples(self, full_probability, null_probability, perturbed_probabilities):
        if any(len(row) == 0 for row in perturbed_probabilities):
            raise ValueError("each example needs at least one perturbed probability (one per sampled mask)")
        normalised = type(self).NORMALISED
        return [normalised(*row) for row in zip(full_probability, null_probability, perturbed_probabilities)]


class LocalisationModule(MetricModule):
    """Scores against known evidence tokens: LOCALISE(scores, evidence) -> (value, flags); NaN without evidence."""

    LOCALISE: ClassVar[Any]
    FEATURES = {"scores": FLOATS, "evidence": datasets.Sequence(datasets.Value("int64"))}
    MEAN_OVER_DEFINED = True

    def score_examples(self, scores, evidence):
        if any(len(row_scores) != len(row_evidence) for row_scores, row_evidence in zip(scores, evidence)):
            raise ValueError("give one evidence value (1 or 0) per score of each example")
        localise = type(self).LOCALISE
        return [localise(row_scores, row_evidence) for row_scores, row_evidence in zip(scores, evidence)]
