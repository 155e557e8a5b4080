"""The persistent forward cache and length-bucketed batches: less work, the same numbers."""

from __future__ import annotations

import json

import numpy as np
import pytest

from effbench.forward_cache import ForwardCache, model_key, request_key
from effbench.metrics.perturbation import PerturbationEngine


def test_probabilities_come_back_bit_for_bit(tmp_path):
    cache = ForwardCache(tmp_path / "cache.sqlite")
    values = np.random.default_rng(0).random((5, 3))
    cache.put("a", values)
    assert cache.get("b") is None
    np.testing.assert_array_equal(cache.get("a"), values)
    assert (cache.hits, cache.misses) == (1, 1)
    cache.close()
    reopened = ForwardCache(tmp_path / "cache.sqlite")  # another process, or a resume
    assert reopened.get("a").tobytes() == values.tobytes()


def test_entries_are_written_without_a_sync_to_disk_each(tmp_path):
    # a sync per entry made a fresh run with the cache 1.75x slower than without it on the toy model
    # (tests/benchmarks/test_bench_board.py); in WAL mode NORMAL syncs only at checkpoints
    cache = ForwardCache(tmp_path / "cache.sqlite")
    assert cache._connection.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert cache._connection.execute("PRAGMA synchronous").fetchone()[0] == 1  # NORMAL


def test_the_cache_stays_within_its_size_and_drops_the_least_recently_used(tmp_path):
    entry = np.zeros((10, 2))  # 160 bytes
    cache = ForwardCache(tmp_path / "cache.sqlite", max_bytes=3 * entry.nbytes)
    for key in "abc":
        cache.put(key, entry)
    cache.get("a")  # a is now used more recently than b
    cache.put("d", entry)
    cache.evict()
    assert cache.size_bytes() <= 3 * entry.nbytes
    assert cache.get("b") is None and cache.get("a") is not None and cache.get("d") is not None


def test_an_unusable_cache_warns_once_and_the_run_goes_on(tmp_path, capsys):
    (tmp_path / "taken").mkdir()
    cache = ForwardCache(tmp_path / "taken")  # a folder where the file should be
    assert not cache.usable
    assert cache.get("a") is None
    cache.put("a", np.zeros((1, 2)))
    cache.close()
    assert capsys.readouterr().err.count("is not usable") == 1


def test_bad_sizes_are_clear_errors(tmp_path):
    from effbench.errors import EffbenchError
    from effbench.runner import RunConfig

    with pytest.raises(EffbenchError, match="positive number of bytes"):
        ForwardCache(tmp_path / "cache.sqlite", max_bytes=0)
    with pytest.raises(EffbenchError, match="number of GiB >= 0"):
        RunConfig(forward_cache_gib=-1)


def test_the_key_names_the_model_its_dtype_device_threads_and_the_rows():
    rows = [np.array([101, 7, 102]), np.array([101, 102])]
    base = request_key("model-a", {"max_batch_tokens": 8}, rows)
    assert base == request_key("model-a", {"max_batch_tokens": 8}, [row.copy() for row in rows])
    assert base != request_key("model-b", {"max_batch_tokens": 8}, rows)
    assert base != request_key("model-a", {"max_batch_tokens": 9}, rows)
    assert base != request_key("model-a", {"max_batch_tokens": 8}, rows[::-1])
    # the boundary between rows is part of the key, not only their concatenation
    assert base != request_key("model-a", {"max_batch_tokens": 8}, [np.array([101, 7]), np.array([102, 101, 102])])


@pytest.fixture
def toy_model(toy_env):
    from effbench.models.reference import load_reference_model
    from effbench.tasks import load_task

    adapter, _ = load_reference_model(load_task("toy"), "tiny", progress=False)
    return adapter


def test_a_model_of_unknown_weights_is_never_cached(tiny_adapter):
    assert tiny_adapter.provenance is None and model_key(tiny_adapter) is None


