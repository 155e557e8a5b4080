"""`lime` and `kernel_shap`: known answers (exact Shapley values, the lime package's sampling and kernel),
the efficiency constraint, per-example seeding, and a run end to end."""

from __future__ import annotations

import functools
import itertools
import math

import numpy as np
import pytest
import torch
from tiny_architectures import tiny_adapter_of

from effbench.errors import EffbenchError
from effbench.explainers import get_explainer
from effbench.explainers.coalitions import example_generator
from effbench.explainers.kernel_shap import kernel_shap_coalitions
from effbench.explainers.lime import lime_coalitions, lime_kernel_weights
from effbench.types import Example

EIGHT_TOKENS = "a dull and tedious mess that never finds"
TEXTS = [EIGHT_TOKENS, "a delight", "the film is a delight from start to finish and the cast is wonderful",
         "an honest moving portrait of a family in trouble", "dull", "i wanted to like it but the script is lazy",
         "nothing here works : not the story , not the music , not the ending", "beautifully shot , smartly written"]


@functools.cache
def adapter_of(model_type: str):
    """Tiny random models whose weights are large enough that single tokens move the probabilities."""
    return tiny_adapter_of(model_type)


def examples_of(texts):
    return [Example(id=f"ex-{i}", text=text, label=i % 2) for i, text in enumerate(texts)]


def target_probabilities(adapter, rows: list[list[int]], target: int) -> np.ndarray:
    """p(target | row) for token id rows of any lengths, by the model directly (one padded call)."""
    width = max(len(row) for row in rows)
    input_ids = torch.full((len(rows), width), adapter.tokenizer.pad_token_id)
    attention_mask = torch.zeros((len(rows), width), dtype=torch.long)
    for index, row in enumerate(rows):
        input_ids[index, : len(row)] = torch.tensor(row)
        attention_mask[index, : len(row)] = 1
    with torch.no_grad():
        return adapter.logits(input_ids, attention_mask).double().softmax(-1)[:, target].numpy()


def coalition_rows(batch, present: np.ndarray, mode: str, mask_id: int | None = None) -> list[list[int]]:
    """The token ids of example 0 with only the scorable tokens marked present kept (remove) or unmasked."""
    ids = batch.input_ids[0, : int(batch.attention_mask[0].sum())].tolist()
    positions = torch.nonzero(batch.scorable_mask[0]).flatten().tolist()
    rows = []
    for row in present:
        absent = {position for position, kept in zip(positions, row) if not kept}
        if mode == "remove":
            rows.append([token for position, token in enumerate(ids) if position not in absent])
        else:
            rows.append([mask_id if position in absent else token for position, token in enumerate(ids)])
    return rows


def exact_shapley_values(adapter, batch, mode: str) -> np.ndarray:
    """phi_j = sum over S without j of |S|! (M - |S| - 1)! / M! (v(S + j) - v(S)), every coalition enumerated."""
    features = int(batch.scorable_mask[0].sum())
    coalitions = np.array(list(itertools.product([False, True], repeat=features)))
    values = target_probabilities(adapter, coalition_rows(batch, coalitions, mode, adapter.tokenizer.mask_token_id),
                                  int(batch.targets[0]))
    value_of = {row.tobytes(): value for row, value in zip(coalitions, values)}
    phi = np.zeros(features)
    for row in coalitions:
        size = int(row.sum())
        for feature in np.flatnonzero(~row):
            with_feature = row.copy()
            with_feature[feature] = True
            weight = math.factorial(size) * math.factorial(features - size - 1) / math.factorial(features)
            phi[feature] += weight * (value_of[with_feature.tobytes()] - value_of[row.tobytes()])
    return phi


def scorable_scores(attribution, batch, row: int = 0) -> np.ndarray:
    return attribution.scores[row][batch.scorable_mask[row]].double().numpy()


# ---- kernel_shap ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["remove", "mask"])
def test_kernel_shap_with_every_coalition_gives_the_exact_shapley_values(mode):
    adapter = adapter_of("bert")
    batch = adapter.make_batch(examples_of([EIGHT_TOKENS]))
    assert int(batch.scorable_mask[0].sum()) == 8
    exact = exact_shapley_values(adapter, batch, mode)
    assert np.abs(exact).max() > 1e-2  # the tokens matter: the comparison below is not of near-zeros
    estimate = scorable_scores(get_explainer("kernel_shap", samples=2 ** 8 - 2, perturbation=mode).explain(adapter, batch), batch)
    assert np.allclose(estimate, exact, rtol=0, atol=1e-5 * np.abs(exact).max())


