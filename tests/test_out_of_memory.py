"""Out of memory: the work is halved and goes on, and no number changes (effbench.memory).

The out-of-memory errors are raised by hand (torch.OutOfMemoryError is what CUDA's allocator raises);
one CUDA test runs out of the GPU's memory for real.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

import effbench.memory as memory
from effbench.errors import EffbenchError
from effbench.memory import run_halving_on_oom

EXPLAINERS = ["saliency", "integrated_gradients", "efficient_attention", "leave_one_out"]
METRICS = ["necessity", "sufficiency", "faithfulness", "min_sufficient"]


@pytest.fixture(autouse=True)
def fresh_warning(monkeypatch):
    monkeypatch.setattr(memory, "_warned", False)


def failing_above(size: int, calls: list[int], process=lambda items: [item * 10 for item in items]):
    """`process`, raising torch.OutOfMemoryError on more than `size` items; `calls` gets each call's size."""

    def run(items):
        calls.append(len(items))
        if len(items) > size:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB\nmore detail")
        return process(items)

    return run


def test_halves_until_it_fits_keeping_the_order_and_warns_once(capsys):
    calls: list[int] = []
    assert run_halving_on_oom(failing_above(4, calls), list(range(16))) == [item * 10 for item in range(16)]
    assert calls == [16, 8, 4, 4, 8, 4, 4]
    assert run_halving_on_oom(failing_above(4, calls), range(10)) == [item * 10 for item in range(10)]
    err = capsys.readouterr().err
    assert err.count("out of memory on 16 examples: processing them in halves") == 1
    assert len(err.strip().splitlines()) == 1


def test_work_that_fits_runs_once():
    calls: list[int] = []
    assert run_halving_on_oom(failing_above(16, calls), list(range(16))) == [item * 10 for item in range(16)]
    assert calls == [16]


def test_one_item_that_does_not_fit_is_a_one_line_error():
    calls: list[int] = []
    with pytest.raises(EffbenchError) as error:
        run_halving_on_oom(failing_above(0, calls), list(range(3)), what="texts")
    assert calls == [3, 1]  # the first half, one item, does not fit: no further call
    message = str(error.value)
    assert "\n" not in message
    assert message.startswith("out of memory on one of the texts alone (CUDA out of memory. Tried to allocate 2.00 GiB)")


def test_other_errors_are_not_retried():
    calls: list[int] = []

    def broken(items):
        calls.append(len(items))
        raise RuntimeError("a bug, not memory")

    with pytest.raises(RuntimeError, match="a bug, not memory"):
        run_halving_on_oom(broken, list(range(8)))
    assert calls == [8]


def run_rows(model, output) -> list[dict]:
    """The per-example rows of a runner's run of every explainer and metric on 16 toy examples, batch 16."""
    import json

    import effbench

    config = effbench.RunConfig(limit=16, batch_size=16, output_dir=output, model_kind="tiny", forward_cache_gib=0)
    effbench.evaluate(["toy"], EXPLAINERS, METRICS, config, progress=False, model=model)
    rows = []
    for path in sorted(output.glob("toy/*/per_example.jsonl")):
        explainer = path.parent.name.rsplit("-", 1)[0]
        rows += [{**json.loads(line), "explainer": explainer} for line in path.read_text().splitlines()]
    model.perturbation_cache.clear()
    return rows


def assert_same_rows(got: list[dict], expected: list[dict]) -> None:
    key = lambda row: (row["explainer"], row["example_id"])  # noqa: E731
    got, expected = sorted(got, key=key), sorted(expected, key=key)
    assert [key(row) for row in got] == [key(row) for row in expected]
    for row, reference in zip(got, expected):
        assert (row["target"], row["tokens"]) == (reference["target"], reference["tokens"])
        scale = max(1.0, max(map(abs, reference["scores"]), default=0.0))
        assert np.abs(np.array(row["scores"]) - np.array(reference["scores"])).max(initial=0.0) <= 1e-6 * scale
        for metric, entry in reference["metrics"].items():
            assert abs(row["metrics"][metric]["value"] - entry["value"]) <= 1e-6, (key(row), metric)


def test_a_batch_halved_after_running_out_of_memory_gives_every_row_unchanged(toy_env, tmp_path, capsys):
    """An explainer runs out of memory on the first gradient pass of the 16-example batch: the runner goes
    on in halves, and every row equals the uninterrupted run's."""
    import effbench

    model = effbench.load_model("toy", model_kind="tiny", progress=False)
    expected = run_rows(model, tmp_path / "whole")
    assert len(expected) == 16 * len(EXPLAINERS)

    original = model.logits
    failed: list[int] = []

    def logits(*args, **kwargs):
        if not failed and kwargs.get("embedding_output") is not None and len(kwargs["embedding_output"]) == 16:
            failed.append(16)
            raise torch.OutOfMemoryError("CUDA out of memory (injected)")
        return original(*args, **kwargs)

    model.logits = logits
    batch_sizes: list[int] = []
    make_batch = model.make_batch
    model.make_batch = lambda examples: batch_sizes.append(len(examples)) or make_batch(examples)
    got = run_rows(model, tmp_path / "halved")
    assert failed == [16] and batch_sizes == [16, 8, 8]
    assert_same_rows(got, expected)
    assert "processing them in halves" in capsys.readouterr().err


def test_a_perturbation_chunk_that_runs_out_of_memory_is_forwarded_in_halves(toy_env):
    import effbench
    from effbench.metrics.perturbation import PerturbationEngine
    from effbench.tasks import load_task

    model = effbench.load_model("toy", model_kind="tiny", progress=False)
    batch = model.make_batch(list(load_task("toy").test[:4]))
    expected = PerturbationEngine(model).leave_one_out(batch)
    model.perturbation_cache.clear()

    original = model.logits
    sizes: list[int] = []

    def logits(input_ids, attention_mask, **kwargs):  # every chunk of more than 3 rows runs out of memory
        sizes.append(len(input_ids))
        if len(input_ids) > 3:
            raise torch.OutOfMemoryError("CUDA out of memory (injected)")
        return original(input_ids, attention_mask, **kwargs)

    model.logits = logits
    engine = PerturbationEngine(model)
    engine.chunk_log = []
    got = engine.leave_one_out(batch)
    assert any(size > 3 for size in sizes) and max(len(ids) for ids, _ in engine.chunk_log) > 3
    assert engine.sequences_evaluated == sum(len(positions) for positions in engine.scorable_positions(batch))
    for first, second in zip(got, expected):
        assert np.abs(first - second).max() <= 1e-6


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_a_real_cuda_out_of_memory_is_caught_and_halved():
    """Each item takes a sixth of the free GPU memory: 16 and 8 items do not fit, 4 do."""
    free, _ = torch.cuda.mem_get_info()
    per_item = free // 6

    def allocate(items):
        block = torch.empty(len(items) * per_item, dtype=torch.uint8, device="cuda")
        del block
        return list(items)

    calls: list[int] = []
    assert run_halving_on_oom(lambda items: calls.append(len(items)) or allocate(items), list(range(16))) == list(range(16))
    assert calls == [16, 8, 4, 4, 8, 4, 4]
    torch.cuda.empty_cache()
