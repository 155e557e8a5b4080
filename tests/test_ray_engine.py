"""The Ray engine: a board's (task, explainer, shard) cells on Ray workers give the local engine's records."""

from __future__ import annotations

import json
import math
import re
import socket
import sys

import pytest
import yaml

from effbench.errors import EffbenchError
from effbench.leaderboard import ray_engine
from effbench.leaderboard.ray_engine import Cell, actor_resources, check_address, next_cell, plan_cells

FLAKY_MODULE = '''
import os

import torch

from effbench.explainers.base import Explainer


class Flaky(Explainer):
    """Scores each token by its length; fails on the example named by $FLAKY_FAIL_ON, as a broken explainer would."""

    name = "flaky_length"
    version = 1
    citation = "@misc{flaky, title={Token length, failing on demand}}"
    defaults = {}

    def scores(self, model, batch):
        if os.environ.get("FLAKY_FAIL_ON") in batch.example_ids:
            raise RuntimeError("failing on demand")
        tokens = [model.tokenizer.convert_ids_to_tokens(row) for row in batch.input_ids.tolist()]
        return torch.tensor([[float(len(token)) for token in row] for row in tokens])
'''
EXPLAINERS = ["random", "raw_attention", "saliency", "leave_one_out", "flaky_explainers:Flaky"]
METRICS = ["necessity", "sufficiency", "faithfulness", "sparsity"]
LIMIT, BATCH_SIZE = 12, 4


def write_board(folder) -> None:
    folder.mkdir()
    (folder / "board.yaml").write_text(yaml.safe_dump({
        "name": "board", "description": "Five explainers on the toy task.", "tasks": ["toy"],
        "explainers": EXPLAINERS, "metrics": METRICS, "main_metric": "necessity", "limit": LIMIT,
        "batch_size": BATCH_SIZE, "seed": 0, "model_kind": "tiny", "perturbation": "remove",
    }))


def rows_of(board) -> dict[str, list[dict]]:
    """Record folder name -> its per-example rows, in file order."""
    return {path.parent.name: [json.loads(line) for line in path.read_text().splitlines()]
            for path in sorted((board / "records" / "toy").glob("*/per_example.jsonl"))}


def records_of(board) -> dict[str, dict]:
    return {path.parent.name: json.loads(path.read_text())
            for path in sorted((board / "records" / "toy").glob("*/record.json"))}


def assert_close(a, b, where: str) -> None:
    """Equal, but floats only within 1e-6 (and NaN equals NaN), through dicts and lists."""
    if isinstance(a, dict):
        assert isinstance(b, dict) and a.keys() == b.keys(), where
        for key in a:
            assert_close(a[key], b[key], f"{where}.{key}")
    elif isinstance(a, list):
        assert isinstance(b, list) and len(a) == len(b), where
        for number, (x, y) in enumerate(zip(a, b)):
            assert_close(x, y, f"{where}[{number}]")
    elif isinstance(a, float) and not isinstance(b, bool) and isinstance(b, (int, float)):
        assert (math.isnan(a) and math.isnan(b)) or abs(a - b) <= 1e-6, (where, a, b)
    else:
        assert a == b, (where, a, b)


def assert_same_records(local, ray) -> None:
    local_records, ray_records = records_of(local), records_of(ray)
    assert list(local_records) == list(ray_records)  # the same identities name the same folders
    session_only = ("created", "environment", "timings_seconds_this_session", "passes_this_session",
                    "examples_computed_this_session")
    for folder, record in local_records.items():
        assert record["identity_sha256"] == ray_records[folder]["identity_sha256"]
        assert_close({k: v for k, v in record.items() if k not in session_only},
                     {k: v for k, v in ray_records[folder].items() if k not in session_only}, folder)
    local_rows, ray_rows = rows_of(local), rows_of(ray)
    for folder, rows in local_rows.items():
        # one row per example, in the task's example order, whichever cell finished first
        assert [row["example_id"] for row in ray_rows[folder]] == [row["example_id"] for row in rows]
        assert_close(rows, ray_rows[folder], folder)


