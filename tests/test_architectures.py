"""Every supported architecture, on a tiny random model of each (tests/tiny_architectures.py): its
description matches the model, the six checks of shared/spec/efficient-attention.md hold on its
attention layout (causal prefixes, windows, grouped-query heads, the readout token), every explainer
keeps the contract, gradients agree with captum, and decoders give the same numbers whatever the
padding side."""

from __future__ import annotations

import functools

import numpy as np
import pytest
import torch

from effbench.explainers import explainers, get_explainer
from effbench.explainers.attention import attention_rows, effective_rows, head_bases, readout_spans
from effbench.explainers.efficient import ConstrainedRows, efficient_rows, input_facts, solve_minnorm, solve_sparse
from effbench.models.adapter import _attribute
from effbench.testing import check_explainer_contract
from effbench.types import Example
from test_input_facts import direct_readout_rank
from tiny_architectures import ARCHITECTURES, DECODERS, LONG_TEXTS, MISTRAL_WINDOW, MIXED_TEXTS, SHORT_TEXTS, tiny_adapter_of

CANONICALS = ["sparse", "minnorm"]


@functools.cache
def _adapter(model_type: str):
    return tiny_adapter_of(model_type)


@pytest.fixture(params=ARCHITECTURES)
def adapter(request):
    return _adapter(request.param)


@pytest.fixture(params=DECODERS)
def decoder(request):
    return _adapter(request.param)


def examples_of(texts):
    return [Example(id=f"ex-{i}", text=text, label=i % 2) for i, text in enumerate(texts)]


def long_batch(adapter):
    batch = adapter.make_batch(examples_of(LONG_TEXTS + SHORT_TEXTS[:1]))
    assert batch.attention_mask.sum(1).max() > adapter.head_dim + 1
    return batch


def lengths_of(batch) -> list[int]:
    return batch.attention_mask.sum(1).tolist()


def all_heads(adapter) -> list[int]:
    return list(range(adapter.num_heads))


def rows_of(adapter, batch, *, all_queries: bool, transform=None) -> dict[int, list[np.ndarray]]:
    """Per layer (all layers, or the last for the readout row), per example [H, q, n]."""
    forward = adapter.batch_forward(batch)
    layers = range(adapter.num_layers) if all_queries else [adapter.num_layers - 1]
    return {layer: attention_rows(adapter, forward, layer, lengths_of(batch), all_heads(adapter), all_queries=all_queries,
                                  transform=transform) for layer in layers}


def logits_with_rows(adapter, batch, replacement: dict[int, list[np.ndarray]]) -> torch.Tensor:
    """Logits with the rows of `replacement[layer][b]` in place: all n rows, or the readout row."""
    lengths = lengths_of(batch)

    def override(layer: int, probs: torch.Tensor) -> torch.Tensor:
        if layer not in replacement:
            return probs
        probs = probs.clone()
        for b, rows in enumerate(replacement[layer]):
            n = lengths[b]
            queries = list(range(n)) if rows.shape[1] == n and n > 1 else [adapter.readout_position(n)]
            probs[b, :, queries, :n] = torch.from_numpy(rows).to(probs.dtype)
        return probs

    with torch.no_grad(), adapter.attention_override(override):
        return adapter.logits(batch.input_ids, batch.attention_mask)


def efficient(canonical):
    return lambda bases, rows: efficient_rows(bases, rows, canonical=canonical)


def null_space_is_not_empty(adapter, batch) -> bool:
    forward = adapter.batch_forward(batch)
    layer = adapter.num_layers - 1
    bases = head_bases(adapter, forward, layer, readout_spans(adapter, layer, lengths_of(batch)), all_heads(adapter))
    return any(basis.shape[1] < basis.shape[0] for example in bases.with_ones for basis in example)


def max_tv(first: dict, second: dict) -> float:
    return max(0.5 * float(np.abs(a - b).sum(-1).max()) for layer in first for a, b in zip(first[layer], second[layer]))


# ---- the description matches the model ---------------------------------------------------------------


