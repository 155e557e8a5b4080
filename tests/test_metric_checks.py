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


# ---- sensitivity_max and infidelity (Yeh et al. 2019) ---------------------------------------------------


def explain_and_score(model, batch, explainer_name, metric):
    from effbench.metrics.base import ExplainerMetric

    explainer = get_explainer(explainer_name)
    attribution = explainer.explain(model, batch)
    engine = PerturbationEngine(model)
    if isinstance(metric, ExplainerMetric):
        return metric.compute(engine, batch, attribution, explainer)
    return metric.compute(engine, batch, attribution)


def test_sensitivity_is_zero_for_an_explainer_that_ignores_the_model_and_positive_for_saliency(tiny_adapter, tiny_examples):
    batch = tiny_adapter.make_batch(tiny_examples)
    metric = get_metric("sensitivity_max", samples=2)
    assert explain_and_score(tiny_adapter, batch, "random", metric).values.tolist() == [0.0] * len(batch)
    saliency = explain_and_score(tiny_adapter, batch, "saliency", metric)
    assert np.all(saliency.values > 1e-4) and not any(saliency.flags)
    attention = explain_and_score(tiny_adapter, batch, "raw_attention", metric)  # its forward pass is recomputed
    assert np.all(attention.values > 1e-4)


def test_sensitivity_of_an_explainer_the_hook_cannot_reach_is_nan_with_a_flag(tiny_adapter, tiny_examples):
    batch = tiny_adapter.make_batch(tiny_examples[:2])
    result = explain_and_score(tiny_adapter, batch, "leave_one_out", get_metric("sensitivity_max", samples=1))
    assert np.isnan(result.values).all()
    assert result.flags == [["explainer_not_perturbable"]] * 2


def test_a_third_party_explainer_is_rerun_under_the_perturbation_only_when_it_declares_it_reads_through_the_embeddings(
        tiny_adapter, tiny_examples):
    from effbench.explainers.base import Explainer
    from effbench.explainers.gradients import input_vectors

    class EmbeddingNorm(Explainer):  # reads the model through the embedding layer's forward pass
        name = "embedding_norm"
        version = 1
        citation = "@misc{embedding_norm, title={Embedding norm}}"

        def scores(self, model, batch):
            return input_vectors(model, batch.input_ids, batch.attention_mask, "embedding_output").norm(dim=-1)

    class DeclaredEmbeddingNorm(EmbeddingNorm):
        reads_model_through_embedding_layer = True

    batch = tiny_adapter.make_batch(tiny_examples[:2])
    metric = get_metric("sensitivity_max", samples=1)
    undeclared = EmbeddingNorm()
    result = metric.compute(PerturbationEngine(tiny_adapter), batch, undeclared.explain(tiny_adapter, batch), undeclared)
    assert np.isnan(result.values).all() and result.flags == [["explainer_not_perturbable"]] * 2
    declared = DeclaredEmbeddingNorm()
    result = metric.compute(PerturbationEngine(tiny_adapter), batch, declared.explain(tiny_adapter, batch), declared)
    assert not any(result.flags) and np.all(result.values > 1e-6)


@pytest.mark.parametrize("name", ["sensitivity_max", "infidelity"])
def test_robustness_noise_is_seeded_per_example(tiny_adapter, tiny_examples, name):
    batch = tiny_adapter.make_batch(tiny_examples)
    together = explain_and_score(tiny_adapter, batch, "saliency", get_metric(name, samples=2, seed=3))
    for index, example in enumerate(tiny_examples):
        alone = explain_and_score(tiny_adapter, tiny_adapter.make_batch([example]), "saliency",
                                  get_metric(name, samples=2, seed=3))
        np.testing.assert_allclose(alone.values[0], together.values[index], rtol=1e-6, atol=1e-9)


