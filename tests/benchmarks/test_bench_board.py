"""Benchmark: a board's seconds per example, the standard board's explainers and metrics on the toy task.

The run as a board does it (`effbench.evaluate`: length-bucketed batches, the persistent forward cache,
empty at the start), the same run without the forward cache, and the same run with batches in the task's
order and no forward cache (the code before the scale work), all against the bare forward passes of the
same examples (one padded pass per batch: what any explainer must at least pay). Seconds per example and
the ratios are in `extra_info`; the numbers themselves must not change between the runs. On this tiny
model a forward pass costs microseconds, so the cache's lookups weigh about as much as the passes they save
(a sync to disk per entry once made them 1.75x); what the cache saves is the passes of later runs on a real
model. The seconds per example of the real tasks, before and after the scale work, are measured across
checkouts by `scripts/board_seconds.py`. Run with
`python -m pytest tests/benchmarks -m '' --benchmark-enable -q`.
"""

from __future__ import annotations

import json
import time

import pytest
import torch

import effbench
import effbench.runner as runner
from effbench.models.reference import load_reference_model

EXPLAINERS = ["random", "raw_attention", "attention_rollout", "effective_attention", "efficient_attention",
              "attention_norm", "saliency", "grad_x_input", "integrated_gradients", "leave_one_out"]
METRICS = ["necessity", "sufficiency", "faithfulness", "sparsity", "min_sufficient", "min_necessary"]
EXAMPLES = 32  # timed with --benchmark-enable; the default suite checks the numbers on QUICK_EXAMPLES
QUICK_EXAMPLES = 16


def _run(output, forward_cache_gib: float, examples: int) -> tuple[float, dict]:
    config = effbench.RunConfig(limit=examples, batch_size=8, model_kind="tiny", output_dir=output,
                                forward_cache_gib=forward_cache_gib)
    start = time.perf_counter()
    records = effbench.evaluate(["toy"], EXPLAINERS, METRICS, config, progress=False)
    seconds = time.perf_counter() - start
    return seconds, {record["explainer"]["name"]: record["results"] for record in records}


def _per_example_values(output) -> dict:
    values = {}
    for path in sorted(output.glob("**/per_example.jsonl")):
        for line in path.read_text().splitlines():
            row = json.loads(line)
            for metric, value in row["metrics"].items():
                values[(path.parent.name, row["example_id"], metric)] = value["value"]
    return values


def _means(results: dict) -> dict:
    return {(explainer, metric): summary["mean"] for explainer, by_metric in results.items()
            for metric, summary in by_metric.items()}


def test_board_seconds_per_example(benchmark, toy_env, tmp_path, monkeypatch):
    monkeypatch.setenv("EFFBENCH_FORWARD_CACHE", str(tmp_path / "forward-cache.sqlite"))
    examples = QUICK_EXAMPLES if benchmark.disabled else EXAMPLES
    _run(tmp_path / "warm-up", 0, 1)  # trains the tiny model once, outside the timings
    after_seconds, after_results = _run(tmp_path / "after", 2.0, examples)
    uncached_seconds, uncached_results = _run(tmp_path / "uncached", 0, examples)

    def in_task_order(items, lengths, batch_size):
        return [list(items[start: start + batch_size]) for start in range(0, len(items), batch_size)]

    with monkeypatch.context() as patched:
        patched.setattr(runner, "length_bucketed_batches", in_task_order)
        before_seconds, before_results = _run(tmp_path / "before", 0, examples)
    # how the work is batched and cached changes no number beyond float rounding (the README's 1e-6)
    for results in (uncached_results, before_results):
        assert _means(after_results) == pytest.approx(_means(results), rel=0, abs=1e-6)
    after_values = _per_example_values(tmp_path / "after")
    assert len(after_values) == len(EXPLAINERS) * examples * len(METRICS)
    for run in ("uncached", "before"):
        assert after_values == pytest.approx(_per_example_values(tmp_path / run), rel=0, abs=1e-6, nan_ok=True)

    task = effbench.load_task("toy")
    adapter, _ = load_reference_model(task, "tiny", progress=False)
    batches = [adapter.make_batch(task.test[start: start + 8]) for start in range(0, examples, 8)]

    def bare_forward_passes():
        with torch.inference_mode():
            return [adapter.logits(batch.input_ids, batch.attention_mask) for batch in batches]

    benchmark.pedantic(bare_forward_passes, rounds=5, iterations=1)
    forward_seconds = min(benchmark.stats.stats.data) if not benchmark.disabled else None
    benchmark.extra_info.update({
        "examples": examples, "explainers": len(EXPLAINERS), "metrics": len(METRICS),
        "seconds_per_example": round(after_seconds / examples, 4),
        "seconds_per_example_no_cache": round(uncached_seconds / examples, 4),
        "seconds_per_example_task_order_no_cache": round(before_seconds / examples, 4),
        "after_over_task_order_no_cache": round(after_seconds / before_seconds, 3),
        "bucketed_over_task_order": round(uncached_seconds / before_seconds, 3),
        "cache_over_no_cache": round(after_seconds / uncached_seconds, 3),
    })
    if forward_seconds:
        benchmark.extra_info["run_over_bare_forward"] = round(after_seconds / forward_seconds, 1)
    print(f"\ntoy/tiny: {benchmark.extra_info}")
