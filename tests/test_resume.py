"""An interrupted run, restarted with the same arguments, recomputes nothing it finished."""

import json

import pytest

from effbench.explainers.base import Explainer

FAIL_ON_BATCH = {"index": None}


class FailsOnSecondBatch(Explainer):
    """Token ids as scores; raises on the batch numbered in FAIL_ON_BATCH, to interrupt a run."""

    name = "fails_on_second_batch"
    version = 1
    citation = "@misc{test, title={test}}"
    calls = 0

    def scores(self, model, batch):
        FailsOnSecondBatch.calls += 1
        if FAIL_ON_BATCH["index"] == FailsOnSecondBatch.calls:
            raise KeyboardInterrupt
        return batch.input_ids.float()


def count_model_calls(adapter) -> list[int]:
    counter = [0]
    adapter.model.register_forward_hook(lambda module, inputs, output: counter.__setitem__(0, counter[0] + 1))
    return counter


def test_a_restarted_run_computes_only_what_is_missing(toy_env, tmp_path):
    import effbench
    from effbench.models.reference import load_reference_model
    from effbench.tasks import load_task

    adapter, _ = load_reference_model(load_task("toy"), "tiny", progress=False)
    calls = count_model_calls(adapter)
    config = effbench.RunConfig(limit=8, batch_size=4, output_dir=tmp_path, model_kind="tiny")
    explainer = f"{__name__}:FailsOnSecondBatch"

    FAIL_ON_BATCH["index"], FailsOnSecondBatch.calls = 2, 0
    with pytest.raises(KeyboardInterrupt):
        effbench.evaluate(["toy"], [explainer], ["necessity"], config, progress=False, model=adapter)
    [per_example] = tmp_path.glob("toy/fails_on_second_batch-*/per_example.jsonl")
    assert len(per_example.read_text().splitlines()) == 4  # the first batch was saved before the interruption
    calls_for_one_batch = calls[0]

    FAIL_ON_BATCH["index"], FailsOnSecondBatch.calls = None, 0
    adapter.perturbation_cache.clear()
    calls[0] = 0
    [record] = effbench.evaluate(["toy"], [explainer], ["necessity"], config, progress=False, model=adapter)
    assert FailsOnSecondBatch.calls == 1  # only the second batch was explained
    assert calls[0] <= calls_for_one_batch
    assert record["results"]["necessity"]["n"] == 8
    rows = [json.loads(line) for line in per_example.read_text().splitlines()]
    assert len(rows) == 8 and len({row["example_id"] for row in rows}) == 8

    calls[0], FailsOnSecondBatch.calls = 0, 0
    [again] = effbench.evaluate(["toy"], [explainer], ["necessity"], config, progress=False, model=adapter)
    assert calls[0] == 0 and FailsOnSecondBatch.calls == 0  # nothing recomputed
    assert again["results"] == record["results"]


def test_a_line_cut_short_by_an_interruption_is_dropped_and_recomputed(toy_env, tmp_path):
    import effbench
    from effbench.models.reference import load_reference_model
    from effbench.tasks import load_task

    adapter, _ = load_reference_model(load_task("toy"), "tiny", progress=False)
    config = effbench.RunConfig(limit=4, batch_size=4, output_dir=tmp_path, model_kind="tiny")
    [first] = effbench.evaluate(["toy"], ["random"], ["sparsity"], config, progress=False, model=adapter)
    [per_example] = tmp_path.glob("toy/random-*/per_example.jsonl")
    lines = per_example.read_text().splitlines()
    per_example.write_text("\n".join(lines[:3]) + "\n" + lines[3][: len(lines[3]) // 2])  # a torn last line
    [second] = effbench.evaluate(["toy"], ["random"], ["sparsity"], config, progress=False, model=adapter)
    assert second["results"] == first["results"]
    rows = [json.loads(line) for line in per_example.read_text().splitlines() if line.strip().endswith("}")]
    assert len({row["example_id"] for row in rows}) == 4