def test_rows_attend_only_within_their_span_and_the_layout_is_exercised(adapter):
    batch = long_batch(adapter)
    forward = adapter.batch_forward(batch)
    restricted = 0
    for layer in range(adapter.num_layers):
        probs = forward.attentions[layer]
        for b, n in enumerate(lengths_of(batch)):
            for query in range(n):
                start, stop = adapter.key_span(layer, query, n)
                restricted += (start, stop) != (0, n)
                row = probs[b, :, query]
                assert torch.allclose(row[:, start:stop].sum(-1), torch.ones(adapter.num_heads), atol=1e-5)
                assert (row.sum(-1) - row[:, start:stop].sum(-1)).abs().max() < 1e-6  # no mass outside the span
    windowed = any(adapter.architecture.window(adapter.model.config, layer) for layer in range(adapter.num_layers))
    assert (restricted > 0) == (adapter.architecture.causal or windowed)


def test_head_transfers_reproduce_the_attention_output(adapter):
    batch = long_batch(adapter)
    captured = []
    layer = adapter.num_layers - 1
    projection = _attribute(adapter._layers[layer], adapter.architecture.output_projection)
    hook = projection.register_forward_hook(lambda module, inputs, output: captured.append(output))
    with torch.no_grad():
        forward = adapter.forward(batch.input_ids, batch.attention_mask)
        transfers = adapter.head_transfers(layer, forward)
    hook.remove()
    output = captured[layer if adapter.architecture.shared_layers else 0]
    rebuilt = torch.einsum("bhij,bhjd->bid", forward.attentions[layer], transfers)
    if projection.bias is not None:
        rebuilt = rebuilt + projection.bias
    real = batch.attention_mask.bool()
    assert torch.allclose(rebuilt[real], output[real], atol=1e-4 * float(output.abs().max()))


# ---- the six checks ---------------------------------------------------------------------------------


@pytest.mark.parametrize("canonical", CANONICALS)
@pytest.mark.parametrize("all_queries", [False, True], ids=["readout_row", "all_rows_all_layers"])
def test_efficient_rows_leave_the_logits_unchanged(adapter, canonical, all_queries):
    batch = long_batch(adapter)
    assert null_space_is_not_empty(adapter, batch)
    raw = rows_of(adapter, batch, all_queries=all_queries)
    replaced = rows_of(adapter, batch, all_queries=all_queries, transform=efficient(canonical))
    logits = logits_with_rows(adapter, batch, replaced)
    reference = adapter.batch_forward(batch).logits
    assert (logits - reference).abs().max() <= 1e-4 * reference.abs().max()
    assert max_tv(raw, replaced) > 1e-2  # the rows did change


def test_the_invariance_check_can_fail(adapter):
    batch = long_batch(adapter)
    layer = adapter.num_layers - 1
    uniform = []
    for _, start, stop in readout_spans(adapter, layer, lengths_of(batch)):
        row = np.zeros((adapter.num_heads, 1, lengths_of(batch)[len(uniform)]))
        row[:, :, start:stop] = 1.0 / (stop - start)
        uniform.append(row)
    logits = logits_with_rows(adapter, batch, {layer: uniform})
    reference = adapter.batch_forward(batch).logits
    assert (logits - reference).abs().max() > 1e-3 * reference.abs().max()


@pytest.mark.parametrize("canonical", CANONICALS)
def test_efficient_rows_are_distributions_over_their_span(adapter, canonical):
    batch = long_batch(adapter)
    replaced = rows_of(adapter, batch, all_queries=True, transform=efficient(canonical))
    for layer, per_example in replaced.items():
        for b, rows in enumerate(per_example):
            n = lengths_of(batch)[b]
            assert rows.min() >= -1e-6 and np.abs(rows.sum(-1) - 1).max() <= 1e-5
            for query in range(n):
                start, stop = adapter.key_span(layer, query, n)
                assert np.abs(rows[:, query, :start]).sum() + np.abs(rows[:, query, stop:]).sum() == 0


def test_sparse_rows_have_at_most_rank_nonzeros(adapter):
    batch = long_batch(adapter)
    forward = adapter.batch_forward(batch)
    layer = adapter.num_layers - 1
    lengths = lengths_of(batch)
    spans = readout_spans(adapter, layer, lengths)
    bases = head_bases(adapter, forward, layer, spans, all_heads(adapter))
    rows = rows_of(adapter, batch, all_queries=False, transform=efficient("sparse"))[layer]
    for (b, start, stop), example_bases in zip(spans, bases.with_ones):
        for h, basis in enumerate(example_bases):
            assert (rows[b][h, 0, start:stop] > 1e-9).sum() <= basis.shape[1]


