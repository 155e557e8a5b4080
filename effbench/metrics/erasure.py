"""ERASER's erasure metrics, as AOPC over the top-k bins: necessity (comprehensiveness) and sufficiency."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from effbench.metrics.base import ERASER_BINS, Metric, MetricResult, rankings, top_k

if TYPE_CHECKING:
    from effbench.metrics.perturbation import Perturbation, PerturbationEngine
    from effbench.types import Attribution, Batch

ERASER_CITATION = """@inproceedings{deyoung-etal-2020-eraser,
    title = "{ERASER}: {A} Benchmark to Evaluate Rationalized {NLP} Models",
    author = "DeYoung, Jay and Jain, Sarthak and Rajani, Nazneen Fatema and Lehman, Eric and Xiong, Caiming and Socher, Richard and Wallace, Byron C.",
    booktitle = "Proceedings of the 58th Annual Meeting of the Association for Computational Linguistics",
    year = "2020",
    publisher = "Association for Computational Linguistics",
    url = "https://aclanthology.org/2020.acl-main.408",
    doi = "10.18653/v1/2020.acl-main.408",
    pages = "4443--4458",
}"""


def aopc(full_probability: np.ndarray, perturbed_probabilities: np.ndarray) -> np.ndarray:
    """Area over the perturbation curve, per example: mean over bins of p(y|x) - p(y|perturbed x).

    `full_probability` is [B], `perturbed_probabilities` [B, |bins|]; the mean weighs each bin 1/|bins|,
    as ERASER's reference scorer does (ALTI's tables divide by |bins| + 1 instead).
    """
    full_probability = np.asarray(full_probability, dtype=np.float64)
    perturbed_probabilities = np.asarray(perturbed_probabilities, dtype=np.float64)
    return np.mean(full_probability[:, None] - perturbed_probabilities, axis=1)


class _ErasureAOPC(Metric):
    """AOPC over the bins of p(y|x) - p(y| x perturbed around the top-k tokens)."""

    family = "erasure"
    citation = ERASER_CITATION
    defaults = {"mode": "remove", "bins": ERASER_BINS}

    def validate(self) -> None:
        self._check_mode()
        self._check_fractions("bins")

    def positions_to_perturb(self, ranked: np.ndarray, k: int) -> frozenset[int]:
        raise NotImplementedError

    def compute(self, engine: PerturbationEngine, batch: Batch, attribution: Attribution) -> MetricResult:
        ranked_rows, flags = rankings(batch, attribution)
        bins = self.params["bins"]
        perturbations: list[Perturbation] = []
        scored = [index for index, ranked in enumerate(ranked_rows) if ranked is not None]
        for index in scored:
            ranked = ranked_rows[index]
            for fraction in bins:
                perturbations.append((index, self.positions_to_perturb(ranked, top_k(fraction, len(ranked)))))
        perturbed = engine.target_probabilities(batch, perturbations, self.params["mode"])
        full = engine.full_target_probabilities(batch)  # computed in the same pass
        values = np.full(len(batch), np.nan)
        details: list[dict] = [{} for _ in range(len(batch))]
        if scored:
            perturbed = perturbed.reshape(len(scored), len(bins))
            values[scored] = aopc(full[scored], perturbed)
            for row, index in enumerate(scored):
                differences = full[index] - perturbed[row]
                details[index] = {"bins": {str(fraction): float(difference) for fraction, difference in zip(bins, differences)}}
        return MetricResult(values=values, flags=flags, details=details)


class Necessity(_ErasureAOPC):
    """ERASER comprehensiveness: mean over bins of p(y|x) - p(y| x without its top-k tokens). Higher is better."""

    name = "necessity"
    version = 2  # 2: constant scores are flagged; scores snapped to the tie grid before ranking
    direction = "higher"
    range = (-1.0, 1.0)

    def positions_to_perturb(self, ranked: np.ndarray, k: int) -> frozenset[int]:
        return frozenset(ranked[:k].tolist())


class Sufficiency(_ErasureAOPC):
    """ERASER sufficiency: mean over bins of p(y|x) - p(y| only the top-k tokens, special tokens kept). Lower is better."""

    name = "sufficiency"
    version = 2  # 2: constant scores are flagged; scores snapped to the tie grid before ranking
    direction = "lower"
    range = (-1.0, 1.0)

    def positions_to_perturb(self, ranked: np.ndarray, k: int) -> frozenset[int]:
        return frozenset(ranked[k:].tolist())
