"""README's recipes, run as written: your own model, your own explainer, contributing from another machine."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from readme import readme_recipe

BIN = Path(sys.executable).parent  # the effbench command of this environment


@pytest.fixture()
def workdir(tmp_path, real_tasks_cache):
    """A folder to run recipes in, with the shared cache of the shipped tasks and their tiny models."""
    env = {**os.environ, "EFFBENCH_CACHE": str(real_tasks_cache), "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
           "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}", "PYTHONPATH": str(tmp_path)}
    env.pop("EFFBENCH_TASK_DIRS", None)

    def bash(script: str) -> subprocess.CompletedProcess:
        result = subprocess.run(["bash", "-euo", "pipefail", "-c", script], cwd=tmp_path, env=env,
                                capture_output=True, text=True, timeout=900)
        assert result.returncode == 0, f"recipe failed:\n{script}\n{result.stderr[-3000:]}"
        return result

    return tmp_path, bash


def save_tiny_classifier(folder: Path, corpus: list[str]) -> None:
    """A two-label BERT classifier saved with save_pretrained: what a user brings as ./my-classifier."""
    import torch
    import transformers

    from effbench.models.reference import train_word_piece_tokenizer

    torch.manual_seed(0)
    tokenizer = train_word_piece_tokenizer(corpus, vocab_size=300, min_frequency=1)
    config = transformers.BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=64, num_hidden_layers=2,
                                     num_attention_heads=2, intermediate_size=128, max_position_embeddings=128,
                                     num_labels=2)
    transformers.BertForSequenceClassification(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)


def test_the_own_model_recipe(workdir, corpus_sentences):
    folder, bash = workdir
    save_tiny_classifier(folder / "my-classifier", corpus_sentences)
    result = bash(readme_recipe("own-model"))
    records = json.loads((folder / "my-results.json").read_text())
    assert [r["explainer"]["name"] for r in records] == ["efficient_attention", "raw_attention", "integrated_gradients"]
    assert all(set(r["results"]) == {"necessity", "sufficiency"} and r["task"]["evaluated"] == 20 for r in records)
    assert records[0]["model"]["source"] == str((folder / "my-classifier").resolve())
    assert "| layer" in result.stdout and "null dim" in result.stdout  # diagnose's table


def test_the_own_explainer_recipes(workdir):
    folder, bash = workdir
    module = readme_recipe("own-explainer-module")
    path = folder / module.splitlines()[0].removeprefix("# ").strip()  # the block's first line names its file
    assert path.relative_to(folder) == Path("my_package/explainers.py")
    path.parent.mkdir()
    (path.parent / "__init__.py").write_text("")
    path.write_text(module)

    checked = bash(f"python -c {shlex.quote(readme_recipe('own-explainer'))}")
    assert "TokenLength keeps the explainer contract" in checked.stdout
    scored = bash(readme_recipe("own-explainer-run"))
    assert "token_length" in scored.stdout and "faithfulness" in scored.stdout
    [record] = [json.loads(p.read_text()) for p in (folder / "runs" / "mr-sentences").glob("token_length-*/record.json")]
    assert record["explainer"]["params"] == {"power": 2} and record["task"]["evaluated"] == 20


def test_the_contribute_recipe_mirrored_on_a_toy_board(toy_env, tmp_path, monkeypatch, capsys):
    """The recipe's commands, on a toy board with tiny models: export where the model is cached, import into an
    empty cache (another machine), run the board (nothing recomputed), build it."""
    from effbench.cli import main

    commands = [shlex.split(line.split("#")[0]) for line in readme_recipe("contribute").splitlines() if line.strip()]
    assert [command[1:3] for command in commands] == [["models", "import"], ["leaderboard", "run"], ["leaderboard", "build"]]

    board = tmp_path / "leaderboards" / "toy-board"
    board.mkdir(parents=True)
    (board / "board.yaml").write_text(yaml.safe_dump({
        "name": "toy-board", "description": "Two explainers on the toy task.", "tasks": ["toy"],
        "explainers": ["random", "raw_attention"], "metrics": ["necessity", "sparsity"], "main_metric": "necessity",
        "limit": 8, "batch_size": 8, "model_kind": "tiny",
    }))
    monkeypatch.chdir(tmp_path)
    assert main(["leaderboard", "run", "toy-board", "--output", str(board), "--quiet"]) == 0  # the board's machine
    rows = {path: path.read_text() for path in board.rglob("per_example.jsonl")}
    assert main(["models", "export", "toy", "--model-kind", "tiny", "--to", str(tmp_path)]) == 0
    [export] = tmp_path.glob("effbench-toy-tiny-*.tar")

    monkeypatch.setenv("EFFBENCH_CACHE", str(tmp_path / "another-machine"))
    capsys.readouterr()
    assert main(["models", "import", str(export)]) == 0
    assert main(["leaderboard", "run", str(board), "--task", "toy", "--quiet"]) == 0
    assert main(["leaderboard", "build", str(board), "--quiet"]) == 0
    captured = capsys.readouterr()
    assert "leaderboard toy-board: " in captured.out and "train toy" not in captured.err
    assert {path: path.read_text() for path in board.rglob("per_example.jsonl")} == rows  # every record reused
    assert not (board / "superseded").exists()
    assert [p.name for p in (tmp_path / "another-machine" / "models" / "toy").iterdir()] == [export.stem.removeprefix("effbench-toy-")]


def test_the_known_answer_recipe(workdir):
    """README's "A task with a known answer": the oracle is perfect on the planted examples, and the tiny model,
    which does not pass the learnability check on this task, is warned about (as the README says)."""
    folder, bash = workdir
    result = bash(readme_recipe("known-answer-run"))
    assert "localisation_auprc" in result.stdout and "pointing_game" in result.stdout
    assert "WARNING: the model of task mr-sentences-trigger did not learn its planted trigger 'zebra'" in result.stderr
    records = {json.loads(p.read_text())["explainer"]["name"]: json.loads(p.read_text())
               for p in (folder / "runs" / "mr-sentences-trigger").glob("*/record.json")}
    assert set(records) == {"oracle", "random", "saliency"}
    for name in ("localisation_auprc", "pointing_game", "relevance_mass"):
        assert records["oracle"]["results"][name]["mean"] == 1.0 and records["oracle"]["results"][name]["n"] > 10
        assert records["random"]["results"][name]["mean"] < 0.5