def test_minnorm_gives_one_row_per_head_output(adapter):
    batch = long_batch(adapter)
    forward = adapter.batch_forward(batch)
    layer = adapter.num_layers - 1
    spans = readout_spans(adapter, layer, lengths_of(batch))
    bases = head_bases(adapter, forward, layer, spans, all_heads(adapter))
    probs = forward.attentions[layer].double().numpy()
    distances = []
    for (b, start, stop), example_bases in zip(spans, bases.with_ones):
        for h, basis in enumerate(example_bases):
            if basis.shape[1] == basis.shape[0]:
                continue
            a = probs[b, h, adapter.readout_position(lengths_of(batch)[b]), start:stop]
            a = a / a.sum()
            x = solve_minnorm([ConstrainedRows(basis, a[None])])[0][0]
            vertex = solve_sparse([ConstrainedRows(basis, a[None])])[0][0]
            other = a + 0.5 * (vertex - a)
            assert other.min() >= 0 and np.abs(basis.T @ (other - a)).max() <= 1e-12
            assert np.abs(solve_minnorm([ConstrainedRows(basis, other[None])])[0][0] - x).max() <= 1e-6
            distances.append(0.5 * np.abs(other - a).sum())
    assert max(distances) > 1e-3  # some rows moved far


@pytest.mark.parametrize("canonical", CANONICALS)
def test_efficient_equals_raw_when_rank_is_n(adapter, canonical):
    batch = adapter.make_batch(examples_of(SHORT_TEXTS))
    forward = adapter.batch_forward(batch)
    for layer in range(adapter.num_layers):
        spans = readout_spans(adapter, layer, lengths_of(batch))
        bases = head_bases(adapter, forward, layer, spans, all_heads(adapter))
        assert all(basis.shape[0] == basis.shape[1] for example in bases.with_ones for basis in example)
    raw = rows_of(adapter, batch, all_queries=True)
    replaced = rows_of(adapter, batch, all_queries=True, transform=efficient(canonical))
    assert all(np.array_equal(r, e) for layer in raw for r, e in zip(raw[layer], replaced[layer]))
    explained = get_explainer("efficient_attention", canonical=canonical).explain(adapter, batch).scores
    assert torch.equal(explained, get_explainer("raw_attention").explain(adapter, batch).scores)


def expected_readout_keys(model_type: str, n: int) -> int:
    """The tokens the last layer's readout row sees, by the tiny models' configs (tests/tiny_architectures.py)."""
    if model_type in ("mistral", "qwen2"):  # the last token's causal window
        return min(n, MISTRAL_WINDOW)
    if model_type == "modernbert":  # a local last layer: [CLS] and the local_attention / 2 = 24 tokens after it
        return min(n, 25)
    return n


def test_input_facts_follow_each_attention_layout(adapter):
    batch = adapter.make_batch(examples_of(LONG_TEXTS + SHORT_TEXTS))
    facts = input_facts(adapter, batch)
    model_type = adapter.model.config.model_type
    assert [fact["length"] for fact in facts] == lengths_of(batch)
    assert [fact["readout_keys"] for fact in facts] == [expected_readout_keys(model_type, n) for n in lengths_of(batch)]
    assert [fact["readout_rank"] for fact in facts] == [direct_readout_rank(adapter, batch, b) for b in range(len(facts))]
    long, short = facts[: len(LONG_TEXTS)], facts[len(LONG_TEXTS):]
    assert all(fact["readout_rank"] < fact["readout_keys"] for fact in long)
    assert all(fact["readout_rank"] == fact["readout_keys"] for fact in short)


def test_decoder_rows_have_their_prefix_as_polytope(decoder):
    """Row i's C(a) lives on its prefix: the first rows (rank([T[0..i] | 1]) = i + 1) stay exactly raw,
    later rows of long inputs change; projecting onto the whole T instead would break both."""
    batch = long_batch(decoder)
    raw = rows_of(decoder, batch, all_queries=True)
    replaced = rows_of(decoder, batch, all_queries=True, transform=efficient("sparse"))
    for layer in raw:
        for r, e in zip(raw[layer], replaced[layer]):
            assert np.array_equal(r[:, :2], e[:, :2])
        long_rows = [(r, e) for r, e in zip(raw[layer], replaced[layer]) if r.shape[-1] > decoder.head_dim + 1]
        assert all(not np.allclose(r[:, decoder.head_dim + 1:], e[:, decoder.head_dim + 1:], atol=1e-3) for r, e in long_rows)


