"""What the coalition explainers (`lime`, `kernel_shap`) share.

Their interpretable features are an example's scorable tokens; a coalition is a boolean row over them,
True where the token is present. An absent token is removed (the sequence re-packed on ids) or masked,
as the metrics' `remove` and `mask` modes do: the forward passes go through the metrics' perturbation
engine, which batches, chunks and caches them. Every example's random draws come from a generator
seeded by (the explainer's seed, a sha256 of the example's id), and its perturbed inputs are forwarded
in chunks of their own, so its scores are the same bits whatever batch it is in. Where removing every
token leaves no token at all (GPT-2's tokenizer adds none), the empty coalition is read on the BOS token
alone.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import torch

from effbench.errors import EffbenchError
from effbench.explainers.random import example_key
from effbench.metrics.base import PERTURBATION_MODES

if TYPE_CHECKING:
    from effbench.explainers.base import Explainer
    from effbench.models.adapter import ClassifierAdapter
    from effbench.types import Batch


def example_generator(seed: int, example_id: str) -> np.random.Generator:
    """The generator of one example's draws: the same for that example in any batch."""
    return np.random.default_rng([seed, example_key(example_id)])


def check_coalition_parameters(explainer: Explainer, least_samples: int) -> None:
    """One-line errors for bad `samples`, `perturbation` and `seed` parameters."""
    params = explainer.params
    samples = params["samples"]
    if isinstance(samples, bool) or not isinstance(samples, int) or samples < least_samples:
        raise EffbenchError(f"parameter samples={samples!r} is not allowed; use an integer of at least {least_samples}")
    if params["perturbation"] not in PERTURBATION_MODES:
        raise EffbenchError(f"parameter perturbation={params['perturbation']!r} is not allowed; "
                            f"choose one of {', '.join(PERTURBATION_MODES)}")
    seed = params["seed"]
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise EffbenchError(f"parameter seed={seed!r} is not allowed; use a non-negative integer")


def check_positive_number(explainer: Explainer, name: str) -> None:
    value = explainer.params[name]
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not np.isfinite(value) or value <= 0:
        raise EffbenchError(f"parameter {name}={value!r} is not allowed; use a positive number")


def one_blas_thread():
    """A context for the explainers' small least-squares fits: numpy's BLAS on one thread. On a busy machine
    OpenBLAS's threads made a 500 x 43 solve take 0.4 s instead of 0.4 ms."""
    from threadpoolctl import threadpool_limits

    return threadpool_limits(limits=1, user_api="blas")


def scorable_positions(batch: Batch) -> list[np.ndarray]:
    """Per example, its scorable positions, ascending: feature j of an example is its j-th scorable token."""
    return [np.flatnonzero(row) for row in batch.scorable_mask.cpu().numpy()]


def coalition_target_probabilities(explainer: Explainer, model: ClassifierAdapter, batch: Batch,
                                   coalitions: Sequence[np.ndarray]) -> list[np.ndarray]:
    """Per example i, p(y_i | x_i with only the tokens of each coalition present), one per row of
    `coalitions[i]` ([S_i, M_i] bool, True = present), in that order; y_i = batch.targets[i].

    Each example's requests form a perturbation family of their own (named by the explainer, its
    parameters and the example's id), so the engine forwards them in chunks that hold nothing else.
    """
    from effbench.metrics.perturbation import PerturbationEngine

    mode = explainer.params["perturbation"]
    engine = PerturbationEngine(model, mode=mode)
    family = f"{explainer.name} {json.dumps(explainer.params, sort_keys=True)}"
    lengths = batch.attention_mask.sum(1).tolist()
    empty_input_probabilities = None
    results = []
    for index, (positions, present) in enumerate(zip(scorable_positions(batch), coalitions)):
        if present.shape[1] != len(positions):
            raise EffbenchError(f"coalitions of example {index} have {present.shape[1]} features, not its "
                                f"{len(positions)} scorable tokens")
        absent = [frozenset(positions[~row].tolist()) for row in present]
        # removing every token of a row that has no special token (GPT-2's) leaves nothing to forward
        empty_when_all_absent = mode == "remove" and lengths[index] == len(positions) > 0
        empty = np.array([empty_when_all_absent and len(taken_out) == len(positions) for taken_out in absent], dtype=bool)
        values = np.empty(len(absent))
        values[~empty] = engine.target_probabilities(batch, [(index, absent[row]) for row in np.flatnonzero(~empty)],
                                                     mode, f"{family} {batch.example_ids[index]}")
        if empty.any():
            if empty_input_probabilities is None:
                empty_input_probabilities = empty_input_class_probabilities(model)
            values[empty] = empty_input_probabilities[int(batch.targets[index])]
        results.append(values)
    return results


def empty_input_class_probabilities(model: ClassifierAdapter) -> np.ndarray:
    """Class probabilities [C] of the empty text for a tokenizer that adds no special token (GPT-2's): the
    sequence of its BOS token alone (else EOS, else padding), which is how GPT-2 begins a text."""
    tokenizer = model.tokenizer
    token = next((token for token in (tokenizer.bos_token_id, tokenizer.eos_token_id, tokenizer.pad_token_id)
                  if token is not None), None)
    if token is None:
        raise EffbenchError("removing every token leaves an empty sequence, and the tokenizer has no BOS, EOS or "
                            "padding token to stand for the empty text; use perturbation 'mask'")
    input_ids = torch.tensor([[token]])
    with torch.inference_mode():
        return torch.softmax(model.logits(input_ids, torch.ones_like(input_ids)).double(), dim=-1)[0].cpu().numpy()