def test_a_ray_run_gives_the_local_runs_records_and_resumes_after_a_failure(toy_env, tmp_path, monkeypatch, capsys):
    """Two local Ray workers: the records equal the local engine's within 1e-6; a worker's failure is one line
    and keeps the cells finished before it; the rerun computes only the missing cells; a finished board starts
    no Ray."""
    from effbench.cli import main
    from effbench.leaderboard import build_board, run_board
    from effbench.tasks import load_task

    plugins = tmp_path / "plugins"
    plugins.mkdir()
    (plugins / "flaky_explainers.py").write_text(FLAKY_MODULE)
    monkeypatch.syspath_prepend(str(plugins))  # the workers of a local Ray get the driver's sys.path
    local, ray = tmp_path / "local", tmp_path / "ray"
    write_board(local)
    write_board(ray)
    run_board(local, progress=False)

    example_ids = [example.id for example in load_task("toy").test[:LIMIT]]
    monkeypatch.setenv("FLAKY_FAIL_ON", example_ids[-1])
    # the flaky explainer's cells go last: the first cells handed out finish before it fails
    monkeypatch.setitem(ray_engine.EXPLAINER_COST_WEIGHTS, "flaky_length", 0.01)
    capsys.readouterr()
    assert main(["leaderboard", "run", str(ray), "--engine", "ray", "--workers", "2", "--quiet"]) == 2
    # the shard holding the failing example: shards are the local engine's batches, by length
    assert re.fullmatch(r"effbench: error: explainer flaky_length failed on shard [123]/3 of task toy on a Ray worker: "
                        r"RuntimeError: 'failing on demand'; the rows of earlier batches are saved\n",
                        capsys.readouterr().err)
    from effbench.models.reference import load_reference_model
    from effbench.runner import length_bucketed_batches, token_lengths

    model, _ = load_reference_model(load_task("toy"), "tiny", progress=False)
    examples = list(load_task("toy").test[:LIMIT])
    shards = [[example.id for example in batch]
              for batch in length_bucketed_batches(examples, token_lengths(model, examples), BATCH_SIZE)]
    kept_cells = 0
    for rows in rows_of(ray).values():  # persisted cell by cell: whole shards only
        kept = {row["example_id"] for row in rows}
        assert all(set(shard) <= kept or not set(shard) & kept for shard in shards)
        kept_cells += sum(set(shard) <= kept for shard in shards)
    assert 1 <= kept_cells < len(shards) * len(EXPLAINERS)

    planned = []
    plan = ray_engine.plan_cells
    monkeypatch.setattr(ray_engine, "plan_cells", lambda *args: planned.append(plan(*args)) or planned[-1])
    monkeypatch.delenv("FLAKY_FAIL_ON")
    assert main(["leaderboard", "run", str(ray), "--engine", "ray", "--workers", "2", "--quiet"]) == 0
    [(cells, finished)] = planned
    assert finished == kept_cells and len(cells) == len(shards) * len(EXPLAINERS) - kept_cells
    assert_same_records(local, ray)
    assert set(build_board(ray).records["toy"]) == {"random", "raw_attention", "saliency", "leave_one_out",
                                                    "flaky_length"}

    files = sorted((ray / "records" / "toy").glob("*/per_example.jsonl"))
    before = [path.read_bytes() for path in files]
    monkeypatch.setattr(ray_engine, "_dispatch", lambda *args, **kwargs: pytest.fail("a finished board started Ray"))
    run_board(ray, progress=False, engine="ray")
    assert [path.read_bytes() for path in files] == before
    assert_same_records(local, ray)


class _Store:
    def __init__(self, done: set[str]):
        self.done = done

    def missing(self, example_ids, metric_names):
        return any(example_id not in self.done for example_id in example_ids)


class _Named:
    def __init__(self, name: str):
        self.name = name


def test_cells_are_whole_shards_of_missing_examples_costed_by_tokens_and_explainer():
    from effbench.types import Example

    examples = [Example(id=f"e{i}", text="x", label=0) for i in range(5)]
    runs = [{"explainer": _Named("random"), "store": _Store({"e0", "e1", "e2"})},
            {"explainer": _Named("integrated_gradients"), "store": _Store({"e0", "e3"})}]
    cells, finished = plan_cells("toy", runs, examples, [10, 20, 30, 40, 50], ["necessity"], 2)
    # shards are the local engine's batches, longest first: (e4, e3), (e2, e1), (e0)
    assert finished == 3  # random's second and third shards, integrated gradients' third
    assert [(c.explainer, c.shard, c.example_ids, c.cost) for c in cells] == [
        ("random", 0, ("e4", "e3"), 90.0), ("integrated_gradients", 0, ("e4",), 200.0),
        ("integrated_gradients", 1, ("e2", "e1"), 200.0)]
    assert all(c.shards == 3 for c in cells) and cells[0].describe() == "toy random shard 1/3"


def test_rows_are_put_in_the_tasks_order_with_one_row_per_example(tmp_path):
    from effbench.runner import put_rows_in_order as put_in_order

    def row(example_id, **metrics):
        return json.dumps({"example_id": example_id, "target": 0, "metrics": metrics}) + "\n"

    path = tmp_path / "per_example.jsonl"
    path.write_text(row("b", necessity=1) + row("x", necessity=9) + row("a", necessity=2) + row("b", sparsity=3))
    put_in_order(path, ["a", "b", "c"])
    assert path.read_text() == row("a", necessity=2) + row("b", necessity=1, sparsity=3) + row("x", necessity=9)
    written = path.stat()
    put_in_order(path, ["a", "b", "c"])  # already in order: not written again
    assert (path.stat().st_ino, path.stat().st_mtime_ns) == (written.st_ino, written.st_mtime_ns)


