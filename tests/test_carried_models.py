"""The reference models a board folder carries (checkpoints/*.tar, `effbench models export` files) are the very
checkpoints its committed rows were computed on: imported into an empty cache, they name the same run folders."""

from __future__ import annotations

import json
import tarfile

import pytest

from effbench.leaderboard import load_board
from effbench.leaderboard.running import board_explainers, board_run_config
from effbench.paths import REPO_ROOT

CARRIED = sorted((REPO_ROOT / "leaderboards").glob("*/checkpoints/*.tar"))


def manifest_of(export) -> dict:
    with tarfile.open(export) as archive:
        return json.load(archive.extractfile("effbench-checkpoint.json"))


@pytest.mark.parametrize("export", CARRIED, ids=[f"{p.parent.parent.name}/{p.name}" for p in CARRIED])
def test_a_carried_model_imports_and_names_the_folders_of_the_committed_rows(export, real_tasks_cache, monkeypatch):
    from effbench.models.transfer import import_checkpoint
    from effbench.runner import prepare_task, run_components

    board_dir = export.parent.parent
    board = load_board(board_dir)
    task = manifest_of(export)["task"]
    assert task in board.tasks
    monkeypatch.setenv("EFFBENCH_CACHE", str(real_tasks_cache))  # the tasks' data; no MiniLM trained there
    _, record = import_checkpoint(export)
    assert record["checkpoint_sha256"] == manifest_of(export)["checkpoint_sha256"]

    import effbench.models.reference as reference

    def no_training(*args, **kwargs):
        raise AssertionError("the imported model must be used, not retrained")

    monkeypatch.setattr(reference, "train_reference_model", no_training)
    config = board_run_config(board, board_dir, task)
    explainers, metrics = run_components(board_explainers(board), board.metrics, config)
    prepared = prepare_task(task, explainers, metrics, config, progress=False)
    folders = [run["folder"] for run in prepared.runs]
    missing = [folder.name for folder in folders
               if not (folder / "per_example.jsonl").is_file() or not (folder / "per_example.jsonl").stat().st_size]
    assert not missing, f"{export.name}: no committed rows for the runs {missing} on its checkpoint"
