"""Gradient explainers: agreement with captum, and the completeness of integrated gradients."""

from __future__ import annotations

import pytest
import torch

from effbench.explainers import get_explainer

captum_attr = pytest.importorskip("captum.attr")


def forward_function(adapter):
    def logits(embeddings, attention_mask):
        return adapter.logits(None, attention_mask, inputs_embeds=embeddings)

    return logits


def ids_forward_function(adapter):
    def logits(input_ids, attention_mask):
        return adapter.logits(input_ids, attention_mask)

    return logits


def scorable_only(values: torch.Tensor, batch) -> torch.Tensor:
    return torch.where(batch.scorable_mask, values.detach().float().cpu(), torch.zeros(()))


def captum_reference(adapter, batch, captum_method: str, input_point: str, **kwargs) -> torch.Tensor:
    """captum's attribution [B, N, D]: on the word embeddings, or its layer variant on the embedding layer."""
    if input_point == "word_embeddings":
        embeddings = adapter.input_embeddings(batch.input_ids).detach().requires_grad_(True)
        attribute = getattr(captum_attr, captum_method)(forward_function(adapter)).attribute
        return attribute(embeddings, target=batch.targets, additional_forward_args=(batch.attention_mask,), **kwargs)
    layer_method = {"Saliency": "LayerGradientXActivation", "InputXGradient": "LayerGradientXActivation",
                    "IntegratedGradients": "LayerIntegratedGradients"}[captum_method]
    options = {"multiply_by_inputs": False} if captum_method == "Saliency" else {}
    attribute = getattr(captum_attr, layer_method)(ids_forward_function(adapter), adapter.embedding_module(),
                                                   **options).attribute
    return attribute(batch.input_ids, target=batch.targets, additional_forward_args=(batch.attention_mask,), **kwargs)


def assert_close(scores: torch.Tensor, expected: torch.Tensor) -> None:
    assert expected.abs().max() > 0
    assert torch.allclose(scores, expected, rtol=0, atol=1e-4 * float(expected.abs().max()))


@pytest.mark.parametrize("input_point", ["embedding_output", "word_embeddings"])
def test_saliency_matches_captum(tiny_adapter, tiny_examples, input_point):
    batch = tiny_adapter.make_batch(tiny_examples)
    reference = captum_reference(tiny_adapter, batch, "Saliency", input_point)
    scores = get_explainer("saliency", input_point=input_point).explain(tiny_adapter, batch).scores
    assert_close(scores, scorable_only(reference.norm(dim=-1), batch))


@pytest.mark.parametrize("input_point", ["embedding_output", "word_embeddings"])
def test_grad_x_input_matches_captum(tiny_adapter, tiny_examples, input_point):
    batch = tiny_adapter.make_batch(tiny_examples)
    reference = captum_reference(tiny_adapter, batch, "InputXGradient", input_point)
    scores = get_explainer("grad_x_input", input_point=input_point).explain(tiny_adapter, batch).scores
    assert_close(scores, scorable_only(reference.sum(-1), batch))


@pytest.mark.parametrize("input_point", ["embedding_output", "word_embeddings"])
@pytest.mark.parametrize("method", ["gausslegendre", "riemann_middle"])
def test_integrated_gradients_matches_captum(tiny_adapter, tiny_examples, method, input_point):
    batch = tiny_adapter.make_batch(tiny_examples)
    explainer = get_explainer("integrated_gradients", method=method, input_point=input_point)
    if input_point == "word_embeddings":
        baselines = explainer.baseline_inputs(tiny_adapter, batch)
    else:  # captum's layer variant takes baseline ids: the pad token at the scorable tokens
        baselines = torch.where(batch.scorable_mask, tiny_adapter.tokenizer.pad_token_id, batch.input_ids)
    reference = captum_reference(tiny_adapter, batch, "IntegratedGradients", input_point, baselines=baselines,
                                 n_steps=explainer.params["steps"], method=method)
    assert_close(explainer.explain(tiny_adapter, batch).scores, scorable_only(reference.sum(-1), batch))


def test_the_integrated_gradients_baseline_keeps_special_tokens(tiny_adapter, tiny_examples):
    batch = tiny_adapter.make_batch(tiny_examples)
    explainer = get_explainer("integrated_gradients", input_point="word_embeddings")
    embeddings = tiny_adapter.input_embeddings(batch.input_ids)
    baseline = explainer.baseline_inputs(tiny_adapter, batch)
    pad = tiny_adapter.input_embeddings(torch.tensor([tiny_adapter.tokenizer.pad_token_id]))[0]
    assert torch.equal(baseline[~batch.scorable_mask], embeddings[~batch.scorable_mask])
    assert torch.equal(baseline[batch.scorable_mask], pad.expand(int(batch.scorable_mask.sum()), -1))


def test_grad_x_input_scores_tokens_not_positions(tiny_adapter, tiny_examples):
    """The embedding layer normalises word + position + type, so the gradient at the word embedding is
    orthogonal to that sum and gradient x word embedding is minus gradient x (position + type): it scores
    positions. The default (the embedding layer's output) must not be determined that way."""
    batch = tiny_adapter.make_batch(tiny_examples)
    embeddings = tiny_adapter.embedding_module()
    positions = embeddings.position_embeddings(torch.arange(batch.input_ids.shape[1])).unsqueeze(0)
    types = embeddings.token_type_embeddings(torch.zeros_like(batch.input_ids))
    words = tiny_adapter.input_embeddings(batch.input_ids).detach()
    gradient = get_explainer("grad_x_input", input_point="word_embeddings").gradients(tiny_adapter, words, batch)
    position_part = scorable_only(-(gradient * (positions + types)).sum(-1), batch)

    at_words = get_explainer("grad_x_input", input_point="word_embeddings").explain(tiny_adapter, batch).scores
    assert torch.allclose(at_words, position_part, atol=1e-5 * float(at_words.abs().max()))  # the flaw, exactly
    default = get_explainer("grad_x_input").explain(tiny_adapter, batch).scores
    mask = batch.scorable_mask
    correlation = torch.corrcoef(torch.stack([default[mask], position_part[mask]]))[0, 1]
    assert abs(float(correlation)) < 0.9


@pytest.mark.parametrize("adapter_name", ["tiny", pytest.param("minilm", marks=pytest.mark.slow)])
def test_integrated_gradients_is_complete(request, adapter_name, tiny_examples):
    """sum_j IG_j = f(x) - f(baseline) for the predicted class's logit f, within 5% at 50 steps
    (plus 1e-7 for float32 rounding: on the random tiny model some differences are near 1e-5)."""
    adapter = request.getfixturevalue(f"{adapter_name}_adapter")
    batch = adapter.make_batch(tiny_examples)
    explainer = get_explainer("integrated_gradients", steps=50)
    with torch.no_grad():
        at_input = adapter.logits(batch.input_ids, batch.attention_mask)
        at_baseline = adapter.logits(batch.input_ids, batch.attention_mask,
                                     embedding_output=explainer.baseline_inputs(adapter, batch))
    rows = torch.arange(len(batch))
    difference = (at_input[rows, batch.targets] - at_baseline[rows, batch.targets]).double()
    total = explainer.explain(adapter, batch).scores.sum(1).double()
    assert difference.abs().max() > 1e-4  # there is something to attribute
    assert ((total - difference).abs() <= 0.05 * difference.abs() + 1e-7).all()