def test_kernel_shap_converges_to_the_exact_values_with_more_samples():
    """This random model's game is far from additive (the shap package's KernelExplainer, on the same
    256 values, errs as much at each budget: relative error 1.0, 0.40, 0.13 at 40, 120, 200 samples,
    means over 20 seeds, against effbench's 1.05, 0.43, 0.12)."""
    adapter = adapter_of("bert")
    batch = adapter.make_batch(examples_of([EIGHT_TOKENS]))
    exact = exact_shapley_values(adapter, batch, "remove")
    errors = {}
    for samples in (12, 40, 120, 200, 254):
        estimate = scorable_scores(get_explainer("kernel_shap", samples=samples).explain(adapter, batch), batch)
        errors[samples] = np.linalg.norm(estimate - exact) / np.linalg.norm(exact)
    assert errors[12] > errors[40] > errors[120] > errors[200] > errors[254]
    assert errors[12] > 1 and errors[200] < 0.25 and errors[254] < 1e-5


def test_kernel_shap_values_sum_to_the_full_minus_the_empty_input_when_sampled():
    adapter = adapter_of("bert")
    batch = adapter.make_batch(examples_of(TEXTS[2:3]))
    ids = batch.input_ids[0, : int(batch.attention_mask[0].sum())].tolist()
    features = int(batch.scorable_mask[0].sum())
    samples = 3 * features  # far fewer than the 2^M - 2 coalitions: some are drawn
    assert samples < 2 ** features - 2
    phi = scorable_scores(get_explainer("kernel_shap", samples=samples).explain(adapter, batch), batch)
    full, empty = target_probabilities(adapter, [ids, [ids[0], ids[-1]]], int(batch.targets[0]))  # [CLS] [SEP]
    assert abs(phi.sum() - (full - empty)) < 1e-6


def test_kernel_shap_samples_the_shapley_kernel_as_the_shap_package():
    features = 6
    # a budget that enumerates sizes 1 and 5 (12 coalitions) and draws the rest
    present, weights = kernel_shap_coalitions(np.random.default_rng(0), features, 30)
    assert present.shape == (30, features) and len(weights) == 30
    assert not present.all(axis=1).any() and present.any(axis=1).all()  # neither the full nor the empty coalition
    sizes = present.sum(axis=1)
    assert sorted(sizes[:12].tolist()) == [1] * 6 + [5] * 6
    # the enumerated sizes keep their Shapley kernel weight, (M - 1) / (C(M, s) s (M - s)), normalised over sizes
    kernel = np.array([(features - 1) / (s * (features - s)) for s in range(1, features)])
    kernel /= kernel.sum()
    assert np.allclose(weights[:12], kernel[0] / features)
    assert np.isclose(weights.sum(), 1.0)
    # a drawn coalition of size 2 comes with its complement (size 4); size 3 is its own complement's size
    row = 12
    while row < 30:
        if sizes[row] == 2 and row + 1 < 30:
            assert (present[row + 1] == ~present[row]).all()
            row += 2
        else:
            assert sizes[row] in (2, 3)
            row += 1
    every, every_weights = kernel_shap_coalitions(np.random.default_rng(0), features, 1000)
    assert len({row.tobytes() for row in every}) == 2 ** features - 2  # the budget capped and all enumerated
    assert np.allclose(every_weights, kernel[every.sum(axis=1) - 1] / [math.comb(features, s) for s in every.sum(axis=1)])


def test_kernel_shap_refuses_fewer_samples_than_tokens_with_a_clear_error():
    adapter = adapter_of("bert")
    batch = adapter.make_batch(examples_of(TEXTS[2:3]))
    assert int(batch.scorable_mask.sum()) == 14
    with pytest.raises(EffbenchError, match=r"samples=13 cannot estimate the 14 token values of example 'ex-0'; use "
                                            r"samples of at least 14"):
        get_explainer("kernel_shap", samples=13).explain(adapter, batch)
    assert get_explainer("kernel_shap", samples=14).explain(adapter, batch).scores.abs().max() > 0


def test_the_empty_input_of_a_tokenizer_without_special_tokens_is_its_bos_token_alone():
    gpt2 = adapter_of("gpt2")
    batch = gpt2.make_batch(examples_of(["a dull and tedious mess"]))
    assert bool(batch.scorable_mask[0].all())  # removing every token would leave nothing
    phi = scorable_scores(get_explainer("kernel_shap", samples=30).explain(gpt2, batch), batch)
    ids = batch.input_ids[0].tolist()
    full, empty = target_probabilities(gpt2, [ids, [gpt2.tokenizer.bos_token_id]], int(batch.targets[0]))
    assert abs(phi.sum() - (full - empty)) < 1e-6


# ---- lime ----------------------------------------------------------------------------------------------


