"""Soft erasure (Zhao & Aletras 2023): perturb each token's vector in proportion to its importance.

Instead of deleting the top-k tokens, every scorable token's vector at the embedding layer's output (the
point the gradient explainers take by default) is multiplied elementwise by a Bernoulli mask whose keep
probability comes from the token's min-max normalised score q_j in [0, 1]:

- `soft_sufficiency` keeps each element with probability q_j (important tokens survive), and
  Soft-NS = clip((Soft-S - S0) / (1 - S0), 0, 1), Soft-S = mean over samples of 1 - max(0, p(y|x) - p(y|x'));
- `soft_comprehensiveness` keeps each element with probability 1 - q_j (important tokens are erased), and
  Soft-NC = clip(Soft-C / (1 - S0), 0, 1), Soft-C = mean over samples of max(0, p(y|x) - p(y|x'));

S0 = 1 - max(0, p(y|x) - p(y|x0)) is the sufficiency of the null input x0: every scorable token's vector
zeroed (keep probability 0), special tokens kept. Masks are drawn per example from (seed, example id), so a
value does not depend on the batch; each example's rows are forwarded in calls of their own, unpadded.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from effbench.metrics.base import CONSTANT_SCORES, Metric, MetricResult, scorable_scores

if TYPE_CHECKING:
    import torch

    from effbench.metrics.perturbation import PerturbationEngine
    from effbench.types import Attribution, Batch

# p(y|x) - p(y|x0) <= 0: removing every token does not lower p(y), so the normalisation is undefined
NULL_INPUT_KEEPS_PROBABILITY = "null_input_keeps_probability"
SOFT_MASK_STREAM = 1  # generator streams of the metrics that draw noise per example: each its own

ZHAO_ALETRAS_CITATION = """@inproceedings{zhao-aletras-2023-incorporating,
    title = "Incorporating Attribution Importance for Improving Faithfulness Metrics",
    author = "Zhao, Zhixue and Aletras, Nikolaos",
    booktitle = "Proceedings of the 61st Annual Meeting of the Association for Computational Linguistics (Volume 1: Long Papers)",
    year = "2023",
    publisher = "Association for Computational Linguistics",
    url = "https://aclanthology.org/2023.acl-long.261",
    doi = "10.18653/v1/2023.acl-long.261",
    pages = "4732--4745",
}"""


def example_generator(seed: int, example_id: str, stream: int) -> np.random.Generator:
    """The generator of one example's noise: from the seed, a stable hash of its id, and the metric's stream."""
    from effbench.explainers.random import example_key

    return np.random.default_rng([seed, example_key(example_id), stream])


def min_max_normalised(scores: np.ndarray) -> np.ndarray:
    """(s - min) / (max - min) over the example's scorable tokens; constant scores give all zeros."""
    scores = np.asarray(scores, dtype=np.float64)
    spread = scores.max() - scores.min()
    return np.zeros_like(scores) if spread == 0 else (scores - scores.min()) / spread


def soft_normalised_sufficiency(full_probability: float, null_probability: float,
                                perturbed_probabilities) -> tuple[float, list[str]]:
    """Soft-NS = clip((mean_s S(x'_s) - S0) / (1 - S0), 0, 1), S(x') = 1 - max(0, p(y|x) - p(y|x'));
    NaN with a flag where 1 - S0 = max(0, p(y|x) - p(y|x0)) is 0."""
    reference = max(0.0, full_probability - null_probability)  # 1 - S0
    if reference <= 0:
        return float("nan"), [NULL_INPUT_KEEPS_PROBABILITY]
    soft = float(np.mean(1 - np.maximum(0.0, full_probability - np.asarray(perturbed_probabilities, dtype=np.float64))))
    return float(np.clip((soft - (1 - reference)) / reference, 0.0, 1.0)), []


def soft_normalised_comprehensiveness(full_probability: float, null_probability: float,
                                      perturbed_probabilities) -> tuple[float, list[str]]:
    """Soft-NC = clip(mean_s max(0, p(y|x) - p(y|x'_s)) / (1 - S0), 0, 1); NaN with a flag where 1 - S0 is 0."""
    reference = max(0.0, full_probability - null_probability)
    if reference <= 0:
        return float("nan"), [NULL_INPUT_KEEPS_PROBABILITY]
    soft = float(np.mean(np.maximum(0.0, full_probability - np.asarray(perturbed_probabilities, dtype=np.float64))))
    return float(np.clip(soft / reference, 0.0, 1.0)), []