def test_effective_attention_is_the_projection_and_changes_no_logit(adapter):
    batch = long_batch(adapter)
    forward = adapter.batch_forward(batch)
    eps = torch.finfo(adapter.dtype).eps
    raw = rows_of(adapter, batch, all_queries=True)
    effective = rows_of(adapter, batch, all_queries=True, transform=effective_rows)
    layer = adapter.num_layers - 1
    transfers = adapter.head_transfers(layer, forward).detach().double().numpy()
    n = lengths_of(batch)[0]
    query = adapter.readout_position(n)
    start, stop = adapter.key_span(layer, query, n)
    for h in all_heads(adapter):
        T = transfers[0, h, start:stop]
        projector = T @ np.linalg.pinv(T, rcond=eps * max(T.shape))
        expected = raw[layer][0][h, query, start:stop] @ projector.T
        assert np.abs(effective[layer][0][h, query, start:stop] - expected).max() <= 1e-6
    logits = logits_with_rows(adapter, batch, effective)
    assert (logits - forward.logits).abs().max() <= 1e-4 * forward.logits.abs().max()
    assert min(rows.min() for rows in effective[layer]) < 0


# ---- explainers, gradients, padding ------------------------------------------------------------------


# (explainer, model type): the start of the one-line error with which the explainer refuses that architecture
EXPECTED_REFUSALS = {
    **{("globenc", model_type): "globenc does not support" for model_type in ("modernbert", *DECODERS)},
    **{("attn_lrp", model_type): "attn_lrp does not support"
       for model_type in ("roberta", "xlm-roberta", "distilbert", "deberta-v2", "modernbert")},
}


@pytest.mark.parametrize("name", [name for name in explainers.names()  # the oracle needs planted evidence
                                  if not getattr(explainers.get(name), "needs_evidence", False)])
def test_every_explainer_keeps_the_contract(adapter, name):
    from effbench.errors import EffbenchError

    refusal = EXPECTED_REFUSALS.get((name, adapter.model.config.model_type))
    if refusal is not None:
        with pytest.raises(EffbenchError, match=refusal) as refused:
            get_explainer(name).explain(adapter, adapter.make_batch(examples_of(MIXED_TEXTS)))
        assert "\n" not in str(refused.value)
        return
    check_explainer_contract(get_explainer(name), adapter, examples_of(MIXED_TEXTS))


@pytest.mark.parametrize("input_point", ["embedding_output", "word_embeddings"])
def test_integrated_gradients_matches_captum(adapter, input_point):
    captum_attr = pytest.importorskip("captum.attr")
    batch = adapter.make_batch(examples_of(MIXED_TEXTS))
    explainer = get_explainer("integrated_gradients", input_point=input_point)
    options = {"target": batch.targets, "n_steps": explainer.params["steps"], "method": "gausslegendre",
               "additional_forward_args": (batch.attention_mask,)}
    if input_point == "word_embeddings":
        embeddings = adapter.input_embeddings(batch.input_ids).detach()
        reference = captum_attr.IntegratedGradients(
            lambda inputs, mask: adapter.logits(None, mask, inputs_embeds=inputs)
        ).attribute(embeddings, baselines=explainer.baseline_inputs(adapter, batch), **options)
    else:  # captum's layer variant on the embedding layer, from baseline ids: the pad token at the scorable tokens
        pad_id = adapter.tokenizer.pad_token_id or 0
        reference = captum_attr.LayerIntegratedGradients(
            lambda ids, mask: adapter.logits(ids, mask), adapter.embedding_module()
        ).attribute(batch.input_ids, baselines=torch.where(batch.scorable_mask, pad_id, batch.input_ids), **options)
    expected = torch.where(batch.scorable_mask, reference.sum(-1).detach().float(), torch.zeros(()))
    scores = explainer.explain(adapter, batch).scores
    assert expected.abs().max() > 0
    assert torch.allclose(scores, expected, rtol=0, atol=1e-4 * float(expected.abs().max()))


