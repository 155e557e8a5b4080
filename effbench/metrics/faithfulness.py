"""Faithfulness: rank agreement between the scores and the leave-one-out effects of the tokens."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from effbench.errors import EffbenchError
from effbench.metrics.base import CONSTANT_SCORES, Metric, MetricResult, scorable_scores, snap_to_grid

if TYPE_CHECKING:
    from effbench.metrics.perturbation import PerturbationEngine
    from effbench.types import Attribution, Batch

CONSTANT_EFFECTS = "constant_effects"
TOO_FEW_TOKENS = "fewer_than_2_tokens"

JAIN_WALLACE_CITATION = """@inproceedings{jain-wallace-2019-attention,
    title = "{A}ttention is not {E}xplanation",
    author = "Jain, Sarthak and Wallace, Byron C.",
    booktitle = "Proceedings of the 2019 Conference of the North {A}merican Chapter of the Association for Computational Linguistics: Human Language Technologies, Volume 1 (Long and Short Papers)",
    year = "2019",
    publisher = "Association for Computational Linguistics",
    url = "https://aclanthology.org/N19-1357",
    doi = "10.18653/v1/N19-1357",
    pages = "3543--3556",
}"""


def loo_kendall_tau(
    scores: np.ndarray, full_probability: float, leave_one_out_probabilities: np.ndarray
) -> tuple[float, list[str]]:
    """Kendall's tau-b between the scores s_j and the leave-one-out effects D_j = p(y|x) - p(y|x without j).

    Where tau-b is undefined it is 0 with a flag: fewer than 2 tokens, constant scores, constant effects.
    """
    from scipy.stats import kendalltau

    # the spec's tie rule: float noise must not decide a near-tie of scores or of effects
    scores = snap_to_grid(np.asarray(scores, dtype=np.float64))
    effects = snap_to_grid(full_probability - np.asarray(leave_one_out_probabilities, dtype=np.float64))
    if len(scores) != len(effects):
        raise ValueError(f"{len(scores)} scores but {len(effects)} leave-one-out probabilities")
    if len(scores) < 2:
        return 0.0, [TOO_FEW_TOKENS]
    if np.all(scores == scores[0]):
        return 0.0, [CONSTANT_SCORES]
    if np.all(effects == effects[0]):
        return 0.0, [CONSTANT_EFFECTS]
    return float(kendalltau(scores, effects, variant="b").statistic), []


class Faithfulness(Metric):
    """Kendall tau-b between scores and leave-one-out effects over the scorable tokens. Higher is better."""

    name = "faithfulness"
    version = 2  # 2: scores and effects snapped to the tie grid; leave-one-out passes independent of the batch
    family = "faithfulness"
    direction = "higher"
    range = (-1.0, 1.0)
    citation = JAIN_WALLACE_CITATION
    defaults = {"mode": "remove", "correlation": "kendall_tau_b"}

    def validate(self) -> None:
        self._check_mode()
        if self.params["correlation"] != "kendall_tau_b":
            raise EffbenchError(
                f"metric 'faithfulness': correlation must be 'kendall_tau_b', got {self.params['correlation']!r}"
            )

    def compute(self, engine: PerturbationEngine, batch: Batch, attribution: Attribution) -> MetricResult:
        _, scores, flags = scorable_scores(batch, attribution)
        without = engine.leave_one_out(batch, self.params["mode"])
        full = engine.full_target_probabilities(batch)  # computed in the same pass
        values = np.full(len(batch), np.nan)
        for index, row_flags in enumerate(flags):
            if row_flags:
                continue
            values[index], new_flags = loo_kendall_tau(scores[index], full[index], without[index])
            row_flags.extend(new_flags)
        return MetricResult(values=values, flags=flags)
