"""`kernel_shap`: Shapley values of the scorable tokens by weighted least squares (Lundberg & Lee 2017).

The game: v(S) = p(y | x with only the tokens of S present), in probability space, y the predicted
class; an absent token is removed (the sequence re-packed, as the metrics' `remove`) or masked
(`perturbation`). As the shap package's KernelExplainer (without its optional L1 feature selection):

- coalitions: of the Shapley kernel's sizes, those whose every coalition (and its complement) the
  budget of `samples` covers are enumerated, smallest first; the rest are drawn with probability
  proportional to the kernel, in complementary pairs, duplicates adding weight instead of passes;
  when `samples` >= 2^M - 2 every coalition is enumerated and the values are exact;
- the full and the empty coalitions are not samples but constraints: phi_0 = v(empty) and
  sum_j phi_j = v(all) - v(empty), enforced exactly by eliminating the last token's value;
- solve: least squares of v(S) - v(empty) on the coalitions, weighted by the Shapley kernel.

`samples` must be at least M, the number of scorable tokens, on every example (the least squares then
have more equations than their M - 1 unknowns): a longer example is a one-line error naming it.
When removing every token would leave no token at all (GPT-2's tokenizer adds none), v(empty) is read on
the BOS token alone.

Sample count, measured on the trained mr-sentences MiniLM (error = ||phi - phi_ref|| / ||phi_ref||, mean
over 4 test sentences; the reference: exact values, every coalition enumerated, for 11-12 tokens;
8,000 samples drawn with another seed for 24-30 tokens):

    samples                          50    100    200    500   1000   2000
    11-12 tokens, remove, exact    0.24   0.13   0.10   0.033  0.031     -
    11-12 tokens, mask, exact      0.16   0.095  0.056  0.031  0.024     -
    24-30 tokens, remove           1.98   0.55   0.21   0.15   0.09   0.07

500 is the default: 2.9 s per sentence on the packaged MiniLM, one CPU thread of a busy machine, 8
sentences of 6-50 tokens (one forward pass per sample).

Why not captum's KernelShap: on the same 4 short sentences in mask mode (the special tokens one more
feature, their baseline themselves) it erred 0.23 at 100 samples and 0.082 at 500 (here 0.095 and
0.031) at a similar cost: it draws every coalition (sizes by the Shapley kernel, no enumeration of the
small sizes, no complementary pairs) and gives
the full and empty coalitions a weight of 10^6 instead of enforcing the constraint; it also replaces
features by a baseline (no re-packing for `remove`) and forwards one example at a time. The estimator
here is the shap package's: on one 8-token game, its KernelExplainer's mean error over 20 seeds at 40,
120 and 200 samples was 1.00, 0.40 and 0.13, this one's 1.05, 0.43 and 0.12.
"""

from __future__ import annotations

import itertools
import math
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import torch

from effbench.errors import EffbenchError
from effbench.explainers.base import Explainer
from effbench.explainers.coalitions import (
    check_coalition_parameters,
    coalition_target_probabilities,
    example_generator,
    one_blas_thread,
    scorable_positions,
)

if TYPE_CHECKING:
    from effbench.models.adapter import ClassifierAdapter
    from effbench.types import Batch


