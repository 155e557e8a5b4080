"""Every registered explainer (built-in or entry point) keeps the contract of effbench.testing."""

from __future__ import annotations

import sys
import types
from importlib.metadata import EntryPoint

import pytest
import torch

from effbench.errors import EffbenchError, UnknownNameError
from effbench.explainers import BUILTIN_EXPLAINERS, explainers, get_explainer
from effbench.explainers.base import Explainer
from effbench.registry import Registry
from effbench.testing import check_explainer_contract
from effbench.types import Example

EXTRA_TEXTS = [
    "smartly written",
    "a warm funny film about friendship , loss and starting over again",
    "the acting is worse than the script , and the script is lazy",
    "i wanted to like it",
]


@pytest.fixture()
def eight_examples(tiny_examples):
    """Eight examples of different lengths, one longer than 33 tokens."""
    extra = [Example(id=f"extra-{i}", text=text, label=i % 2) for i, text in enumerate(EXTRA_TEXTS)]
    return list(tiny_examples) + extra


class TokenPosition(Explainer):
    """A third-party explainer for the tests: the score of a token is its position."""

    name = "token_position"
    version = 1
    citation = "@misc{token_position, title = {Token position}}"

    def scores(self, model, batch):
        return torch.arange(batch.input_ids.shape[1], dtype=torch.float32).expand(batch.input_ids.shape).clone()


# an explainer that reads a task's planted evidence (oracle) cannot run on these examples: its own test gives it some
EVIDENCE_FREE_EXPLAINERS = [name for name in explainers.names() if not getattr(explainers.get(name), "needs_evidence", False)]


@pytest.mark.parametrize("name", EVIDENCE_FREE_EXPLAINERS)
def test_explainer_keeps_the_contract(name, tiny_adapter, eight_examples):
    check_explainer_contract(get_explainer(name), tiny_adapter, eight_examples)


def test_every_builtin_is_registered_lazily_and_named_as_registered():
    assert set(BUILTIN_EXPLAINERS) <= set(explainers.names())
    for name in BUILTIN_EXPLAINERS:
        assert explainers.is_builtin(name)
        assert explainers.get(name).name == name


def test_contract_catches_an_explainer_that_scores_special_tokens(tiny_adapter, eight_examples):
    class Leaky(TokenPosition):
        def explain(self, model, batch):  # skips the zeroing the base class does
            from effbench.types import Attribution

            return Attribution(self.scores(model, batch), self.name, self.version, dict(self.params))

    with pytest.raises(AssertionError, match="zero outside the scorable tokens"):
        check_explainer_contract(Leaky(), tiny_adapter, eight_examples)


def test_contract_catches_an_explainer_that_depends_on_the_batch(tiny_adapter, eight_examples):
    class BatchDependent(TokenPosition):
        def scores(self, model, batch):
            return super().scores(model, batch) * len(batch)

    with pytest.raises(AssertionError, match="scored alone differs"):
        check_explainer_contract(BatchDependent(), tiny_adapter, eight_examples)


def test_contract_catches_an_explainer_that_uses_the_global_random_state(tiny_adapter, eight_examples):
    class Unseeded(TokenPosition):
        def scores(self, model, batch):
            return torch.rand(batch.input_ids.shape)

    with pytest.raises(AssertionError, match="second call gave different scores"):
        check_explainer_contract(Unseeded(), tiny_adapter, eight_examples)


def _registry_with_entry_points(monkeypatch, points: list[EntryPoint]) -> Registry:
    monkeypatch.setattr("effbench.registry.entry_points", lambda group: [p for p in points if p.group == group])
    registry = Registry("explainer", entry_point_group="effbench.explainers")
    for name, target in BUILTIN_EXPLAINERS.items():
        registry.register(name, target, builtin=True)
    return registry


@pytest.fixture()
def third_party_module(monkeypatch):
    module = types.ModuleType("third_party_explainers")
    module.TokenPosition = TokenPosition
    monkeypatch.setitem(sys.modules, "third_party_explainers", module)
    return module


