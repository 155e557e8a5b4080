"""Known answers for the context-mixing explainers: value zeroing, ALTI, GlobEnc and attention flow."""

from __future__ import annotations

import functools

import numpy as np
import pytest
import torch

from effbench.errors import EffbenchError
from effbench.explainers import get_explainer
from effbench.explainers.alti import alti_contributions
from effbench.explainers.attention_flow import flow_scores
from effbench.explainers.layer_decomposition import attention_block_parts, layer_inputs_and_forward
from effbench.explainers.value_zeroing import ValueZeroing, normalise_rows
from effbench.types import Example
from tiny_architectures import ARCHITECTURES, DECODERS, LONG_TEXTS, MIXED_TEXTS, tiny_adapter_of

POST_NORM = ["bert", "distilbert", "albert", "deberta-v2"]


@functools.cache
def _adapter(model_type: str):
    return tiny_adapter_of(model_type)


def examples_of(texts):
    return [Example(id=f"ex-{i}", text=text, label=i % 2) for i, text in enumerate(texts)]


def block_outputs(adapter, batch) -> list[torch.Tensor]:
    """The attention block's actual output per layer, [B, N, D], read from the model's own modules."""
    architecture = adapter.architecture
    with torch.no_grad(), adapter.layer_calls() as layers:
        if architecture.norm_placement == "post":
            with adapter.layer_calls(architecture.attention_norm) as norms:
                adapter.forward(batch.input_ids, batch.attention_mask)
            return [output for _, output in norms]
        with adapter.layer_calls(architecture.output_projection) as projections:
            adapter.forward(batch.input_ids, batch.attention_mask)
    return [x + output for (x, _), (_, output) in zip(layers, projections)]


# ---- the decomposition behind ALTI and GlobEnc ---------------------------------------------------------


@pytest.mark.parametrize("model_type", ARCHITECTURES)
def test_the_parts_of_each_token_add_up_to_the_attention_block_output(model_type):
    adapter = _adapter(model_type)
    batch = adapter.make_batch(examples_of(MIXED_TEXTS))
    actual = block_outputs(adapter, batch)
    forward, layer_inputs, _ = layer_inputs_and_forward(adapter, batch.input_ids, batch.attention_mask)
    for example, n in enumerate(batch.attention_mask.sum(1).tolist()):
        for layer in range(adapter.num_layers):
            block = attention_block_parts(adapter, forward, layer_inputs[layer], layer, example, n)
            expected = actual[layer][example, :n].double()
            assert torch.allclose(block.parts.sum(1) + block.rest, expected, atol=1e-4 * float(expected.abs().max()))
            assert torch.equal(block.output, block.parts.sum(1) + block.rest)
            if adapter.architecture.causal:  # a token's output has no part from the tokens after it
                assert block.parts[torch.triu(torch.ones(n, n, dtype=torch.bool), 1)].abs().max() == 0


@pytest.mark.parametrize("model_type", ["bert", "albert", "gpt2", "llama"])
def test_alti_contributions_are_non_negative_rows_that_sum_to_one(model_type):
    adapter = _adapter(model_type)
    batch = adapter.make_batch(examples_of(LONG_TEXTS))
    forward, layer_inputs, _ = layer_inputs_and_forward(adapter, batch.input_ids, batch.attention_mask)
    n = int(batch.attention_mask[0].sum())
    for layer in range(adapter.num_layers):
        block = attention_block_parts(adapter, forward, layer_inputs[layer], layer, 0, n)
        contributions = alti_contributions(block.parts, block.output)
        assert contributions.min() >= 0
        assert torch.allclose(contributions.sum(-1), torch.ones(n, dtype=torch.float64), atol=1e-12)
        assert (contributions > 0).sum() > 2 * n  # tokens mix: more than one or two contributors per row


def test_alti_contributions_by_hand():
    # y = T(x_0) + T(x_1): ||y||_1 = 4; distances 1 (y - T(x_0) = [1, 0]) and 3; contributions 3 and 1
    parts = torch.tensor([[[2.0, 1.0], [1.0, 0.0]]], dtype=torch.float64)
    output = parts.sum(1)
    assert torch.allclose(alti_contributions(parts, output), torch.tensor([[0.75, 0.25]], dtype=torch.float64))
    # a part pointing away from the output contributes nothing
    opposed = torch.tensor([[[3.0, 3.0], [-1.0, -1.0]]], dtype=torch.float64)
    assert torch.allclose(alti_contributions(opposed, opposed.sum(1)), torch.tensor([[1.0, 0.0]], dtype=torch.float64))


def one_token_override(token: int):
    """Every query attends to `token` alone, in every layer and head."""
    def override(layer: int, probs: torch.Tensor) -> torch.Tensor:
        focused = torch.zeros_like(probs)
        focused[..., token] = 1.0
        return focused
    return override