def test_decoders_give_the_same_logits_and_scores_with_left_or_right_padding(decoder):
    tokenizer = decoder.tokenizer
    encoded = {side: tokenizer(MIXED_TEXTS, padding=True, padding_side=side, return_tensors="pt") for side in ("left", "right")}
    assert not torch.equal(encoded["left"]["input_ids"], encoded["right"]["input_ids"])
    with torch.no_grad():
        left, right = (decoder.logits(encoded[s]["input_ids"], encoded[s]["attention_mask"]) for s in ("left", "right"))
    assert torch.allclose(left, right, rtol=1e-5, atol=1e-5 * float(right.abs().max()))
    scores = {}
    for side in ("left", "right"):
        tokenizer.padding_side = side
        batch = decoder.make_batch(examples_of(MIXED_TEXTS))
        scores[side] = [get_explainer(name).explain(decoder, batch).scores
                        for name in ("efficient_attention", "raw_attention", "integrated_gradients")]
    tokenizer.padding_side = "right"
    for first, second in zip(scores["left"], scores["right"]):
        assert torch.allclose(first, second, rtol=1e-5, atol=1e-5 * float(second.abs().max()))


def test_decoders_read_the_last_real_token(decoder):
    """The adapter's logits are the model's own, which reads the last non-padding token."""
    batch = decoder.make_batch(examples_of(MIXED_TEXTS))
    with torch.no_grad():
        own = decoder.model(input_ids=batch.input_ids, attention_mask=batch.attention_mask).logits
    assert torch.allclose(decoder.logits(batch.input_ids, batch.attention_mask), own, atol=1e-5)


def test_mask_mode_uses_unk_or_is_refused_when_unk_is_a_special_token_the_model_reads():
    from effbench.errors import EffbenchError
    from effbench.metrics.perturbation import PerturbationEngine

    llama = PerturbationEngine(_adapter("llama"), mode="mask")
    assert llama.mask_token_id == _adapter("llama").tokenizer.unk_token_id
    gpt2 = PerturbationEngine(_adapter("gpt2"), mode="mask")
    batch = _adapter("gpt2").make_batch(examples_of(MIXED_TEXTS[:2]))
    with pytest.raises(EffbenchError, match="needs a mask token"):
        gpt2.leave_one_out(batch, mode="mask")
    assert len(gpt2.leave_one_out(batch, mode="remove")) == 2


# ---- end to end, from a folder saved with save_pretrained ---------------------------------------------


@pytest.mark.parametrize("model_type", ARCHITECTURES)
def test_run_and_diagnose_end_to_end_from_a_saved_model(model_type, toy_env, tmp_path, capsys):
    import json

    from effbench.cli import main
    from tiny_architectures import tiny_classifier

    model, tokenizer = tiny_classifier(model_type)
    folder = tmp_path / model_type
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    code = main(["run", "--task", "toy", "--model", str(folder), "--quiet", "--format", "json", "--limit", "4",
                 "--explainer", "efficient_attention", "--explainer", "raw_attention", "--explainer", "integrated_gradients",
                 "--metric", "necessity", "--metric", "sufficiency", "--output", str(tmp_path / "runs")])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    records = json.loads(captured.out)
    assert [record["explainer"]["name"] for record in records] == ["efficient_attention", "raw_attention", "integrated_gradients"]
    assert all(set(record["results"]) == {"necessity", "sufficiency"} for record in records)
    from effbench.metrics.perturbation import mask_token_id  # what `mask` mode writes is recorded

    expected_id = mask_token_id(tokenizer)
    recorded = records[0]["model"]["mask_token"]
    assert (recorded is None) == (expected_id is None)
    if recorded is not None:
        assert recorded["id"] == expected_id and recorded["stands_in_for_mask"] == (tokenizer.mask_token_id is None)
    code = main(["diagnose", "--task", "toy", "--model", str(folder), "--limit", "4", "--quiet", "--format", "json"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    rows = json.loads(captured.out)["layers"]
    assert rows[-1]["layer"] == "all" and rows[-1]["pairs"] == 4 * 4 * 2
    assert ("first-token mass raw" in rows[-1]) == (model_type in DECODERS)


def test_diagnose_reports_first_token_mass_for_decoders(decoder):
    from effbench.diagnose import diagnose

    rows = diagnose(decoder, examples_of(LONG_TEXTS + SHORT_TEXTS), batch_size=2, progress=False)
    for row in rows:
        for column in ("first-token mass raw", "first-token mass sparse", "first-token mass minnorm"):
            assert 0 <= row[column] <= 1
    full_layers = [layer for layer in range(decoder.num_layers) if decoder.architecture.window(decoder.model.config, layer) is None]
    if full_layers:  # (Mistral's windows of 24 keep the first token out of the long inputs' readout rows)
        assert any(rows[layer]["first-token mass raw"] != rows[layer]["first-token mass sparse"] for layer in full_layers)