def test_an_entry_point_explainer_is_listed_and_keeps_the_contract(monkeypatch, third_party_module, tiny_adapter, eight_examples):
    point = EntryPoint(name="token_position", value="third_party_explainers:TokenPosition", group="effbench.explainers")
    registry = _registry_with_entry_points(monkeypatch, [point])
    assert "token_position" in registry.names()
    assert not registry.is_builtin("token_position")
    explainer = registry.get("token_position")()
    check_explainer_contract(explainer, tiny_adapter, eight_examples)


def test_an_entry_point_that_clashes_with_a_builtin_is_an_error(monkeypatch, third_party_module):
    point = EntryPoint(name="saliency", value="third_party_explainers:TokenPosition", group="effbench.explainers")
    registry = _registry_with_entry_points(monkeypatch, [point])
    with pytest.raises(EffbenchError, match="clashes with a built-in"):
        registry.names()


def test_a_module_class_name_loads_a_third_party_explainer(third_party_module):
    explainer = get_explainer("third_party_explainers:TokenPosition")
    assert isinstance(explainer, TokenPosition)


def test_an_unknown_name_suggests_the_closest(tiny_adapter):
    with pytest.raises(UnknownNameError, match="Did you mean 'saliency'"):
        get_explainer("salency")


@pytest.mark.parametrize(("name", "params", "message"), [
    ("random", {"seed": -1}, "seed"),
    ("random", {"sed": 1}, "has no parameter sed"),
    ("raw_attention", {"heads": "max"}, "heads"),
    ("raw_attention", {"heads": [0, 0]}, "repeats a head"),
    ("raw_attention", {"layer": "last"}, "layer"),
    ("efficient_attention", {"canonical": "dense"}, "canonical"),
    ("efficient_attention", {"readout": "mean"}, "readout"),
    ("efficient_attention", {"tolerance": 0}, "tolerance"),
    ("integrated_gradients", {"steps": 0}, "steps"),
    ("integrated_gradients", {"method": "simpson"}, "method"),
    ("leave_one_out", {"perturbation": "blank"}, "perturbation"),
    ("attention_norm", {"heads": "mean"}, "heads"),
    ("value_zeroing", {"aggregation": "mean"}, "aggregation"),
    ("value_zeroing", {"tokens_per_pass": 0}, "tokens_per_pass"),
    ("attention_flow", {"max_tokens": 0}, "max_tokens"),
    ("alti", {"layer": -1}, "has no parameter layer"),
    ("lime", {"samples": 1}, "samples=1 is not allowed; use an integer of at least 2"),
    ("lime", {"kernel_width": 0}, "kernel_width"),
    ("lime", {"alpha": -1.0}, "alpha"),
    ("lime", {"perturbation": "blank"}, "perturbation"),
    ("kernel_shap", {"samples": 0}, "samples"),
    ("kernel_shap", {"samples": 100.0}, "samples"),
    ("kernel_shap", {"seed": -1}, "seed"),
    ("deeplift", {"baseline": "unk"}, "baseline"),
])
def test_a_bad_parameter_is_a_clear_error(name, params, message):
    with pytest.raises(EffbenchError, match=message):
        get_explainer(name, **params)


def test_a_head_or_layer_out_of_range_is_a_clear_error(tiny_adapter, tiny_examples):
    batch = tiny_adapter.make_batch(tiny_examples)
    with pytest.raises(EffbenchError, match="out of range: the model has 4 heads"):
        get_explainer("raw_attention", heads=[4]).explain(tiny_adapter, batch)
    with pytest.raises(EffbenchError, match="out of range: the model has 2 layers"):
        get_explainer("efficient_attention", layer=2).explain(tiny_adapter, batch)


