"""Memory stays flat in the number of examples: the perturbation cache lives for one batch, and a run keeps
in memory only each row's values, flags, target and label (tokens and scores stay in the file)."""

from __future__ import annotations

import pytest


def test_the_perturbation_cache_is_cleared_after_each_batch(toy_env, tmp_path):
    import effbench

    model = effbench.load_model("toy", model_kind="tiny", progress=False)
    config = effbench.RunConfig(limit=8, batch_size=4, output_dir=tmp_path)
    [record] = effbench.evaluate(["toy"], ["leave_one_out"], ["necessity", "faithfulness"], config,
                                 progress=False, model=model)
    assert record["results"]["necessity"]["n"] == 8
    assert model.perturbation_cache == {}


def rss_bytes() -> int:
    import os

    with open(f"/proc/{os.getpid()}/status") as status:
        line = next(line for line in status if line.startswith("VmRSS:"))
    return int(line.split()[1]) * 1024


@pytest.mark.slow
def test_rss_after_10000_examples_is_within_10_percent_of_rss_after_1000(tmp_path, monkeypatch):
    """A run over 10,000 toy examples (random and raw_attention, necessity and faithfulness) resumed from
    one over the first 1,000: the process's RSS grows by at most 10%."""
    import gc

    import effbench
    from toy_task import write_toy_task

    tasks = tmp_path / "tasks"
    tasks.mkdir()
    write_toy_task(tasks, rows=44000)
    monkeypatch.setenv("EFFBENCH_TASK_DIRS", str(tasks))
    monkeypatch.setenv("EFFBENCH_CACHE", str(tmp_path / "cache"))
    explainers, metrics = ["random", "raw_attention"], ["necessity", "faithfulness"]
    effbench.evaluate(["toy"], explainers, metrics, effbench.RunConfig(limit=1000, model_kind="tiny",
                                                                       output_dir=tmp_path / "runs"), progress=False)
    gc.collect()
    after_1000 = rss_bytes()
    [first, _] = effbench.evaluate(["toy"], explainers, metrics, effbench.RunConfig(
        limit=10000, model_kind="tiny", output_dir=tmp_path / "runs"), progress=False)
    gc.collect()
    after_10000 = rss_bytes()
    assert first["task"]["evaluated"] == 10000
    print(f"\nRSS after 1,000 examples {after_1000 / 2**20:.0f} MiB, after 10,000 {after_10000 / 2**20:.0f} MiB "
          f"({after_10000 / after_1000:.3f}x)")
    assert after_10000 <= 1.10 * after_1000
