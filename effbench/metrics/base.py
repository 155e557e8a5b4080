"""The metric interface and the conventions every metric shares: scorable tokens, ranking, top-k.

A metric scores one attribution per example: `compute(engine, batch, attribution) -> MetricResult`; an
`ExplainerMetric` also receives the explainer, to run it again (sensitivity, model randomisation).
Everything here is numpy only; the forward passes live in `effbench.metrics.perturbation`.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import TYPE_CHECKING, ClassVar

import numpy as np

from effbench.components import Component
from effbench.errors import EffbenchError

if TYPE_CHECKING:
    from effbench.metrics.perturbation import PerturbationEngine
    from effbench.types import Attribution, Batch

PERTURBATION_MODES = ("remove", "mask")
ERASER_BINS = [0.01, 0.05, 0.10, 0.20, 0.50]
MINIMAL_GRID = [0.01, 0.02, 0.03, 0.05, 0.07, 0.10, 0.15, 0.20, 0.30, 0.50, 0.70, 1.00]

# Flags a metric can attach to an example (a value of NaN always comes with one of the first two).
NO_SCORABLE_TOKENS = "no_scorable_tokens"
NON_FINITE_SCORES = "non_finite_scores"
# all scorable tokens scored alike: a ranking exists (by position), but it says nothing of the explainer
CONSTANT_SCORES = "constant_scores"


@dataclass(frozen=True)
class MetricResult:
    """One value per example ([B] float64, NaN where undefined) and the flags raised on each example.

    `details`, where a metric gives them, hold what the value summarises per example (e.g. the
    per-bin differences behind an AOPC), for reports that draw curves.
    """

    values: np.ndarray
    flags: list[list[str]]
    details: list[dict] | None = None


class Metric(Component):
    """Base class for metrics.

    A subclass sets `name`, `version`, `citation`, `defaults` (see Component), `family`, `direction`
    and `range`, and implements `compute`.
    """

    kind = "metric"
    family: ClassVar[str]
    direction: ClassVar[str]  # "higher" or "lower": which is better
    range: ClassVar[tuple[float, float]]

    def compute(self, engine: PerturbationEngine, batch: Batch, attribution: Attribution) -> MetricResult:
        raise NotImplementedError

    # ---- parameter checks shared by subclasses -------------------------------------------------

    def _check_integer(self, param: str, low: int) -> None:
        value = self.params[param]
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise EffbenchError(f"metric {self.name!r}: {param} must be an integer >= {low}, got {value!r}")

    def _check_positive_number(self, param: str) -> None:
        value = self.params[param]
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < float("inf"):
            raise EffbenchError(f"metric {self.name!r}: {param} must be a positive number, got {value!r}")

    def _check_mode(self) -> None:
        if self.params["mode"] not in PERTURBATION_MODES:
            raise EffbenchError(
                f"metric {self.name!r}: mode must be one of {', '.join(PERTURBATION_MODES)}, got {self.params['mode']!r}"
            )

    def _check_fractions(self, param: str) -> None:
        """A non-empty list of distinct fractions in (0, 1], stored as a list of floats (as recorded in JSON)."""
        value = self.params[param]
        message = f"metric {self.name!r}: {param} must be a non-empty list of distinct fractions in (0, 1], got {value!r}"
        if isinstance(value, (str, bytes)) or not isinstance(value, Sequence) or not value:
            raise EffbenchError(message)
        if not all(isinstance(q, (int, float)) and not isinstance(q, bool) and 0 < q <= 1 for q in value):
            raise EffbenchError(message)
        if len(set(value)) != len(value):
            raise EffbenchError(message)
        self.params[param] = [float(q) for q in value]


class ExplainerMetric(Metric):
    """A metric that runs the explainer again (on perturbed inputs, on another model):
    `compute(engine, batch, attribution, explainer)`, the model being `engine.model`. The runner passes
    the run's explainer object; records show these metrics like any other. An explainer the metric cannot
    rerun faithfully gets NaN and a flag on every example, not a number."""

    def compute(self, engine: PerturbationEngine, batch: Batch, attribution: Attribution, explainer=None) -> MetricResult:
        raise NotImplementedError


@functools.lru_cache(maxsize=4096)  # exact arithmetic is slow, and the same few (q, m) pairs recur
def top_k(fraction: float, num_tokens: int) -> int:
    """k = max(1, ceil(q * m)), with q * m computed exactly on q's decimal value.

    In floating point 0.07 * 100 = 7.000000000000001, whose ceiling would be 8.
    """
    return max(1, math.ceil(Fraction(str(fraction)) * num_tokens))


def scorable_scores(batch: Batch, attribution: Attribution) -> tuple[list[np.ndarray], list[np.ndarray], list[list[str]]]:
    """Per example: the scorable positions (ascending), their scores (float64), and the flags raised.

    An example with no scorable tokens or with a non-finite score is flagged; its metric value is NaN.
    """
    if tuple(attribution.scores.shape) != tuple(batch.input_ids.shape):
        raise EffbenchError(
            f"the attribution of explainer {attribution.explainer!r} has shape {tuple(attribution.scores.shape)}, "
            f"but the batch's input ids have shape {tuple(batch.input_ids.shape)}"
        )
    scores = attribution.scores.detach().cpu().double().numpy()
    scorable = batch.scorable_mask.cpu().numpy().astype(bool)
    positions, values, flags = [], [], []
    for row_scores, row_scorable in zip(scores, scorable):
        row_positions = np.flatnonzero(row_scorable)
        row_values = row_scores[row_positions]
        row_flags = []
        if len(row_positions) == 0:
            row_flags.append(NO_SCORABLE_TOKENS)
        elif not np.all(np.isfinite(row_values)):
            row_flags.append(NON_FINITE_SCORES)
        positions.append(row_positions)
        values.append(row_values)
        flags.append(row_flags)
    return positions, values, flags


TIE_GRID = 1e-6  # of the largest absolute value in an example: differences below it are float noise


def snap_to_grid(values: np.ndarray) -> np.ndarray:
    """`values` rounded to a grid of TIE_GRID x their largest absolute value, so that float noise cannot
    reorder near-ties (the spec's tie rule); all zeros stay zeros."""
    values = np.asarray(values, dtype=np.float64)
    step = TIE_GRID * (np.abs(values).max() if values.size else 0.0)
    return values if step == 0 or not np.isfinite(step) else np.round(values / step) * step


def rank_positions(positions: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """The positions by score, descending, signed as given, after snapping the scores to the tie grid;
    ties keep position order (earlier first)."""
    return positions[np.argsort(-snap_to_grid(scores), kind="stable")]


def rankings(batch: Batch, attribution: Attribution) -> tuple[list[np.ndarray | None], list[list[str]]]:
    """Per example: scorable positions ranked best first, or None (with a flag) where no ranking exists;
    an example whose scores are all equal keeps its ranking (by position) and is flagged `constant_scores`."""
    positions, scores, flags = scorable_scores(batch, attribution)
    ranked = [None if row_flags else rank_positions(p, s) for p, s, row_flags in zip(positions, scores, flags)]
    for row_scores, row_flags in zip(scores, flags):
        if not row_flags and len(row_scores) > 1 and np.all(row_scores == row_scores[0]):
            row_flags.append(CONSTANT_SCORES)  # the value is kept: ranked by position, earlier first
    return ranked, flags