@pytest.mark.parametrize("name", ["alti", "globenc"])
def test_when_every_query_attends_to_one_token_only_that_token_scores(name):
    adapter = _adapter("bert")
    batch = adapter.make_batch(examples_of(MIXED_TEXTS[1:2]))
    token = 3
    with adapter.attention_override(one_token_override(token)):
        scores = get_explainer(name).explain(adapter, batch).scores[0]
    assert scores[token] > 0.05
    others = torch.ones_like(scores, dtype=torch.bool)
    others[token] = False
    assert scores[others].abs().max() == 0
    unfocused = get_explainer(name).explain(adapter, batch).scores[0]
    assert (unfocused[others] > 0).sum() > 3


@pytest.mark.parametrize("model_type", ["modernbert", *DECODERS])
def test_globenc_refuses_pre_norm_models_in_one_line(model_type):
    adapter = _adapter(model_type)
    with pytest.raises(EffbenchError, match=f"globenc does not support .*{model_type}.*pre-norm") as refused:
        get_explainer("globenc").explain(adapter, adapter.make_batch(examples_of(MIXED_TEXTS[:2])))
    assert "\n" not in str(refused.value)


def test_alti_refuses_an_architecture_whose_norms_are_not_described(monkeypatch):
    import dataclasses

    adapter = _adapter("bert")
    monkeypatch.setattr(adapter, "architecture", dataclasses.replace(adapter.architecture, norm_placement=None))
    with pytest.raises(EffbenchError, match="alti does not support BERT family .*not described"):
        get_explainer("alti").explain(adapter, adapter.make_batch(examples_of(MIXED_TEXTS[:2])))


@pytest.mark.parametrize("model_type", POST_NORM)
def test_globenc_layers_add_up_through_the_output_norm_when_the_ffn_is_silent(model_type):
    """With the FFN's output weights and biases zero, the output LayerNorm's input is the attention block's
    output, and the parts GlobEnc takes norms of add up to the layer output (less the biases' share)."""
    from effbench.explainers.layer_decomposition import linearised_layer_norm

    adapter = tiny_adapter_of(model_type)
    ffn_output = {"bert": "output.dense", "distilbert": "ffn.lin2", "albert": "ffn_output",
                  "deberta-v2": "output.dense"}[model_type]
    for layer in range(adapter.num_layers):
        module = adapter.layer_submodule(layer, ffn_output)
        torch.nn.init.zeros_(module.weight)
        torch.nn.init.zeros_(module.bias)
    batch = adapter.make_batch(examples_of(MIXED_TEXTS[1:2]))
    output_norm = adapter.architecture.output_norm
    forward, layer_inputs, norm_inputs = layer_inputs_and_forward(adapter, batch.input_ids, batch.attention_mask, output_norm)
    with torch.no_grad(), adapter.layer_calls(output_norm) as norms:
        adapter.forward(batch.input_ids, batch.attention_mask)
    n = int(batch.attention_mask[0].sum())
    for layer in range(adapter.num_layers):
        block = attention_block_parts(adapter, forward, layer_inputs[layer], layer, 0, n)
        norm = adapter.layer_submodule(layer, output_norm)
        total = norm_inputs[layer][0, :n].double()
        assert torch.allclose(total, block.output, atol=1e-5 * float(total.abs().max()))
        through = linearised_layer_norm(norm, block.parts, total).sum(1)
        rest = linearised_layer_norm(norm, block.rest, total) + norm.bias.detach().double()
        expected = norms[layer][1][0, :n].double()
        assert torch.allclose(through + rest, expected, atol=1e-4 * float(expected.abs().max()))


# ---- value zeroing ---------------------------------------------------------------------------------------


