"""Metrics that check the metrics: soft erasure (Zhao & Aletras 2023)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from effbench.explainers import get_explainer
from effbench.metrics import get_metric
from effbench.metrics.base import CONSTANT_SCORES
from effbench.metrics.perturbation import PerturbationEngine
from effbench.types import Attribution

SOFT_METRICS = ["soft_sufficiency", "soft_comprehensiveness"]


def zero_attribution(batch) -> Attribution:
    return Attribution(scores=torch.zeros(batch.input_ids.shape), explainer="zeros", version=1)


def test_all_zero_scores_give_the_null_input_to_sufficiency_and_the_full_input_to_comprehensiveness(
        tiny_adapter, tiny_examples):
    batch = tiny_adapter.make_batch(tiny_examples)
    attribution = zero_attribution(batch)
    engine = PerturbationEngine(tiny_adapter)
    full = engine.full_target_probabilities(batch)
    sufficiency = get_metric("soft_sufficiency", samples=2).compute(engine, batch, attribution)
    comprehensiveness = get_metric("soft_comprehensiveness", samples=2).compute(engine, batch, attribution)
    for index in range(len(batch)):
        details = sufficiency.details[index]
        # keep probability 0: every sample is the null input, bit for bit
        assert details["perturbed_probabilities"] == [details["null_probability"]] * 2
        # keep probability 1: every sample is the full input (through the embedding output instead of the ids)
        np.testing.assert_allclose(comprehensiveness.details[index]["perturbed_probabilities"], [full[index]] * 2,
                                   rtol=0, atol=1e-6)
        for result in (sufficiency, comprehensiveness):
            assert CONSTANT_SCORES in result.flags[index] or len(batch.scorable_mask[index].nonzero()) == 1
            assert np.isnan(result.values[index]) or result.values[index] == pytest.approx(0.0, abs=1e-6)


@pytest.mark.parametrize("name", SOFT_METRICS)
def test_masks_are_seeded_per_example_so_a_batch_of_one_equals_a_padded_batch(tiny_adapter, tiny_examples, name):
    saliency = get_explainer("saliency")
    batch = tiny_adapter.make_batch(tiny_examples)
    together = get_metric(name, samples=3, seed=7).compute(PerturbationEngine(tiny_adapter), batch,
                                                           saliency.explain(tiny_adapter, batch))
    for index, example in enumerate(tiny_examples):
        alone_batch = tiny_adapter.make_batch([example])
        alone = get_metric(name, samples=3, seed=7).compute(PerturbationEngine(tiny_adapter), alone_batch,
                                                            saliency.explain(tiny_adapter, alone_batch))
        assert alone.flags[0] == together.flags[index]
        np.testing.assert_allclose(alone.details[0]["perturbed_probabilities"],
                                   together.details[index]["perturbed_probabilities"], rtol=0, atol=1e-6)
        np.testing.assert_allclose(alone.values[0], together.values[index], rtol=0, atol=1e-6)


def test_another_seed_draws_other_masks(tiny_adapter, tiny_examples):
    batch = tiny_adapter.make_batch(tiny_examples[2:3])  # 60-odd tokens: masks of two seeds cannot agree
    attribution = get_explainer("saliency").explain(tiny_adapter, batch)
    first, second = (get_metric("soft_sufficiency", seed=seed).compute(PerturbationEngine(tiny_adapter), batch, attribution)
                     for seed in (0, 1))
    assert first.details[0]["perturbed_probabilities"] != second.details[0]["perturbed_probabilities"]


def test_the_soft_metrics_count_their_passes(tiny_adapter, tiny_examples):
    batch = tiny_adapter.make_batch(tiny_examples)
    engine = PerturbationEngine(tiny_adapter)
    engine.full_target_probabilities(batch)
    before = engine.sequences_evaluated
    get_metric("soft_comprehensiveness", samples=3).compute(engine, batch, zero_attribution(batch))
    assert engine.sequences_evaluated - before == len(batch) * (1 + 3)  # the null input and each sample


@pytest.mark.parametrize("params", [{"samples": 0}, {"samples": 1.5}, {"seed": -1}, {"seed": True}])
def test_soft_metric_parameters_are_checked(params):
    from effbench.errors import EffbenchError

    with pytest.raises(EffbenchError, match=f"{next(iter(params))} must be an integer"):
        get_metric("soft_sufficiency", **params)


def test_a_run_passes_its_seed_to_seeded_metrics_unless_one_is_given():
    from effbench.runner import metric_for_run

    assert metric_for_run("soft_sufficiency", {}, "remove", seed=5).params["seed"] == 5
    assert metric_for_run("soft_sufficiency", {"seed": 2}, "remove", seed=5).params["seed"] == 2
    assert metric_for_run("necessity", {}, "mask", seed=5).params == {"mode": "mask", "bins": [0.01, 0.05, 0.1, 0.2, 0.5]}


@pytest.mark.parametrize("name", SOFT_METRICS)
def test_soft_metrics_give_nan_and_a_flag_without_tokens_or_with_nan_scores(tiny_adapter, tiny_examples, name):
    batch = tiny_adapter.make_batch(tiny_examples[:2])
    scores = torch.rand(batch.input_ids.shape)
    scores[1, 2] = float("nan")
    no_tokens = batch.scorable_mask.clone()
    no_tokens[0] = False
    batch = type(batch)(**{**batch.__dict__, "scorable_mask": no_tokens})
    result = get_metric(name).compute(PerturbationEngine(tiny_adapter), batch,
                                      Attribution(scores=scores, explainer="x", version=1))
    assert np.isnan(result.values).all()
    assert result.flags == [["no_scorable_tokens"], ["non_finite_scores"]]


def test_soft_metrics_on_minilm_are_defined_and_zero_for_all_zero_scores(minilm_adapter, tiny_examples):
    """On a real encoder the null input lowers p(y) (the tiny random model's does not: its values are NaN)."""
    batch = minilm_adapter.make_batch(tiny_examples)
    engine = PerturbationEngine(minilm_adapter)
    zeros = zero_attribution(batch)
    saliency = get_explainer("saliency").explain(minilm_adapter, batch)
    for name in SOFT_METRICS:
        at_zero = get_metric(name).compute(engine, batch, zeros)
        defined = ~np.isnan(at_zero.values)
        assert defined.sum() >= 2, at_zero.flags
        np.testing.assert_allclose(at_zero.values[defined], 0.0, rtol=0, atol=1e-6)
        scored = get_metric(name, samples=2).compute(engine, batch, saliency)
        assert np.all((scored.values[defined] >= 0) & (scored.values[defined] <= 1))