def example_rows(batch: Batch, index: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The example's token ids and attention mask [1, L], padding cut off."""
    length = int(batch.attention_mask[index].sum())
    return batch.input_ids[index: index + 1, :length], batch.attention_mask[index: index + 1, :length]


def target_outputs_at(engine: PerturbationEngine, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                      points: torch.Tensor, target: int, output: str = "probability") -> np.ndarray:
    """p(y) (or the logit of y) [R] (float64) with the embedding layer's output replaced by each of `points`
    [R, L, D], for one example's ids [1, L]: in calls of at most the engine's max_batch_tokens, counted
    as the engine's passes."""
    import torch

    model = engine.model
    per_call = max(1, engine.max_batch_tokens // max(1, input_ids.shape[1]))
    results = []
    with torch.inference_mode():
        for start in range(0, len(points), per_call):
            part = points[start: start + per_call]
            logits = model.logits(input_ids.expand(len(part), -1), attention_mask.expand(len(part), -1),
                                  embedding_output=part).double()
            values = torch.softmax(logits, dim=-1) if output == "probability" else logits
            results.append(values[:, target].cpu().numpy())
            engine.forward_calls += 1
    engine.sequences_requested += len(points)
    engine.sequences_evaluated += len(points)
    return np.concatenate(results)


class _SoftErasure(Metric):
    """What the two soft metrics share: the masks, the null input, the forward passes."""

    family = "soft_erasure"
    citation = ZHAO_ALETRAS_CITATION
    range = (0.0, 1.0)
    direction = "higher"
    defaults = {"samples": 1, "seed": 0}

    def validate(self) -> None:
        self._check_integer("samples", 1)
        self._check_integer("seed", 0)

    def keep_probabilities(self, normalised: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def value(self, full: float, null: float, perturbed: np.ndarray) -> tuple[float, list[str]]:
        raise NotImplementedError

    def compute(self, engine: PerturbationEngine, batch: Batch, attribution: Attribution) -> MetricResult:
        import torch

        positions, scores, flags = scorable_scores(batch, attribution)
        full = engine.full_target_probabilities(batch)
        values = np.full(len(batch), np.nan)
        details: list[dict] = [{} for _ in range(len(batch))]
        for index, row_flags in enumerate(flags):
            if row_flags:
                continue
            if len(scores[index]) > 1 and np.all(scores[index] == scores[index][0]):
                row_flags.append(CONSTANT_SCORES)  # normalised to all zeros: keep probability 0 or 1 everywhere
            input_ids, attention_mask = example_rows(batch, index)
            embedded = engine.model.embedding_output(input_ids, attention_mask)[0]  # [L, D]
            keep = self.keep_probabilities(min_max_normalised(scores[index]))
            generator = example_generator(self.params["seed"], batch.example_ids[index], SOFT_MASK_STREAM)
            uniforms = generator.random((self.params["samples"], len(positions[index]), embedded.shape[-1]))
            masks = torch.ones((self.params["samples"], *embedded.shape), dtype=embedded.dtype, device=embedded.device)
            masks[:, torch.from_numpy(positions[index])] = torch.from_numpy(uniforms < keep[None, :, None]).to(masks)
            null_mask = torch.ones_like(embedded)
            null_mask[torch.from_numpy(positions[index])] = 0
            points = torch.cat([null_mask[None] * embedded, masks * embedded])
            probabilities = target_outputs_at(engine, input_ids, attention_mask, points, int(batch.targets[index]))
            null, perturbed = float(probabilities[0]), probabilities[1:]
            values[index], new_flags = self.value(float(full[index]), null, perturbed)
            row_flags.extend(new_flags)
            details[index] = {"null_probability": null, "perturbed_probabilities": [float(p) for p in perturbed]}
        return MetricResult(values=values, flags=flags, details=details)


class SoftSufficiency(_SoftErasure):
    """Soft normalised sufficiency: keep each element of a token's vector with probability q_j. Higher is better."""

    name = "soft_sufficiency"
    version = 1

    def keep_probabilities(self, normalised: np.ndarray) -> np.ndarray:
        return normalised

    def value(self, full: float, null: float, perturbed: np.ndarray) -> tuple[float, list[str]]:
        return soft_normalised_sufficiency(full, null, perturbed)


class SoftComprehensiveness(_SoftErasure):
    """Soft normalised comprehensiveness: keep each element with probability 1 - q_j. Higher is better."""

    name = "soft_comprehensiveness"
    version = 1

    def keep_probabilities(self, normalised: np.ndarray) -> np.ndarray:
        return 1 - normalised

    def value(self, full: float, null: float, perturbed: np.ndarray) -> tuple[float, list[str]]:
        return soft_normalised_comprehensiveness(full, null, perturbed)