def test_a_free_worker_takes_the_longest_cell_of_its_shard_else_the_longest():
    def cell(explainer, shard, cost):
        return Cell("toy", explainer, shard, 3, ("e",), cost)

    pending = [cell("integrated_gradients", 1, 9.0), cell("integrated_gradients", 0, 8.0), cell("saliency", 1, 3.0),
               cell("saliency", 0, 2.5), cell("random", 0, 2.0)]
    assert next_cell(pending, None) == cell("integrated_gradients", 1, 9.0)
    assert next_cell(pending, ("toy", 0)) == cell("integrated_gradients", 0, 8.0)
    assert next_cell(pending, ("toy", 0)) == cell("saliency", 0, 2.5)
    assert next_cell(pending, ("toy", 2)) == cell("saliency", 1, 3.0)
    assert pending == [cell("random", 0, 2.0)]


def test_workers_share_the_gpus_and_a_device_index_is_refused():
    assert actor_resources("cpu", 4, 0) == {"num_cpus": 1}
    assert actor_resources("cpu", 1, 0, threads=2) == {"num_cpus": 2}  # one worker on a 2-CPU machine
    assert actor_resources("cuda", 4, 2) == {"num_cpus": 1, "num_gpus": 0.5}
    assert actor_resources("cuda", 3, 1) == {"num_cpus": 1, "num_gpus": 1 / 3}
    with pytest.raises(EffbenchError, match=r"Ray assigns each worker its GPU; give --device cuda"):
        actor_resources("cuda:1", 2, 2)
    with pytest.raises(EffbenchError, match=r"the Ray cluster has no GPU"):
        actor_resources("cuda", 2, 0)


def test_a_bad_or_unreachable_address_is_one_line():
    with pytest.raises(EffbenchError, match=r"^--address 'head node' is not a Ray address: give HOST:PORT"):
        check_address("head node")
    with pytest.raises(EffbenchError, match=r"is not a Ray address"):
        check_address("10.0.0.1:70000")
    with socket.socket() as listener:  # a port that nothing listens on once closed
        listener.bind(("127.0.0.1", 0))
        port = listener.getsockname()[1]
    with pytest.raises(EffbenchError, match=rf"^cannot reach a Ray cluster at 127.0.0.1:{port}: .*ray start --head"):
        check_address(f"127.0.0.1:{port}")


def test_engine_errors_are_one_line_and_come_before_the_board_folder(capsys, tmp_path, monkeypatch):
    from effbench.cli import main

    board = tmp_path / "copy"
    assert main(["leaderboard", "run", "quick", "--engine", "rya", "--output", str(board)]) == 2
    err = capsys.readouterr().err
    assert err == "effbench: error: unknown engine 'rya' (did you mean 'ray'?); use one of local, ray\n"
    assert main(["leaderboard", "run", "quick", "--workers", "2", "--output", str(board)]) == 2
    assert capsys.readouterr().err == "effbench: error: --address and --workers are options of --engine ray\n"
    assert main(["leaderboard", "run", "quick", "--engine", "ray", "--address", "nowhere", "--output", str(board)]) == 2
    assert "is not a Ray address" in capsys.readouterr().err
    monkeypatch.setitem(sys.modules, "ray", None)  # as if Ray were not installed
    assert main(["leaderboard", "run", "quick", "--engine", "ray", "--output", str(board)]) == 2
    assert capsys.readouterr().err == ("effbench: error: --engine ray needs Ray, which is not installed: "
                                       "pip install 'effbench[ray]'\n")
    assert not board.exists()


def test_the_readme_ray_recipe_uses_the_flags_there_are():
    from readme import readme_recipe

    from effbench.cli import build_parser

    lines = [line.split("#")[0].split() for line in readme_recipe("ray").splitlines()]
    runs = [build_parser().parse_args(line[1:]) for line in lines if line[:1] == ["effbench"]]
    assert [(args.board, args.engine, args.address, args.workers) for args in runs] == [
        ("quick", "ray", None, None), ("quick", "ray", "auto", None)]
    assert lines[0] == ["pip", "install", "'effbench[ray]'"] and lines[2][:3] == ["ray", "start", "--head"]


def test_the_local_engine_does_not_import_ray():
    import subprocess

    code = "import sys, effbench.leaderboard, effbench.cli; print('ray' in sys.modules)"
    output = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert output.split() == ["False"]