def test_sensitivity_max_equals_captum_on_the_same_noise(tiny_adapter, tiny_examples):
    from captum.metrics import sensitivity_max

    from effbench.metrics.robustness import SENSITIVITY_STREAM, embedding_output_offset, one_example_batch
    from effbench.metrics.soft_erasure import example_generator

    batch = tiny_adapter.make_batch(tiny_examples[1:2])
    metric = get_metric("sensitivity_max", samples=3, radius=0.05, seed=4)
    ours = explain_and_score(tiny_adapter, batch, "saliency", metric).values[0]

    saliency = get_explainer("saliency")
    single = one_example_batch(batch, 0)
    scorable = batch.scorable_mask[0]
    embedded = tiny_adapter.embedding_output(single.input_ids, single.attention_mask).double()
    generator = example_generator(4, batch.example_ids[0], SENSITIVITY_STREAM)

    def perturb(inputs, radius):  # the metric's noise, at the scorable tokens only
        noise = torch.zeros_like(inputs)
        for row in range(len(inputs)):
            noise[row, scorable] = torch.from_numpy(generator.uniform(-radius, radius, (int(scorable.sum()), inputs.shape[-1])))
        return inputs + noise

    def explanation(points):
        as_tuple = isinstance(points, tuple)  # captum passes the unperturbed input as a tuple, and wants one back
        rows = []
        for point in points[0] if as_tuple else points:
            with embedding_output_offset(tiny_adapter, (point - embedded[0])[None]):
                rows.append(saliency.explain(tiny_adapter, single).scores[0, scorable].double())
        return (torch.stack(rows),) if as_tuple else torch.stack(rows)

    theirs = sensitivity_max(explanation, embedded, perturb_func=perturb, perturb_radius=0.05, n_perturb_samples=3)
    assert ours == pytest.approx(float(theirs[0]), rel=1e-4)


@pytest.mark.parametrize("normalize", [True, False])
def test_infidelity_equals_captum_on_the_same_noise(tiny_adapter, tiny_examples, normalize):
    from captum.metrics import infidelity

    batch = tiny_adapter.make_batch(tiny_examples[1:2])
    metric = get_metric("infidelity", samples=6, noise_std=0.2, normalize=normalize, seed=1)
    attribution = get_explainer("grad_x_input").explain(tiny_adapter, batch)
    ours = metric.compute(PerturbationEngine(tiny_adapter), batch, attribution).values[0]

    scorable = batch.scorable_mask[0]
    embedded = tiny_adapter.embedding_output(batch.input_ids, batch.attention_mask).double()
    noise = torch.from_numpy(metric.noise(batch.example_ids[0], int(scorable.sum())))

    def perturb(inputs):  # captum wants the perturbation shaped as the input: token j's I_j in coordinate 0
        fractions = torch.zeros(inputs.shape[:2], dtype=inputs.dtype)
        fractions[:, scorable] = noise
        perturbation = torch.zeros_like(inputs)
        perturbation[..., 0] = fractions
        return perturbation, inputs * (1 - fractions[..., None])

    def forward(points):
        with torch.no_grad():
            return tiny_adapter.logits(batch.input_ids.expand(len(points), -1),
                                       batch.attention_mask.expand(len(points), -1),
                                       embedding_output=points.float()).double()

    scores = torch.zeros_like(embedded)
    scores[0, :, 0] = attribution.scores[0].double()
    theirs = infidelity(forward, perturb, embedded, scores, target=int(batch.targets[0]), n_perturb_samples=6,
                        normalize=normalize)
    assert ours == pytest.approx(float(theirs[0]), rel=1e-4, abs=1e-10)


def test_normalised_infidelity_does_not_depend_on_the_scores_scale(tiny_adapter, tiny_examples):
    batch = tiny_adapter.make_batch(tiny_examples)
    attribution = get_explainer("saliency").explain(tiny_adapter, batch)
    scaled = Attribution(scores=attribution.scores * 1000, explainer="saliency", version=1)
    metric = get_metric("infidelity", samples=4)
    first = metric.compute(PerturbationEngine(tiny_adapter), batch, attribution).values
    second = metric.compute(PerturbationEngine(tiny_adapter), batch, scaled).values
    np.testing.assert_allclose(first, second, rtol=1e-6)
    unnormalised = get_metric("infidelity", samples=4, normalize=False)
    assert not np.allclose(unnormalised.compute(PerturbationEngine(tiny_adapter), batch, attribution).values,
                           unnormalised.compute(PerturbationEngine(tiny_adapter), batch, scaled).values)


# ---- model_randomisation (Adebayo et al. 2018) --------------------------------------------------------