def test_lime_draws_and_weighs_coalitions_as_the_lime_package():
    from sklearn.metrics import pairwise_distances

    present = lime_coalitions(np.random.default_rng(0), 7, 400)
    assert present[0].all()  # the input itself first
    taken_out = 7 - present[1:].sum(axis=1)
    assert taken_out.min() == 1 and taken_out.max() == 7  # 1..M taken out, the empty coalition included
    # lime's LimeTextExplainer: sqrt(exp(-d^2 / 25^2)) with d = 100 x the cosine distance (its kernel_width=25)
    distances = pairwise_distances(present.astype(float), present[:1].astype(float), metric="cosine").ravel() * 100
    assert np.allclose(lime_kernel_weights(present, 0.25), np.sqrt(np.exp(-(distances ** 2) / 25 ** 2)))


@pytest.mark.parametrize("mode", ["remove", "mask"])
def test_lime_is_a_weighted_ridge_fit_on_the_perturbed_inputs(mode):
    from sklearn.linear_model import Ridge

    adapter = adapter_of("bert")
    batch = adapter.make_batch(examples_of([EIGHT_TOKENS]))
    explainer = get_explainer("lime", samples=60, perturbation=mode, seed=3)
    scores = scorable_scores(explainer.explain(adapter, batch), batch)
    present = lime_coalitions(example_generator(3, "ex-0"), 8, 60)
    values = target_probabilities(adapter, coalition_rows(batch, present, mode, adapter.tokenizer.mask_token_id),
                                  int(batch.targets[0]))
    expected = Ridge(alpha=1.0).fit(present.astype(float), values, sample_weight=lime_kernel_weights(present, 0.25)).coef_
    assert np.abs(expected).max() > 1e-2
    assert np.allclose(scores, expected, rtol=0, atol=1e-5 * np.abs(expected).max())


# ---- both: per-example seeds, batches ------------------------------------------------------------------


@pytest.mark.parametrize("name", ["lime", "kernel_shap"])
@pytest.mark.parametrize("mode", ["remove", "mask"])
def test_an_example_alone_gets_the_same_bits_as_in_a_padded_batch_of_eight(name, mode):
    adapter = adapter_of("bert")
    examples = examples_of(TEXTS)
    explainer = get_explainer(name, samples=40, perturbation=mode)
    batch = adapter.make_batch(examples)
    together = explainer.explain(adapter, batch).scores
    assert batch.attention_mask.sum(1).unique().numel() > 4  # padded to different lengths
    for row in (0, 2, 7):
        alone = explainer.explain(adapter, adapter.make_batch([examples[row]])).scores[0]
        assert torch.equal(alone, together[row, : alone.shape[0]])


@pytest.mark.parametrize("name", ["lime", "kernel_shap"])
def test_the_draws_depend_on_the_seed_and_the_example_id_not_on_the_position(name):
    adapter = adapter_of("bert")
    examples = examples_of(TEXTS[2:4])
    batch = adapter.make_batch(examples)
    first = get_explainer(name, samples=20, seed=0).explain(adapter, batch).scores
    assert not torch.equal(first, get_explainer(name, samples=20, seed=1).explain(adapter, batch).scores)
    reordered = adapter.make_batch(examples[::-1])
    again = get_explainer(name, samples=20, seed=0).explain(adapter, reordered).scores
    assert torch.equal(again[1, : first.shape[1]], first[0])
    renamed = [Example(id="another-id", text=examples[0].text, label=0)]
    other = get_explainer(name, samples=20, seed=0).explain(adapter, adapter.make_batch(renamed)).scores
    assert not torch.equal(other[0], first[0, : other.shape[1]])


def test_lime_kernel_shap_and_deeplift_run_end_to_end(toy_env, tmp_path, capsys):
    import json

    from effbench.cli import main

    code = main(["run", "--task", "toy", "--model-kind", "tiny", "--explainer", "lime", "--explainer", "kernel_shap",
                 "--explainer", "deeplift", "--metric", "necessity", "--metric", "faithfulness", "--limit", "4",
                 "--quiet", "--format", "json", "--output", str(tmp_path / "runs")])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    records = json.loads(captured.out)
    assert [record["explainer"]["name"] for record in records] == ["lime", "kernel_shap", "deeplift"]
    assert records[0]["explainer"]["params"] == {"samples": 500, "kernel_width": 0.25, "alpha": 1.0,
                                                 "perturbation": "remove", "seed": 0}
    for record in records:
        assert record["results"]["necessity"]["n"] == 4
        assert all(math.isfinite(record["results"][metric]["mean"]) for metric in ("necessity", "faithfulness"))
