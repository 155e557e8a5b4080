"""`deeplift`: what captum's rules reach in a transformer, known answers, and its baselines."""

from __future__ import annotations

import functools

import pytest
import torch
from tiny_architectures import MIXED_TEXTS, tiny_adapter_of

from effbench.errors import EffbenchError
from effbench.explainers import get_explainer
from effbench.explainers.gradients import input_vectors, target_logit_gradients
from effbench.types import Example

captum_attr = pytest.importorskip("captum.attr")


@functools.cache
def adapter_of(model_type: str):
    return tiny_adapter_of(model_type)


def batch_of(adapter):
    return adapter.make_batch([Example(id=f"ex-{i}", text=text, label=0) for i, text in enumerate(MIXED_TEXTS)])


def on_scorable(values: torch.Tensor, batch) -> torch.Tensor:
    return torch.where(batch.scorable_mask, values.detach().float().cpu(), torch.zeros(()))


def gradient_times_difference(adapter, batch, inputs, baselines) -> torch.Tensor:
    """sum_d (x - x')_d (d logit_y / d x)_d at x: DeepLIFT where no module has a rule of its own."""
    gradients = target_logit_gradients(adapter, inputs, batch.input_ids, batch.attention_mask, batch.targets,
                                       "embedding_output")
    return on_scorable(((inputs - baselines) * gradients).sum(-1), batch)


def assert_close(scores: torch.Tensor, expected: torch.Tensor) -> None:
    assert expected.abs().max() > 1e-3
    assert torch.allclose(scores, expected, rtol=0, atol=1e-4 * float(expected.abs().max()))


def test_deeplift_rescales_at_the_bert_poolers_tanh_and_takes_the_gradient_elsewhere():
    adapter = adapter_of("bert")
    batch = batch_of(adapter)
    explainer = get_explainer("deeplift")
    inputs = input_vectors(adapter, batch.input_ids, batch.attention_mask, "embedding_output")
    baselines = explainer.baseline_inputs(adapter, batch)
    pre_activations = []
    handle = adapter.model.bert.pooler.dense.register_forward_hook(lambda module, args, output: pre_activations.append(output))
    try:
        with torch.no_grad():
            adapter.logits(batch.input_ids, batch.attention_mask, embedding_output=baselines)
        points = inputs.clone().requires_grad_(True)
        adapter.logits(batch.input_ids, batch.attention_mask, embedding_output=points)
    finally:
        handle.remove()
    reference, actual = pre_activations
    # the Rescale multiplier of tanh, then the classifier's weights of the target: d logit_y / d z, held fixed
    multiplier = (torch.tanh(actual) - torch.tanh(reference)) / (actual - reference)
    weights = adapter.model.classifier.weight[batch.targets]
    (gradients,) = torch.autograd.grad((weights * multiplier.detach() * actual).sum(), points)
    expected = on_scorable(((inputs - baselines) * gradients).sum(-1), batch)
    scores = explainer.explain(adapter, batch).scores
    assert_close(scores, expected)
    # the rule changes the numbers: plain gradient x (input - baseline) differs
    plain = gradient_times_difference(adapter, batch, inputs, baselines)
    assert (scores - plain).abs().max() > 0.05 * scores.abs().max()


@pytest.mark.parametrize("model_type", ["roberta", "llama"])
def test_deeplift_is_gradient_times_the_difference_where_no_module_has_a_rule(model_type):
    adapter = adapter_of(model_type)
    batch = batch_of(adapter)
    explainer = get_explainer("deeplift")
    inputs = input_vectors(adapter, batch.input_ids, batch.attention_mask, "embedding_output")
    expected = gradient_times_difference(adapter, batch, inputs, explainer.baseline_inputs(adapter, batch))
    assert_close(explainer.explain(adapter, batch).scores, expected)


def test_deeplift_equals_captums_layer_deeplift_on_the_embedding_layer():
    adapter = adapter_of("bert")
    batch = batch_of(adapter)

    class Logits(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.classifier = adapter.model

        def forward(self, input_ids, attention_mask):
            return adapter.logits(input_ids, attention_mask)

    baseline_ids = torch.where(batch.scorable_mask, adapter.tokenizer.pad_token_id, batch.input_ids)
    reference = captum_attr.LayerDeepLift(Logits(), adapter.embedding_module()).attribute(
        batch.input_ids, baselines=baseline_ids, target=batch.targets, additional_forward_args=(batch.attention_mask,))
    assert_close(get_explainer("deeplift").explain(adapter, batch).scores, on_scorable(reference.sum(-1), batch))


def test_deeplift_baselines():
    adapter = adapter_of("bert")
    batch = batch_of(adapter)
    inputs = input_vectors(adapter, batch.input_ids, batch.attention_mask, "embedding_output")
    zero = get_explainer("deeplift", baseline="zero").baseline_inputs(adapter, batch)
    assert (zero[batch.scorable_mask] == 0).all() and torch.equal(zero[~batch.scorable_mask], inputs[~batch.scorable_mask])
    masked_ids = torch.where(batch.scorable_mask, adapter.tokenizer.mask_token_id, batch.input_ids)
    mask = get_explainer("deeplift", baseline="mask").baseline_inputs(adapter, batch)
    assert torch.equal(mask, input_vectors(adapter, masked_ids, batch.attention_mask, "embedding_output"))
    scores = {name: get_explainer("deeplift", baseline=name).explain(adapter, batch).scores for name in ("pad", "mask", "zero")}
    assert not torch.allclose(scores["pad"], scores["mask"]) and not torch.allclose(scores["pad"], scores["zero"])
    with pytest.raises(EffbenchError, match="baseline 'mask' needs a mask token"):
        get_explainer("deeplift", baseline="mask").explain(adapter_of("gpt2"), batch_of(adapter_of("gpt2")))