def zeroed_layer_outputs(adapter, input_ids: torch.Tensor, layer: int, token: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Layer `layer`'s outputs [n, D], original and with token's value vector zeroed in that layer only:
    an ordinary forward pass, no input reset."""
    def zero_column(at: int, probs: torch.Tensor) -> torch.Tensor:
        if at != layer:
            return probs
        probs = probs.clone()
        probs[..., token] = 0.0
        return probs

    ids = input_ids.unsqueeze(0)
    with torch.no_grad():
        with adapter.layer_calls() as original:
            adapter.logits(ids, torch.ones_like(ids))
        with adapter.attention_override(zero_column), adapter.layer_calls() as zeroed:
            adapter.logits(ids, torch.ones_like(ids))
    return original[layer][1][0].double(), zeroed[layer][1][0].double()


@pytest.mark.parametrize("model_type", ["bert", "albert", "deberta-v2", "modernbert", "gpt2", "mistral"])
def test_value_zeroing_matrices_equal_one_ordinary_pass_per_zeroed_token(model_type):
    adapter = _adapter(model_type)
    batch = adapter.make_batch(examples_of(MIXED_TEXTS[1:2]))
    n = int(batch.attention_mask[0].sum())
    ids = batch.input_ids[0, :n]
    matrices = ValueZeroing(tokens_per_pass=3 * n).mixing_matrices(adapter, ids)  # chunks of 2 zeroed copies
    for layer in range(adapter.num_layers):
        distances = torch.zeros((n, n), dtype=torch.float64)
        for token in range(n):
            original, zeroed = zeroed_layer_outputs(adapter, ids, layer, token)
            distances[:, token] = 1 - torch.nn.functional.cosine_similarity(zeroed, original, dim=-1)
        assert torch.allclose(matrices[layer], normalise_rows(distances), atol=1e-5)
        assert torch.allclose(matrices[layer].sum(-1), torch.ones(n, dtype=torch.float64))
    if adapter.architecture.causal:  # zeroing a later token's value changes no earlier output
        assert matrices[0][torch.triu(torch.ones(n, n, dtype=torch.bool), 1)].abs().max() < 1e-9


def test_zeroing_attention_columns_is_zeroing_the_value_vector():
    adapter = _adapter("bert")
    batch = adapter.make_batch(examples_of(MIXED_TEXTS[1:2]))
    ids = batch.input_ids[0]
    layer, token = 1, 4
    _, by_column = zeroed_layer_outputs(adapter, ids, layer, token)

    def zero_value(module, args, output):
        output = output.clone()
        output[:, token] = 0.0
        return output

    handle = adapter.layer_submodule(layer, "attention.self.value").register_forward_hook(zero_value)
    try:
        with torch.no_grad(), adapter.layer_calls() as calls:
            adapter.logits(ids.unsqueeze(0), torch.ones_like(ids.unsqueeze(0)))
    finally:
        handle.remove()
    assert torch.allclose(calls[layer][1][0].double(), by_column, atol=1e-6)


def ignore_token_override(token: int):
    """No query attends to `token`: its column is zeroed and the rows renormalised, in every layer."""
    def override(layer: int, probs: torch.Tensor) -> torch.Tensor:
        probs = probs.clone()
        probs[..., token] = 0.0
        return probs / probs.sum(-1, keepdim=True)
    return override


@pytest.mark.parametrize("aggregation", ["rollout", "last"])
def test_value_zeroing_gives_a_token_no_query_attends_to_zero(aggregation):
    adapter = _adapter("bert")
    batch = adapter.make_batch(examples_of(MIXED_TEXTS[1:2]))
    token = 3
    explainer = get_explainer("value_zeroing", aggregation=aggregation)
    plain = explainer.explain(adapter, batch).scores[0]
    with adapter.attention_override(ignore_token_override(token)):
        ignored = explainer.explain(adapter, batch).scores[0]
    assert plain[token] > 1e-3
    assert abs(float(ignored[token])) < 1e-9
    assert (ignored[batch.scorable_mask[0]] > 0).sum() >= 3  # the other tokens still score


def test_nested_attention_overrides_compose_outermost_first():
    adapter = _adapter("bert")
    batch = adapter.make_batch(examples_of(MIXED_TEXTS[1:2]))
    with torch.no_grad(), adapter.attention_override(ignore_token_override(3)), adapter.attention_override(ignore_token_override(4)):
        forward = adapter.forward(batch.input_ids, batch.attention_mask)
    for attention in forward.attentions:
        assert attention[..., 3].abs().max() == 0 and attention[..., 4].abs().max() == 0


# ---- attention flow --------------------------------------------------------------------------------------


def test_attention_flow_on_a_two_layer_graph_by_hand():
    # capacities of (l, j) -> (l + 1, i) are mixed[l][i, j]; readout token 0 at the top
    mixed = [np.array([[0.6, 0.4], [0.1, 0.9]]), np.array([[0.5, 0.5], [0.2, 0.8]])]
    # from token 0: via (1, 0) min(0.6, 0.5) and via (1, 1) min(0.1, 0.5); from token 1: min(0.4, 0.5) + min(0.9, 0.5)
    assert np.allclose(flow_scores(mixed, 0), [0.6, 0.9], atol=1e-8)
    # rollout of the same matrices would give [0.35, 0.65]: flow is not rollout
    assert np.allclose((mixed[1] @ mixed[0])[0], [0.35, 0.65])


def test_attention_flow_matches_networkx_on_a_tiny_model():
    nx = pytest.importorskip("networkx")
    adapter = _adapter("bert")
    batch = adapter.make_batch(examples_of(MIXED_TEXTS[1:2]))
    scores = get_explainer("attention_flow").explain(adapter, batch).scores[0].double()
    forward = adapter.batch_forward(batch)
    n = int(batch.attention_mask[0].sum())
    graph = nx.DiGraph()
    for layer, attention in enumerate(forward.attentions):
        mixed = 0.5 * attention[0, :, :n, :n].double().mean(0).numpy() + 0.5 * np.eye(n)
        for i in range(n):
            for j in range(n):
                graph.add_edge((layer, j), (layer + 1, i), capacity=float(mixed[i, j]))
    top = (adapter.num_layers, 0)
    for token in torch.nonzero(batch.scorable_mask[0]).flatten().tolist():
        assert abs(nx.maximum_flow_value(graph, (0, token), top) - float(scores[token])) < 1e-6


def test_attention_flow_refuses_inputs_above_its_limit():
    adapter = _adapter("bert")
    batch = adapter.make_batch(examples_of(LONG_TEXTS[:1]))
    with pytest.raises(EffbenchError, match="attention_flow refuses an input of .* tokens \\(max_tokens=10\\)"):
        get_explainer("attention_flow", max_tokens=10).explain(adapter, batch)