def test_randomisation_re_initialises_the_head_and_top_layers_of_a_copy_once(tiny_adapter, tiny_examples):
    batch = tiny_adapter.make_batch(tiny_examples)
    before = {name: value.clone() for name, value in tiny_adapter.model.state_dict().items()}
    metric = get_metric("model_randomisation", layers=1)
    explain_and_score(tiny_adapter, batch, "random", metric)
    randomised = metric.randomised_model(tiny_adapter)
    explain_and_score(tiny_adapter, batch, "random", metric)
    assert metric.randomised_model(tiny_adapter) is randomised  # built once, kept for the run
    for name, value in tiny_adapter.model.state_dict().items():
        assert torch.equal(value, before[name]), f"the trained model's {name} changed"
    changed = {name for name, value in randomised.model.state_dict().items()
               if not torch.equal(value, before[name]) and value.dim() == 2}
    assert "classifier.weight" in changed and "bert.encoder.layer.1.attention.self.query.weight" in changed
    assert not any(name.startswith(("bert.encoder.layer.0.", "bert.embeddings.")) for name in changed)
    again = get_metric("model_randomisation", layers=1).randomised_model(tiny_adapter)  # seeded
    assert torch.equal(again.model.classifier.weight, randomised.model.classifier.weight)


def test_random_scores_survive_randomisation_and_saliency_does_not(tiny_adapter, tiny_examples):
    batch = tiny_adapter.make_batch(tiny_examples)
    metric = get_metric("model_randomisation")
    random = explain_and_score(tiny_adapter, batch, "random", metric)
    np.testing.assert_allclose(random.values, 1.0, rtol=0, atol=1e-12)
    assert all(details["top_k_intersection"] == 1.0 for details in random.details)
    saliency = explain_and_score(tiny_adapter, batch, "saliency", metric)
    assert np.nanmean(saliency.values) < 0.8
    attention = explain_and_score(tiny_adapter, batch, "raw_attention", metric)  # reads the copy's own forward
    assert np.nanmean(attention.values) < 0.8


def test_randomisation_layers_are_checked(tiny_adapter, tiny_examples):
    from effbench.errors import EffbenchError

    with pytest.raises(EffbenchError, match="layers must be 'all' or an integer"):
        get_metric("model_randomisation", layers="top")
    batch = tiny_adapter.make_batch(tiny_examples[:1])
    with pytest.raises(EffbenchError, match="layers=3 but the model has 2"):
        explain_and_score(tiny_adapter, batch, "random", get_metric("model_randomisation", layers=3))


# ---- through the runner -------------------------------------------------------------------------------------


def test_the_new_metrics_run_end_to_end_and_reach_the_records(toy_env, tmp_path):
    import json

    import effbench

    config = effbench.RunConfig(limit=3, model_kind="tiny", output_dir=tmp_path, seed=4)
    new = {"soft_sufficiency": {}, "soft_comprehensiveness": {}, "infidelity": {"samples": 3},
           "sensitivity_max": {"samples": 2}, "model_randomisation": {}}
    records = effbench.evaluate(["toy"], ["random", "saliency", "leave_one_out"], new, config, progress=False)
    by_explainer = {record["explainer"]["name"]: record for record in records}
    for record in records:
        params = {metric["name"]: metric["params"] for metric in record["metrics"]}
        assert all(params[name]["seed"] == 4 for name in new)
        assert set(record["results"]) == set(new)
    assert by_explainer["random"]["results"]["sensitivity_max"]["mean"] == 0.0
    assert by_explainer["random"]["results"]["model_randomisation"]["mean"] == pytest.approx(1.0)
    assert by_explainer["saliency"]["results"]["sensitivity_max"]["mean"] > 0
    assert by_explainer["leave_one_out"]["results"]["sensitivity_max"]["flagged"] == 3
    [folder] = tmp_path.glob("toy/saliency-*")
    rows = [json.loads(line) for line in (folder / "per_example.jsonl").read_text().splitlines()]
    assert all("null_probability" in row["metrics"]["soft_sufficiency"]["details"] for row in rows)


def test_effbench_metrics_lists_the_new_metrics(capsys):
    from effbench.cli import main

    assert main(["metrics"]) == 0
    out = capsys.readouterr().out
    for name in ("soft_sufficiency", "soft_comprehensiveness", "sensitivity_max", "infidelity", "model_randomisation"):
        assert name in out
