"""Localisation: do the scores point at the known evidence? (A task with planted evidence, `batch.evidence_mask`.)

Three metrics, none of which needs a forward pass: per example, over the scorable tokens,
`localisation_auprc` (average precision against the evidence), `pointing_game` (is the top token evidence)
and `relevance_mass` (the share of the positive scores on the evidence). A row without evidence gets NaN
and the flag `no_evidence`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable

import numpy as np

from effbench.metrics.base import CONSTANT_SCORES, Metric, MetricResult, rank_positions, scorable_scores, snap_to_grid
from effbench.metrics.erasure import ERASER_CITATION

if TYPE_CHECKING:
    from effbench.metrics.perturbation import PerturbationEngine
    from effbench.types import Attribution, Batch

NO_EVIDENCE = "no_evidence"  # the example has no evidence token among its scorable tokens
NO_POSITIVE_SCORES = "no_positive_scores"  # relevance_mass: every score is <= 0, no mass to share

ZHANG_CITATION = """@article{zhang2018top,
    title = {Top-Down Neural Attention by Excitation Backprop},
    author = {Zhang, Jianming and Bargal, Sarah Adel and Lin, Zhe and Brandt, Jonathan and Shen, Xiaohui and Sclaroff, Stan},
    journal = {International Journal of Computer Vision},
    volume = {126},
    number = {10},
    pages = {1084--1102},
    year = {2018},
    doi = {10.1007/s11263-017-1059-x},
}"""

ARRAS_CITATION = """@article{arras2022clevr,
    title = {{CLEVR-XAI}: A benchmark dataset for the ground truth evaluation of neural network explanations},
    author = {Arras, Leila and Osman, Ahmed and Samek, Wojciech},
    journal = {Information Fusion},
    volume = {81},
    pages = {14--40},
    year = {2022},
    doi = {10.1016/j.inffus.2021.11.008},
}"""


def _constant(scores: np.ndarray) -> bool:
    return len(scores) > 1 and bool(np.all(scores == scores[0]))


def localisation_auprc(scores: np.ndarray, evidence: np.ndarray) -> tuple[float, list[str]]:
    """Average precision of `scores` against the boolean `evidence` (sklearn's average_precision_score), after
    snapping the scores to the tie grid: tied tokens share one threshold, none ranked above another."""
    from sklearn.metrics import average_precision_score

    scores, evidence = np.asarray(scores, dtype=np.float64), np.asarray(evidence, dtype=bool)
    if not evidence.any():
        return float("nan"), [NO_EVIDENCE]
    value = float(average_precision_score(evidence, snap_to_grid(scores)))
    return value, [CONSTANT_SCORES] if _constant(scores) else []


def pointing_game(scores: np.ndarray, evidence: np.ndarray) -> tuple[float, list[str]]:
    """1 if the top-ranked token is evidence, else 0; ranked as every metric ranks (snapped to the tie grid,
    ties by position, earlier first)."""
    scores, evidence = np.asarray(scores, dtype=np.float64), np.asarray(evidence, dtype=bool)
    if not evidence.any():
        return float("nan"), [NO_EVIDENCE]
    top = rank_positions(np.arange(len(scores)), scores)[0]
    return float(evidence[top]), [CONSTANT_SCORES] if _constant(scores) else []


def relevance_mass(scores: np.ndarray, evidence: np.ndarray) -> tuple[float, list[str]]:
    """The sum of the positive scores on the evidence over the sum of the positive scores; NaN with a flag when
    no score is positive."""
    scores, evidence = np.asarray(scores, dtype=np.float64), np.asarray(evidence, dtype=bool)
    if not evidence.any():
        return float("nan"), [NO_EVIDENCE]
    positive = np.clip(scores, 0.0, None)
    total = positive.sum()
    if total == 0:
        return float("nan"), [NO_POSITIVE_SCORES]
    return float(positive[evidence].sum() / total), [CONSTANT_SCORES] if _constant(scores) else []


class _Localisation(Metric):
    """Scores each example with `score(scores, evidence)` over its scorable tokens."""

    family = "localisation"
    direction = "higher"
    range = (0.0, 1.0)
    defaults = {}
    score: Callable[[np.ndarray, np.ndarray], tuple[float, list[str]]]

    def compute(self, engine: PerturbationEngine, batch: Batch, attribution: Attribution) -> MetricResult:
        positions, scores, flags = scorable_scores(batch, attribution)
        evidence_mask = None if batch.evidence_mask is None else batch.evidence_mask.cpu().numpy().astype(bool)
        values = np.full(len(batch), np.nan)
        for row, row_flags in enumerate(flags):
            if row_flags:
                continue
            evidence = np.zeros(len(positions[row]), dtype=bool) if evidence_mask is None else evidence_mask[row][positions[row]]
            values[row], new_flags = self.score(scores[row], evidence)
            row_flags.extend(new_flags)
        return MetricResult(values=values, flags=flags)


class LocalisationAUPRC(_Localisation):
    """Average precision of the scores against the evidence tokens (ERASER's token-level AUPRC)."""

    name = "localisation_auprc"
    version = 1
    citation = ERASER_CITATION
    score = staticmethod(localisation_auprc)


class PointingGame(_Localisation):
    """1 if the top-scored scorable token is evidence, else 0."""

    name = "pointing_game"
    version = 1
    citation = ZHANG_CITATION
    score = staticmethod(pointing_game)


class RelevanceMass(_Localisation):
    """The share of the positive attribution mass that lies on the evidence tokens."""

    name = "relevance_mass"
    version = 1
    citation = ARRAS_CITATION
    score = staticmethod(relevance_mass)
