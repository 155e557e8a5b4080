"""A number does not depend on how the work was cut: batch size, an interruption and resume, or which
explainers ran together (hardening item 7: per-example chunks in the perturbation engine, the tie grid)."""

from __future__ import annotations

import json


EXPLAINERS = ["saliency", "raw_attention", "leave_one_out"]
METRICS = ["necessity", "sufficiency", "faithfulness"]


def per_example(records: list[dict], folder) -> dict:
    """(explainer, metric) -> example id -> value, read from the run's per-example files."""
    values = {}
    for record in records:
        [path] = folder.glob(f"toy/{record['explainer']['name']}-*/per_example.jsonl")
        for line in path.read_text().splitlines():
            row = json.loads(line)
            for metric, entry in row["metrics"].items():
                values.setdefault((record["explainer"]["name"], metric), {})[row["example_id"]] = entry["value"]
    return values


def run(folder, explainers=EXPLAINERS, **config):
    import effbench

    settings = {"limit": 16, "model_kind": "tiny", "output_dir": folder, **config}
    return effbench.evaluate(["toy"], explainers, METRICS, effbench.RunConfig(**settings), progress=False)


def test_batch_sizes_1_4_and_16_give_the_same_numbers(toy_env, tmp_path):
    runs = {size: per_example(run(tmp_path / f"batch-{size}", batch_size=size), tmp_path / f"batch-{size}")
            for size in (1, 4, 16)}
    reference = runs[16]
    for size in (1, 4):
        for key, values in reference.items():
            for example_id, value in values.items():
                other = runs[size][key][example_id]
                if key[1] == "faithfulness":
                    assert other == value, (size, key, example_id)
                else:
                    assert abs(other - value) <= 1e-6, (size, key, example_id, other, value)


def test_a_resumed_run_equals_an_uninterrupted_one(toy_env, tmp_path):
    uninterrupted = run(tmp_path / "whole", batch_size=4)
    run(tmp_path / "cut", batch_size=4, limit=8)  # interrupted after two of four batches
    run(tmp_path / "cut", ["saliency"], batch_size=4)  # then resumed with one explainer
    resumed = run(tmp_path / "cut", batch_size=4)  # and with all
    assert [r["results"] for r in resumed] == [r["results"] for r in uninterrupted]
    assert per_example(resumed, tmp_path / "cut") == per_example(uninterrupted, tmp_path / "whole")