def test_the_key_of_a_model_changes_with_its_class_order(toy_model):
    before = model_key(toy_model)
    assert json.loads(before)["checkpoint_sha256"] == toy_model.provenance.checkpoint_sha256
    toy_model.set_class_order([1, 0])
    assert model_key(toy_model) != before


def test_a_second_engine_reads_the_same_bits_from_the_cache(toy_model, tmp_path):
    from effbench.explainers import get_explainer
    from effbench.metrics import get_metric
    from effbench.tasks import load_task

    batch = toy_model.make_batch(load_task("toy").test[:6])
    attribution = get_explainer("random").explain(toy_model, batch)
    toy_model.forward_cache = ForwardCache(tmp_path / "cache.sqlite")
    values = {}
    for attempt in ("fresh", "cached"):
        toy_model.perturbation_cache.clear()  # as in a new process
        engine = PerturbationEngine(toy_model, sets_family="sets of random")
        values[attempt] = [get_metric(name).compute(engine, batch, attribution).values
                           for name in ("necessity", "sufficiency", "faithfulness", "min_necessary")]
        if attempt == "fresh":
            assert engine.sequences_evaluated > 0 and engine.sequences_from_forward_cache == 0
        else:
            assert engine.sequences_evaluated == 0 and engine.sequences_from_forward_cache > 0
    for fresh, cached in zip(values["fresh"], values["cached"]):
        assert np.asarray(fresh).tobytes() == np.asarray(cached).tobytes()


def _run(output, explainers, metrics, **config):
    import effbench

    return effbench.evaluate(["toy"], explainers, metrics,
                             effbench.RunConfig(limit=10, batch_size=4, output_dir=output, model_kind="tiny", **config),
                             progress=False)


def test_leave_one_out_is_paid_once_across_runs(toy_env, tmp_path):
    [explained] = _run(tmp_path / "first", ["leave_one_out"], ["sparsity"])
    [scored] = _run(tmp_path / "second", ["random"], ["faithfulness"])  # another process would do the same
    assert explained["passes_this_session"]["explainer"]["computed"] > 0
    faithfulness = scored["passes_this_session"]["faithfulness"]
    assert faithfulness["computed"] == 0 and faithfulness["from_forward_cache"] == faithfulness["requested"] > 0


def test_a_rerun_computes_no_metric_pass_and_gives_the_same_record(toy_env, tmp_path):
    metrics = ["necessity", "sufficiency", "faithfulness", "min_sufficient", "min_necessary"]
    [first] = _run(tmp_path / "first", ["random"], metrics)
    [again] = _run(tmp_path / "again", ["random"], metrics)
    assert all(first["passes_this_session"][name]["computed"] > 0 for name in ("necessity", "faithfulness"))
    assert all(again["passes_this_session"][name]["computed"] == 0 for name in metrics)
    assert again["results"] == first["results"]
    [uncached] = _run(tmp_path / "uncached", ["random"], metrics, forward_cache_gib=0)
    assert uncached["passes_this_session"]["necessity"]["from_forward_cache"] == 0
    assert uncached["results"] == first["results"]
    rows = {name: (tmp_path / name / "toy").glob("random-*/per_example.jsonl") for name in ("first", "again")}
    assert next(rows["first"]).read_text() == next(rows["again"]).read_text()


