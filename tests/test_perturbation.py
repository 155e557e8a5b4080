"""The perturbation engine: what it feeds the model, in both modes, and that batching never changes a value."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch

from effbench.errors import EffbenchError
from effbench.metrics import get_metric
from effbench.metrics.perturbation import PerturbationEngine
from effbench.types import Attribution, Batch

METRIC_NAMES = ["necessity", "sufficiency", "faithfulness", "min_sufficient", "min_necessary"]


@pytest.fixture(scope="module")
def sensitive_adapter(tiny_adapter):
    """A tiny 3-class BERT whose random weights are large enough for every token to move the output
    (the shared tiny model's default initialisation gives nearly constant outputs). In float64, so that
    float32 rounding (about 1e-6 with weights this large) cannot hide a padding bug or pass for one."""
    import transformers

    from effbench.models.adapter import ClassifierAdapter

    torch.manual_seed(0)
    config = transformers.BertConfig(
        vocab_size=tiny_adapter.tokenizer.vocab_size, hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
        intermediate_size=128, max_position_embeddings=256, num_labels=3, initializer_range=0.3,
    )
    model = transformers.BertForSequenceClassification(config).double()
    return ClassifierAdapter(model, tiny_adapter.tokenizer, max_length=128, name="tiny-sensitive")


@pytest.fixture(autouse=True)
def fresh_perturbation_cache(sensitive_adapter):
    """Engines on one model share its cache: each test counts its own passes."""
    sensitive_adapter.perturbation_cache.clear()


@pytest.fixture(scope="module")
def batch(sensitive_adapter):
    from effbench.types import Example

    texts = [
        "a delight",
        "the plot is thin but the jokes land",
        "nothing here works : not the story , not the music , not the ending , not the cast",
        "a warm funny film about friendship , loss and starting over again",
        "i wanted to like it but the script is lazy and the acting is worse",
    ]
    return sensitive_adapter.make_batch([Example(id=f"ex-{i}", text=text, label=0) for i, text in enumerate(texts)])


@pytest.fixture(scope="module")
def attribution(batch):
    generator = torch.Generator().manual_seed(3)
    scores = torch.randn(batch.input_ids.shape, generator=generator) * batch.scorable_mask
    return Attribution(scores=scores, explainer="random", version=1)


def real_rows(input_ids: torch.Tensor, attention_mask: torch.Tensor) -> list[list[int]]:
    return [ids[mask.bool()].tolist() for ids, mask in zip(input_ids, attention_mask)]


def sub_batch(batch: Batch, index: int) -> Batch:
    """Example `index` alone, cut to its own length (no padding at all)."""
    length = int(batch.attention_mask[index].sum())
    return Batch(
        example_ids=(batch.example_ids[index],),
        input_ids=batch.input_ids[index : index + 1, :length],
        attention_mask=batch.attention_mask[index : index + 1, :length],
        scorable_mask=batch.scorable_mask[index : index + 1, :length],
        targets=batch.targets[index : index + 1],
    )


# ---- what the model sees ------------------------------------------------------------------------------


def test_remove_deletes_exactly_the_chosen_tokens_and_keeps_special_tokens(sensitive_adapter, batch):
    tokenizer = sensitive_adapter.tokenizer
    engine = PerturbationEngine(sensitive_adapter, mode="remove")
    engine.chunk_log = []
    original = real_rows(batch.input_ids, batch.attention_mask)
    scorable = [torch.nonzero(row).flatten().tolist() for row in batch.scorable_mask]
    perturbations = [
        (1, frozenset(scorable[1][:2])),
        (2, frozenset(scorable[2][::3])),
        (0, frozenset(scorable[0])),  # every scorable token: [CLS] [SEP] is left
        (3, frozenset()),
    ]
    engine.probabilities(batch, perturbations)
    seen = [row for input_ids, mask in engine.chunk_log for row in real_rows(input_ids, mask)]
    expected = [[token for j, token in enumerate(original[index]) if j not in positions] for index, positions in perturbations]
    # exactly what was asked for (example 3's full input included), each example in chunks of its own
    assert sorted(seen) == sorted(expected)
    assert [tokenizer.cls_token_id, tokenizer.sep_token_id] in seen
    for row in seen:
        assert row[0] == tokenizer.cls_token_id and row[-1] == tokenizer.sep_token_id


def test_mask_replaces_the_chosen_tokens_by_the_mask_token(sensitive_adapter, batch):
    mask_id = sensitive_adapter.tokenizer.mask_token_id
    engine = PerturbationEngine(sensitive_adapter, mode="mask")
    engine.chunk_log = []
    original = real_rows(batch.input_ids, batch.attention_mask)
    scorable = torch.nonzero(batch.scorable_mask[2]).flatten().tolist()
    positions = frozenset(scorable[1::2])
    engine.probabilities(batch, [(2, positions)])
    seen = [row for input_ids, mask in engine.chunk_log for row in real_rows(input_ids, mask)]
    masked = [mask_id if j in positions else token for j, token in enumerate(original[2])]
    assert seen == [masked]


def test_mask_falls_back_to_unk_and_fails_clearly_without_either():
    def model_with(mask, unk, eos=None):
        return SimpleNamespace(tokenizer=SimpleNamespace(pad_token_id=0, mask_token_id=mask, unk_token_id=unk, eos_token_id=eos))

    assert PerturbationEngine(model_with(None, 7), mode="mask").mask_token_id == 7
    assert PerturbationEngine(model_with(5, 7), mode="mask").mask_token_id == 5
    for refused in (model_with(None, None), model_with(None, 7, eos=7)):  # GPT-2: unk is eos, which the model reads
        engine = PerturbationEngine(refused, mode="mask")
        with pytest.raises(EffbenchError, match="needs a mask token"):
            engine.probabilities(None, [], mode="mask")
        assert engine._resolve_mode("remove") == "remove"  # remove always works


def test_special_tokens_and_padding_cannot_be_perturbed(sensitive_adapter, batch):
    engine = PerturbationEngine(sensitive_adapter)
    last_real = int(batch.attention_mask[0].sum()) - 1
    for position in (0, last_real, batch.input_ids.shape[1] - 1):
        with pytest.raises(EffbenchError, match="not scorable tokens"):
            engine.probabilities(batch, [(0, frozenset({position}))])
    assert engine.forward_calls == 0


def test_bad_engine_settings_are_clear_errors(sensitive_adapter):
    with pytest.raises(EffbenchError, match="mode must be one of remove, mask"):
        PerturbationEngine(sensitive_adapter, mode="drop")
    with pytest.raises(EffbenchError, match="max_batch_tokens must be a positive integer"):
        PerturbationEngine(sensitive_adapter, max_batch_tokens=0)


def test_a_left_padded_batch_is_refused(sensitive_adapter, batch):
    flipped = Batch(
        example_ids=batch.example_ids,
        input_ids=batch.input_ids.flip(1),
        attention_mask=batch.attention_mask.flip(1),
        scorable_mask=batch.scorable_mask.flip(1),
        targets=batch.targets,
    )
    with pytest.raises(EffbenchError, match="right-padded"):
        PerturbationEngine(sensitive_adapter).full_probabilities(flipped)


# ---- chunking, caching and counting --------------------------------------------------------------------


def test_chunks_respect_the_token_budget_longest_first(sensitive_adapter, batch):
    engine = PerturbationEngine(sensitive_adapter, max_batch_tokens=120)
    engine.chunk_log = []
    engine.leave_one_out(batch)
    assert engine.forward_calls == len(engine.chunk_log) > len(batch)  # some example needs two chunks
    lengths = batch.attention_mask.sum(1).tolist()
    for input_ids, mask in engine.chunk_log:
        assert input_ids.numel() <= 120 or len(input_ids) == 1
        assert mask[:, -1].any()  # no all-padding column: each chunk is as wide as its longest sequence
        assert mask.all()  # one example's leave-one-out rows only: all of its length minus one, no padding
        assert input_ids.shape[1] + 1 in lengths
    assert engine.sequences_evaluated == int(batch.scorable_mask.sum())  # no full input rides along


def test_duplicates_run_once_and_repeats_come_from_the_cache(sensitive_adapter, batch):
    engine = PerturbationEngine(sensitive_adapter)
    positions = frozenset({1, 2})
    first = engine.probabilities(batch, [(1, positions), (1, positions), (1, frozenset({2, 1}))])
    assert engine.sequences_evaluated == 1 and engine.forward_calls == 1  # one perturbed sequence
    again = engine.probabilities(batch, [(1, positions)])
    assert engine.forward_calls == 1
    np.testing.assert_array_equal(first[0], again[0])
    engine.probabilities(batch, [(1, positions)], mode="mask")  # another mode is another input
    assert engine.sequences_evaluated == 2
    engine.full_probabilities(batch)  # each example's full input in a chunk of its own
    engine.probabilities(batch, [(0, frozenset())], mode="mask")  # the full input is the same in both modes
    assert engine.sequences_evaluated == 2 + len(batch) and engine.forward_calls == 2 + len(batch)


def test_probabilities_equal_an_unpadded_forward_of_the_perturbed_sequence(sensitive_adapter, batch):
    engine = PerturbationEngine(sensitive_adapter)
    original = real_rows(batch.input_ids, batch.attention_mask)
    scorable = [torch.nonzero(row).flatten().tolist() for row in batch.scorable_mask]
    perturbations = [(index, frozenset(scorable[index][: 1 + index])) for index in range(len(batch))]
    for mode in ("remove", "mask"):
        probabilities = engine.probabilities(batch, perturbations, mode=mode)
        for (index, positions), row_probabilities in zip(perturbations, probabilities):
            if mode == "remove":
                ids = [token for j, token in enumerate(original[index]) if j not in positions]
            else:
                ids = [sensitive_adapter.tokenizer.mask_token_id if j in positions else t for j, t in enumerate(original[index])]
            with torch.no_grad():
                logits = sensitive_adapter.logits(torch.tensor([ids]), torch.ones(1, len(ids), dtype=torch.long))
            reference = torch.softmax(logits.double(), -1)[0].numpy()
            np.testing.assert_allclose(row_probabilities, reference, rtol=0, atol=1e-6)
            assert row_probabilities.sum() == pytest.approx(1.0)
    # the perturbations do move the output: the comparison above is not between constants
    full = engine.full_probabilities(batch)
    assert np.abs(probabilities - full).max() > 1e-3


@pytest.mark.parametrize("mode", ["remove", "mask"])
def test_metric_values_do_not_depend_on_batch_size_or_chunking(sensitive_adapter, batch, attribution, mode):
    def values(engine: PerturbationEngine, the_batch: Batch, the_attribution: Attribution) -> dict[str, np.ndarray]:
        return {
            name: get_metric(name, mode=mode).compute(engine, the_batch, the_attribution).values for name in METRIC_NAMES
        }

    reference = values(PerturbationEngine(sensitive_adapter), batch, attribution)
    for budget in (40, 150):
        chunked = values(PerturbationEngine(sensitive_adapter, max_batch_tokens=budget), batch, attribution)
        for name in METRIC_NAMES:
            np.testing.assert_allclose(chunked[name], reference[name], rtol=0, atol=1e-6, err_msg=f"{name}, budget {budget}")
    for index in range(len(batch)):
        alone = sub_batch(batch, index)
        length = alone.input_ids.shape[1]
        alone_attribution = Attribution(scores=attribution.scores[index : index + 1, :length], explainer="random", version=1)
        single = values(PerturbationEngine(sensitive_adapter), alone, alone_attribution)
        for name in METRIC_NAMES:
            np.testing.assert_allclose(single[name], reference[name][index : index + 1], rtol=0, atol=1e-6, err_msg=name)
    assert not np.allclose(reference["necessity"], 0.0, atol=1e-3), "the model should react to the perturbations"


def test_one_engine_serves_several_batches_without_mixing_them(sensitive_adapter, batch, attribution):
    engine = PerturbationEngine(sensitive_adapter)
    first = sub_batch(batch, 1)
    second = sub_batch(batch, 2)
    a = engine.full_target_probabilities(first)
    b = engine.full_target_probabilities(second)
    np.testing.assert_allclose([a[0], b[0]], engine.full_target_probabilities(batch)[[1, 2]], atol=1e-6)


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["remove", "mask"])
def test_float32_minilm_values_do_not_depend_on_chunking(minilm_adapter, mode):
    """The same check in float32 on the real encoder: padding and chunk shapes move nothing beyond 1e-6."""
    from effbench.types import Example

    texts = [
        "a delight",
        "the plot is thin but the jokes land",
        "nothing here works : not the story , not the music , not the ending , not the cast",
        "a warm funny film about friendship , loss and starting over again",
    ]
    batch = minilm_adapter.make_batch([Example(id=f"ex-{i}", text=text, label=0) for i, text in enumerate(texts)])
    generator = torch.Generator().manual_seed(3)
    attribution = Attribution(scores=torch.randn(batch.input_ids.shape, generator=generator) * batch.scorable_mask, explainer="random", version=1)
    for name in METRIC_NAMES:
        metric = get_metric(name, mode=mode)
        reference = metric.compute(PerturbationEngine(minilm_adapter), batch, attribution).values
        chunked = metric.compute(PerturbationEngine(minilm_adapter, max_batch_tokens=50), batch, attribution).values
        np.testing.assert_allclose(chunked, reference, rtol=0, atol=1e-6, err_msg=name)


def test_engines_on_one_model_share_their_passes(tiny_adapter, tiny_examples):
    from effbench.explainers import get_explainer
    from effbench.metrics import get_metric
    from effbench.metrics.perturbation import PerturbationEngine

    tiny_adapter.perturbation_cache.clear()
    batch = tiny_adapter.make_batch(tiny_examples)
    get_explainer("leave_one_out").explain(tiny_adapter, batch)  # runs the leave-one-out passes in its own engine
    engine = PerturbationEngine(tiny_adapter)
    get_metric("faithfulness").compute(engine, batch, get_explainer("random").explain(tiny_adapter, batch))
    assert engine.sequences_evaluated == 0  # faithfulness needed only those leave-one-out passes
