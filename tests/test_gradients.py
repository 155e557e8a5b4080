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


def scorable_only(values: torch.Tensor, batch) -> torch.Tensor:
    return torch.where(batch.scorable_mask, values.detach().float().cpu(), torch.zeros(()))


def test_saliency_matches_captum(tiny_adapter, tiny_examples):
    batch = tiny_adapter.make_batch(tiny_examples)
    embeddings = tiny_adapter.input_embeddings(batch.input_ids).detach().requires_grad_(True)
    reference = captum_attr.Saliency(forward_function(tiny_adapter)).attribute(
        embeddings, target=batch.targets, abs=True, additional_forward_args=(batch.attention_mask,))
    expected = scorable_only(reference.norm(dim=-1), batch)
    scores = get_explainer("saliency").explain(tiny_adapter, batch).scores
    assert expected.abs().max() > 0
    assert torch.allclose(scores, expected, rtol=0, atol=1e-4 * float(expected.abs().max()))


def test_grad_x_input_matches_captum(tiny_adapter, tiny_examples):
    batch = tiny_adapter.make_batch(tiny_examples)
    embeddings = tiny_adapter.input_embeddings(batch.input_ids).detach().requires_grad_(True)
    reference = captum_attr.InputXGradient(forward_function(tiny_adapter)).attribute(
        embeddings, target=batch.targets, additional_forward_args=(batch.attention_mask,))
    expected = scorable_only(reference.sum(-1), batch)
    scores = get_explainer("grad_x_input").explain(tiny_adapter, batch).scores
    assert torch.allclose(scores, expected, rtol=0, atol=1e-4 * float(expected.abs().max()))


@pytest.mark.parametrize("method", ["gausslegendre", "riemann_middle"])
def test_integrated_gradients_matches_captum(tiny_adapter, tiny_examples, method):
    batch = tiny_adapter.make_batch(tiny_examples)
    explainer = get_explainer("integrated_gradients", method=method)
    embeddings = tiny_adapter.input_embeddings(batch.input_ids).detach()
    baseline = explainer.baseline_embeddings(tiny_adapter, batch)
    reference = captum_attr.IntegratedGradients(forward_function(tiny_adapter)).attribute(
        embeddings, baselines=baseline, target=batch.targets, n_steps=explainer.params["steps"], method=method,
        additional_forward_args=(batch.attention_mask,))
    expected = scorable_only(reference.sum(-1), batch)
    scores = explainer.explain(tiny_adapter, batch).scores
    assert expected.abs().max() > 0
    assert torch.allclose(scores, expected, rtol=0, atol=1e-4 * float(expected.abs().max()))


def test_the_integrated_gradients_baseline_keeps_special_tokens(tiny_adapter, tiny_examples):
    batch = tiny_adapter.make_batch(tiny_examples)
    explainer = get_explainer("integrated_gradients")
    embeddings = tiny_adapter.input_embeddings(batch.input_ids)
    baseline = explainer.baseline_embeddings(tiny_adapter, batch)
    pad = tiny_adapter.input_embeddings(torch.tensor([tiny_adapter.tokenizer.pad_token_id]))[0]
    assert torch.equal(baseline[~batch.scorable_mask], embeddings[~batch.scorable_mask])
    assert torch.equal(baseline[batch.scorable_mask], pad.expand(int(batch.scorable_mask.sum()), -1))


@pytest.mark.parametrize("adapter_name", ["tiny", pytest.param("minilm", marks=pytest.mark.slow)])
def test_integrated_gradients_is_complete(request, adapter_name, tiny_examples):
    """sum_j IG_j = f(x) - f(baseline) for the predicted class's logit f, within 5% at 50 steps
    (plus 1e-7 for float32 rounding: on the random tiny model some differences are near 1e-5)."""
    adapter = request.getfixturevalue(f"{adapter_name}_adapter")
    batch = adapter.make_batch(tiny_examples)
    explainer = get_explainer("integrated_gradients", steps=50)
    with torch.no_grad():
        at_input = adapter.logits(batch.input_ids, batch.attention_mask)
        at_baseline = adapter.logits(None, batch.attention_mask, inputs_embeds=explainer.baseline_embeddings(adapter, batch))
    rows = torch.arange(len(batch))
    difference = (at_input[rows, batch.targets] - at_baseline[rows, batch.targets]).double()
    total = explainer.explain(adapter, batch).scores.sum(1).double()
    assert difference.abs().max() > 1e-4  # there is something to attribute
    assert ((total - difference).abs() <= 0.05 * difference.abs() + 1e-7).all()