def test_records_count_the_backward_rows_of_explainers_and_of_metrics_that_rerun_them(toy_env, tmp_path):
    records = _run(tmp_path, ["raw_attention", "saliency", "integrated_gradients"],
                   ["necessity", "sensitivity_max", "model_randomisation"])
    passes = {record["explainer"]["name"]: record["passes_this_session"] for record in records}
    examples = 10
    assert passes["raw_attention"]["explainer"]["backward"] == 0
    assert passes["saliency"]["explainer"]["backward"] == examples  # one gradient per sentence
    assert passes["integrated_gradients"]["explainer"]["backward"] == 20 * examples  # one per step (20)
    assert all(passes[name]["necessity"]["backward"] == 0 for name in passes)  # erasure runs forwards only
    # sensitivity_max explains each input again alone and 5 noisy copies of it: saliency's gradients, none for attention
    assert passes["saliency"]["sensitivity_max"]["backward"] == (1 + 5) * examples
    assert passes["raw_attention"]["sensitivity_max"]["backward"] == 0
    assert passes["raw_attention"]["sensitivity_max"]["computed"] >= 5 * examples  # its forwards, outside the engine
    # the randomisation check explains each batch again on a re-initialised copy of the model, whose passes count too
    assert passes["saliency"]["model_randomisation"]["backward"] == examples
    assert passes["integrated_gradients"]["model_randomisation"]["backward"] == 20 * examples
    assert passes["raw_attention"]["model_randomisation"]["computed"] == examples  # one forward of each batch


def test_minimal_conditions_reuse_the_necessity_and_sufficiency_passes(toy_env, tmp_path):
    [record] = _run(tmp_path, ["random"], ["necessity", "sufficiency", "min_sufficient", "min_necessary"],
                    forward_cache_gib=0)
    passes = record["passes_this_session"]
    for name in ("min_sufficient", "min_necessary"):
        assert passes[name]["computed"] < passes[name]["requested"]  # grid points shared with the erasure curves


def test_batches_group_examples_of_similar_length_longest_first():
    from effbench.runner import length_bucketed_batches

    lengths = [5, 30, 7, 29, 6, 31, 5]
    batches = length_bucketed_batches(list(range(7)), lengths, 3)
    assert batches == [[5, 1, 3], [2, 4, 0], [6]]  # ties keep the task's order


def test_rows_are_written_in_the_task_order(toy_env, tmp_path):
    from effbench.tasks import load_task

    [record] = _run(tmp_path, ["random"], ["sparsity"])
    [rows_file] = tmp_path.glob("toy/random-*/per_example.jsonl")
    ids = [json.loads(line)["example_id"] for line in rows_file.read_text().splitlines()]
    assert ids == [example.id for example in load_task("toy").test[:10]]
    assert record["task"]["evaluated"] == 10


def test_a_run_pads_at_most_1_15_tokens_per_real_token(toy_model, tmp_path, monkeypatch):
    """Counted over a run of integrated gradients and necessity on inputs of 3 to 42 tokens, every pass
    through the model included."""
    import csv

    import yaml

    import effbench
    from effbench.models.adapter import ClassifierAdapter

    card = yaml.safe_load((toy_model_card_folder() / "toy.yaml").read_text())
    with open(tmp_path / "spread.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["text", "label"])
        for index in range(48):
            words = ["plain", "movie", "scene", "story"] * 10
            writer.writerow([" ".join(words[: 1 + (index * 7) % 40] + ["great" if index % 2 else "awful"]),
                             "pos" if index % 2 else "neg"])
    card.update(name="spread", dataset=str(tmp_path / "spread.csv"), test_fraction=0.9, max_length=64)
    (tmp_path / "spread.yaml").write_text(yaml.safe_dump(card))

    counts = {"padded": 0, "real": 0}
    forward = ClassifierAdapter._run

    def counting(self, input_ids, attention_mask, *args, **kwargs):
        counts["padded"] += attention_mask.numel()
        counts["real"] += int(attention_mask.sum())
        return forward(self, input_ids, attention_mask, *args, **kwargs)

    monkeypatch.setattr(ClassifierAdapter, "_run", counting)
    config = effbench.RunConfig(batch_size=8, output_dir=tmp_path / "runs", forward_cache_gib=0)
    effbench.evaluate([str(tmp_path / "spread.yaml")], ["integrated_gradients"], ["necessity"], config,
                      progress=False, model=toy_model)
    assert counts["real"] > 0 and counts["padded"] / counts["real"] <= 1.15


def toy_model_card_folder():
    import os
    from pathlib import Path

    return Path(os.environ["EFFBENCH_TASK_DIRS"])