def test_random_scores_depend_on_the_seed_and_not_on_the_batch(tiny_adapter, eight_examples):
    batch = tiny_adapter.make_batch(eight_examples)
    first = get_explainer("random", seed=0).explain(tiny_adapter, batch).scores
    other = get_explainer("random", seed=1).explain(tiny_adapter, batch).scores
    assert not torch.equal(first, other)
    reordered = tiny_adapter.make_batch(eight_examples[::-1])
    assert torch.equal(get_explainer("random", seed=0).explain(tiny_adapter, reordered).scores[-1, :first.shape[1]], first[0])


def test_explainers_never_normalise(tiny_adapter, tiny_examples):
    batch = tiny_adapter.make_batch(tiny_examples)
    scores = get_explainer("raw_attention").explain(tiny_adapter, batch).scores
    probs = tiny_adapter.forward(batch.input_ids, batch.attention_mask).attentions[-1][:, :, 0, :].mean(1)
    expected = torch.where(batch.scorable_mask, probs, torch.zeros(()))
    assert torch.allclose(scores, expected, atol=1e-7)
    assert (scores.sum(1) < 1).all()  # the special tokens' share is not redistributed


# ---- known answers per method ------------------------------------------------------------------------


def test_attention_rollout_is_the_product_of_mixed_attention_matrices(tiny_adapter, tiny_examples):
    batch = tiny_adapter.make_batch(tiny_examples)
    scores = get_explainer("attention_rollout").explain(tiny_adapter, batch).scores
    with torch.no_grad():
        attentions = tiny_adapter.forward(batch.input_ids, batch.attention_mask).attentions
    for row, n in enumerate(batch.attention_mask.sum(1).tolist()):
        product = torch.eye(n, dtype=torch.float64)
        for layer_attention in attentions:
            product = (0.5 * torch.eye(n) + 0.5 * layer_attention[row, :, :n, :n].double().mean(0)) @ product
        expected = torch.where(batch.scorable_mask[row, :n], product[0], torch.zeros((), dtype=torch.float64))
        assert torch.allclose(scores[row, :n].double(), expected, atol=1e-6)


def test_attention_norm_weights_each_transformed_vector(tiny_adapter, tiny_examples):
    batch = tiny_adapter.make_batch(tiny_examples)
    with torch.no_grad():
        forward = tiny_adapter.forward(batch.input_ids, batch.attention_mask)
        values = tiny_adapter.value_vectors(1, forward)  # [B, H, N, d_h]
    projection = tiny_adapter.head_output_projection(1)  # [H, d_h, D]
    head = 3
    lengths = (values[:, head] @ projection[head]).norm(dim=-1)  # ||T_j|| for that head
    expected = forward.attentions[1][:, head, 0, :] * lengths
    scores = get_explainer("attention_norm", heads=[head]).explain(tiny_adapter, batch).scores
    assert torch.allclose(scores, torch.where(batch.scorable_mask, expected, torch.zeros(())), atol=1e-6)
    # all heads: the norm of the summed vectors, which is at most the sum of their norms
    summed = get_explainer("attention_norm").explain(tiny_adapter, batch).scores
    norms_summed = sum(get_explainer("attention_norm", heads=[h]).explain(tiny_adapter, batch).scores for h in range(4))
    assert (summed <= norms_summed + 1e-6).all() and (summed < norms_summed - 1e-6).any()


def test_leave_one_out_removes_one_token_and_repacks(tiny_adapter, tiny_examples):
    batch = tiny_adapter.make_batch(tiny_examples[1:2])
    scores = get_explainer("leave_one_out").explain(tiny_adapter, batch).scores[0]
    ids = batch.input_ids[0]
    target = int(batch.targets[0])
    with torch.no_grad():
        full = tiny_adapter.logits(batch.input_ids, batch.attention_mask).softmax(-1)[0, target]
        for position in torch.nonzero(batch.scorable_mask[0]).flatten().tolist():
            without = torch.cat([ids[:position], ids[position + 1:]]).unsqueeze(0)
            probability = tiny_adapter.logits(without, torch.ones_like(without)).softmax(-1)[0, target]
            assert abs(float(scores[position]) - float(full - probability)) <= 1e-6
