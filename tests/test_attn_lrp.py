"""AttnLRP: its rules leave the forward pass alone, and relevance is accounted for exactly."""

from __future__ import annotations

import functools

import pytest
import torch

from effbench.errors import EffbenchError
from effbench.explainers import get_explainer
from effbench.explainers.attn_lrp import lrp_rules
from effbench.models.adapter import ClassifierAdapter
from effbench.types import Example
from tiny_architectures import MIXED_TEXTS, tiny_classifier

SUPPORTED = ["bert", "electra", "albert", "gpt2", "llama", "qwen2", "mistral"]
REFUSED = ["roberta", "xlm-roberta", "distilbert", "deberta-v2", "modernbert"]


@functools.cache
def float64_adapter(model_type: str) -> ClassifierAdapter:
    model, tokenizer = tiny_classifier(model_type)
    return ClassifierAdapter(model.double(), tokenizer, max_length=128, name=f"tiny-{model_type}-float64")


# two short examples (a padded batch) and a long one alone (past Mistral's window; float64 Mistral gives
# NaN logits for padded rows of a batch whose longest row exceeds its window, so the long one is alone)
TEXTS = {"padded": MIXED_TEXTS[:2], "long": MIXED_TEXTS[2:3]}
# the Llama family's RMSNorm computes in float32 whatever the model's dtype, so sums agree to ~1e-7 there
TOLERANCE = 1e-6


def batch_of(adapter, texts=MIXED_TEXTS[:2]):
    return adapter.make_batch([Example(id=f"ex-{i}", text=text, label=0) for i, text in enumerate(texts)])


def relevance_accounts(adapter, batch, *, rules: bool = True):
    """(the target logits' sum, the input tokens' relevance, the biases' share, the softmax rows' share),
    summed over the batch, from one backward pass (under AttnLRP's rules, or plain gradients)."""
    absorbed = []

    def watch_probabilities(layer: int, probs: torch.Tensor) -> torch.Tensor:
        def softmax_share(gradient: torch.Tensor) -> None:
            s, g = probs.detach(), gradient
            mean = (s * g).sum(-1, keepdim=True)
            # the uniform rule sends half of A V's relevance to A; the softmax rule passes on
            # x * (R - s sum R) of it, and x = log s + const on the row's keys
            absorbed.append(0.5 * ((s * g).sum() - (torch.xlogy(s, s) * (g - mean)).sum()))
        probs.register_hook(softmax_share)
        return probs

    inputs = adapter.embedding_output(batch.input_ids, batch.attention_mask).requires_grad_(True)
    biases = [parameter for name, parameter in adapter.model.named_parameters() if name.endswith("bias")]
    rules_context = lrp_rules(adapter) if rules else torch.enable_grad()
    with torch.enable_grad(), rules_context, adapter.attention_override(watch_probabilities):
        logits = adapter.logits(batch.input_ids, batch.attention_mask, embedding_output=inputs)
        target = logits.gather(1, batch.targets.view(-1, 1)).sum()
        gradients = torch.autograd.grad(target, [inputs, *biases], allow_unused=True)
    bias_share = sum(float((g * b.detach()).sum()) for g, b in zip(gradients[1:], biases) if g is not None)
    return float(target), float((gradients[0] * inputs.detach()).sum()), bias_share, float(sum(absorbed))


@pytest.mark.parametrize("texts", TEXTS)
@pytest.mark.parametrize("model_type", SUPPORTED)
def test_relevance_is_accounted_for_exactly(model_type, texts):
    """Inputs + biases + softmax rows = the target logit: every other rule (norms, activations, the uniform
    rule of Q K^T, A V and gated MLPs) conserves relevance, so a wrong rule breaks the sum."""
    adapter = float64_adapter(model_type)
    batch = batch_of(adapter, TEXTS[texts])
    target, inputs, biases, softmax = relevance_accounts(adapter, batch)
    assert abs(inputs) > 0.05 * abs(target)
    assert abs(inputs + biases + softmax - target) <= TOLERANCE * max(1.0, abs(target))
    # the explainer's scores are those input relevances
    scores = get_explainer("attn_lrp").scores(adapter, batch)
    assert abs(float(scores.sum()) - inputs) <= TOLERANCE * max(1.0, abs(target))


@pytest.mark.parametrize("model_type", ["bert", "llama"])
def test_plain_gradients_do_not_balance_the_same_accounts(model_type):
    adapter = float64_adapter(model_type)
    target, inputs, biases, softmax = relevance_accounts(adapter, batch_of(adapter), rules=False)
    assert abs(inputs + biases + softmax - target) > 1e-3 * max(1.0, abs(target))


def test_without_biases_the_inputs_and_softmax_rows_hold_all_the_relevance():
    adapter = float64_adapter("llama")  # the tiny Llama has no bias anywhere
    assert not [name for name, _ in adapter.model.named_parameters() if name.endswith("bias")]
    target, inputs, biases, softmax = relevance_accounts(adapter, batch_of(adapter))
    assert biases == 0
    assert abs(inputs + softmax - target) <= TOLERANCE * max(1.0, abs(target))


@pytest.mark.parametrize("model_type", SUPPORTED)
def test_the_rules_change_no_logit_and_are_removed_afterwards(model_type):
    adapter = float64_adapter(model_type)
    batch = batch_of(adapter)
    with torch.no_grad():
        before = adapter.logits(batch.input_ids, batch.attention_mask)
        with lrp_rules(adapter):
            during = adapter.logits(batch.input_ids, batch.attention_mask)
        after = adapter.logits(batch.input_ids, batch.attention_mask)
    assert torch.allclose(during, before, rtol=0, atol=1e-10 * float(before.abs().max()))
    assert torch.equal(after, before)
    assert not [module for module in adapter.model.modules() if "forward" in vars(module)]
    inputs = adapter.embedding_output(batch.input_ids, batch.attention_mask).requires_grad_(True)
    with torch.enable_grad():
        plain = adapter.logits(batch.input_ids, batch.attention_mask, embedding_output=inputs)
        (gradient,) = torch.autograd.grad(plain[:, 0].sum(), inputs)
    with torch.enable_grad(), lrp_rules(adapter):
        ruled = adapter.logits(batch.input_ids, batch.attention_mask, embedding_output=inputs)
        (modified,) = torch.autograd.grad(ruled[:, 0].sum(), inputs)
    assert not torch.allclose(gradient, modified, atol=1e-6)  # the backward pass did change


@pytest.mark.parametrize("model_type", REFUSED)
def test_attn_lrp_refuses_what_its_rules_cannot_reach_in_one_line(model_type):
    model, tokenizer = tiny_classifier(model_type)
    adapter = ClassifierAdapter(model, tokenizer, max_length=128, name=f"tiny-{model_type}")
    with pytest.raises(EffbenchError, match=f"attn_lrp does not support .*\\({model_type}\\): ") as refused:
        get_explainer("attn_lrp").explain(adapter, batch_of(adapter))
    assert "\n" not in str(refused.value)