def kernel_shap_coalitions(generator: np.random.Generator, features: int, samples: int) -> tuple[np.ndarray, np.ndarray]:
    """(coalitions [S, M] bool, True = present; their weights [S]) as the shap package's KernelExplainer
    chooses them for a budget of `samples` (at most 2^M - 2), without the full and the empty coalition."""
    if features < 2:  # one token's value is v(all) - v(empty): no coalition to sample
        return np.zeros((0, features), dtype=bool), np.zeros(0)
    budget = min(samples, 2 ** features - 2)
    sizes = math.ceil((features - 1) / 2)  # coalition sizes s; size M - s comes as the complement
    paired_sizes = (features - 1) // 2  # sizes whose complement has another size
    size_weights = np.array([(features - 1) / (size * (features - size)) for size in range(1, sizes + 1)])
    size_weights[:paired_sizes] *= 2
    size_weights /= size_weights.sum()

    rows: list[np.ndarray] = []
    weights: list[float] = []
    left = budget
    share_left = size_weights.copy()
    enumerated_sizes = 0
    for size in range(1, sizes + 1):
        paired = size <= paired_sizes
        count = math.comb(features, size) * (2 if paired else 1)
        if left * share_left[size - 1] / count < 1.0 - 1e-8:
            break
        enumerated_sizes += 1
        left -= count
        if share_left[size - 1] < 1.0:
            share_left /= 1 - share_left[size - 1]
        weight = size_weights[size - 1] / math.comb(features, size) / (2 if paired else 1)
        for chosen in itertools.combinations(range(features), size):
            row = np.zeros(features, dtype=bool)
            row[list(chosen)] = True
            rows.append(row)
            weights.append(weight)
            if paired:
                rows.append(~row)
                weights.append(weight)

    enumerated = len(rows)
    if enumerated_sizes < sizes and left > 0:
        draw_shares = size_weights.copy()
        draw_shares[:paired_sizes] /= 2  # a draw of a paired size brings its complement along
        draw_shares = draw_shares[enumerated_sizes:] / draw_shares[enumerated_sizes:].sum()
        seen: dict[bytes, int] = {}
        for drawn in generator.choice(len(draw_shares), 4 * left, p=draw_shares):
            if left <= 0:
                break
            size = int(drawn) + enumerated_sizes + 1
            row = np.zeros(features, dtype=bool)
            row[generator.permutation(features)[:size]] = True
            first = seen.get(row.tobytes())
            if first is None:
                seen[row.tobytes()] = len(rows)
                rows.append(row)
                weights.append(1.0)
                left -= 1
            else:
                weights[first] += 1.0
            if left > 0 and size <= paired_sizes:
                if first is None:
                    rows.append(~row)
                    weights.append(1.0)
                    left -= 1
                else:
                    weights[first + 1] += 1.0
        drawn_weights = np.array(weights[enumerated:])
        weights[enumerated:] = list(drawn_weights * size_weights[enumerated_sizes:].sum() / drawn_weights.sum())
    return np.array(rows, dtype=bool), np.array(weights)


def constrained_shapley_regression(present: np.ndarray, weights: np.ndarray, values: np.ndarray, full: float,
                                   empty: float) -> np.ndarray:
    """phi [M]: weighted least squares of values - empty on the coalitions, with sum(phi) = full - empty
    exactly (the last token's value eliminated, as the shap package does)."""
    total = full - empty
    features = present.shape[1]
    if features == 1:
        return np.array([total])
    indicators = present.astype(np.float64)
    last = indicators[:, -1]
    design = indicators[:, :-1] - last[:, None]
    target = values - empty - last * total
    root = np.sqrt(weights)
    others = np.linalg.lstsq(design * root[:, None], target * root, rcond=None)[0]
    return np.append(others, total - others.sum())


class KernelShap(Explainer):
    """score_j = the Kernel SHAP estimate of token j's Shapley value in v(S) = p(y | only S present)."""

    name = "kernel_shap"
    version = 1
    defaults: ClassVar[dict[str, Any]] = {"samples": 500, "perturbation": "remove", "seed": 0}
    citation = """@inproceedings{lundberg2017unified,
  title = {A Unified Approach to Interpreting Model Predictions},
  author = {Lundberg, Scott M. and Lee, Su-In},
  booktitle = {Advances in Neural Information Processing Systems 30},
  pages = {4765--4774},
  year = {2017}
}"""

    def validate(self) -> None:
        check_coalition_parameters(self, least_samples=1)

    def scores(self, model: ClassifierAdapter, batch: Batch) -> torch.Tensor:
        samples = self.params["samples"]
        positions = scorable_positions(batch)
        for example_id, example_positions in zip(batch.example_ids, positions):
            if len(example_positions) > samples:
                raise EffbenchError(f"kernel_shap with samples={samples} cannot estimate the {len(example_positions)} "
                                    f"token values of example {example_id!r}; use samples of at least "
                                    f"{len(example_positions)} (--explainer-param kernel_shap.samples=N)")
        sampled = [kernel_shap_coalitions(example_generator(self.params["seed"], example_id), len(example_positions),
                                          samples)
                   for example_id, example_positions in zip(batch.example_ids, positions)]
        # each example's request: its coalitions, then the full and the empty one
        requests = [np.concatenate([present, np.ones((1, present.shape[1]), dtype=bool),
                                    np.zeros((1, present.shape[1]), dtype=bool)]) for present, _ in sampled]
        values = coalition_target_probabilities(self, model, batch, requests)
        scores = torch.zeros(batch.input_ids.shape, dtype=torch.float64)
        with one_blas_thread():
            for row, (example_positions, (present, weights), example_values) in enumerate(zip(positions, sampled, values)):
                if len(example_positions) == 0:
                    continue
                phi = constrained_shapley_regression(present, weights, example_values[:-2], full=example_values[-2],
                                                     empty=example_values[-1])
                scores[row, torch.from_numpy(example_positions)] = torch.from_numpy(phi)
        return scores
