"""The guard against degenerate reference models: a model that (nearly) always answers the majority class.

The synthetic `majority` task has labels that do not depend on the text (80% "common", 20% "rare"),
so the tiny model learns to answer "common" for every input; the `toy` task of conftest.py is the
non-degenerate control.
"""

from __future__ import annotations

import csv
import json
import os
import random
import shutil
from collections import Counter
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml

from effbench.cli import main
from effbench.errors import CardError, EffbenchError
from effbench.paths import REPO_ROOT

FILLER = ["the", "film", "plot", "cast", "was", "really", "quite", "and", "story", "ending", "music", "a"]
MAJORITY_CARD = {
    "name": "majority", "version": 1, "description": "Synthetic: 80/20 labels that do not depend on the text.",
    "license": "CC0-1.0", "citation": "@misc{majority, title={A degenerate test task}}", "source": "datasets",
    "dataset": "majority.csv", "text_field": "text", "label_field": "label", "reader": "datasets",
    "raw_labels": ["common", "rare"], "labels": ["common", "rare"], "max_length": 32, "test_fraction": 0.25,
    "split_salt": "majority", "train_epochs": 1, "learning_rate": 5.0e-5, "train_batch_size": 16,
}


def write_majority_task(folder: Path, rows: int = 400, **card_changes) -> None:
    generator = random.Random(0)
    with open(folder / "majority.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["text", "label"])
        for _ in range(rows):
            text = " ".join(generator.choices(FILLER, k=generator.randrange(4, 14)))
            writer.writerow([text, "common" if generator.random() < 0.8 else "rare"])
    (folder / "majority.yaml").write_text(yaml.safe_dump({**MAJORITY_CARD, **card_changes}, sort_keys=False))


@pytest.fixture(scope="session")
def majority_tasks(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("majority-tasks")
    write_majority_task(folder)
    return folder


@pytest.fixture()
def both_tasks(toy_folders, majority_tasks, monkeypatch):
    """The `majority` and `toy` tasks registered, with the session's toy cache (each tiny model trains once)."""
    monkeypatch.setenv("EFFBENCH_TASK_DIRS", os.pathsep.join([str(toy_folders["tasks"]), str(majority_tasks)]))
    monkeypatch.setenv("EFFBENCH_CACHE", str(toy_folders["cache"]))
    return toy_folders


def reference(task_name: str):
    from effbench.models.reference import checkpoint_dir, load_reference_model, training_config
    from effbench.tasks import load_task

    task = load_task(task_name)
    adapter, training = load_reference_model(task, "tiny", progress=False)
    return task, adapter, training, checkpoint_dir(task, training_config(task, "tiny"))


def test_training_records_the_majority_rate_and_the_degenerate_flag(both_tasks):
    task, _, training, folder = reference("majority")
    gold = Counter(example.label for example in task.test)
    rate = max(gold.values()) / len(task.test)
    assert gold[0] > gold[1] > 0  # "common" is the majority class, and the test split has both
    assert training == json.loads((folder / "training.json").read_text())
    assert training["majority_class"] == "common"
    assert training["majority_rate"] == pytest.approx(rate)
    assert training["prediction_counts"] == {"common": len(task.test), "rare": 0}
    assert training["test_accuracy"] == pytest.approx(rate)
    assert training["per_class_recall"] == {"common": 1.0, "rare": 0.0}
    assert training["macro_f1"] == pytest.approx(rate / (1 + rate))  # F1 2p/(1+p) for "common", 0 for "rare", halved
    assert training["degenerate"] is True
    assert training["config"]["class_balanced"] is False


def test_the_toy_model_is_not_degenerate(both_tasks):
    task, _, training, _ = reference("toy")
    assert training["degenerate"] is False
    assert training["test_accuracy"] > training["majority_rate"] + 0.2
    assert set(training["per_class_recall"]) == {"negative", "positive"}
    assert sum(training["prediction_counts"].values()) == len(task.test)
    assert 0.9 <= training["macro_f1"] <= 1.0


def test_the_warning_line_is_given_at_the_margin_and_not_above_it():
    from effbench.models.reference import DEGENERATE_MARGIN, degenerate_warning

    assert DEGENERATE_MARGIN == 0.01
    warning = degenerate_warning("t", 0.76, 0.75, "test split")
    assert warning == ("the model of task t is degenerate: accuracy 0.760 on the test split <= majority-class rate "
                       "0.750 + 0.01; its explanations describe a (near-)constant function")
    assert degenerate_warning("t", 0.7601, 0.75, "test split") is None
    assert degenerate_warning("t", None, 0.75, "test split") is None


def test_train_prints_the_majority_rate_and_warns_about_a_degenerate_model(both_tasks, capsys):
    assert main(["train", "--task", "majority", "--kind", "tiny"]) == 0
    captured = capsys.readouterr()
    assert "majority-class rate 0.8" in captured.out
    assert "macro-F1 0." in captured.out and "recall per class: common 1.000, rare 0.000" in captured.out
    [warning] = [line for line in captured.err.splitlines() if "WARNING" in line]
    assert warning.startswith("effbench: WARNING: the model of task majority is degenerate: accuracy 0.8")
    assert "on the test split <= majority-class rate" in warning

    assert main(["train", "--task", "toy", "--kind", "tiny"]) == 0
    captured = capsys.readouterr()
    assert "majority-class rate" in captured.out and "recall per class: negative" in captured.out
    assert "WARNING" not in captured.err


def test_run_warns_once_per_task_and_records_the_check(both_tasks, tmp_path, capsys):
    _, _, training, _ = reference("majority")
    output = tmp_path / "runs"
    code = main(["run", "--task", "majority", "toy", "--model-kind", "tiny", "--explainer", "random", "raw_attention",
                 "--metric", "sparsity", "--limit", "8", "--output", str(output), "--quiet"])
    assert code == 0
    err = capsys.readouterr().err
    warnings = [line for line in err.splitlines() if line.startswith("effbench: WARNING:")]
    assert len(warnings) == 1 and "task majority is degenerate" in warnings[0]

    records = {path.parent.name.split("-")[0]: json.loads(path.read_text())
               for path in output.glob("majority/*/record.json")}
    assert set(records) == {"random", "raw_attention"}
    for record in records.values():
        assert record["model"]["degenerate"] == {"degenerate": True, "test_accuracy": training["test_accuracy"],
                                                 "majority_rate": training["majority_rate"],
                                                 "measured_on": "test split"}
    [toy_record] = [json.loads(path.read_text()) for path in output.glob("toy/random-*/record.json")]
    assert toy_record["model"]["degenerate"]["degenerate"] is False


def test_the_check_does_not_change_the_record_folder(both_tasks, tmp_path):
    """The block is not part of the run's identity: the folder name hashes the same identity as before."""
    import effbench
    from effbench.explainers import get_explainer
    from effbench.metrics import get_metric
    from effbench.records import sha256_json
    from effbench.runner import _component, record_folder

    task, adapter, training, _ = reference("majority")
    config = effbench.RunConfig(limit=4, model_kind="tiny", output_dir=tmp_path)
    [record] = effbench.evaluate(["majority"], ["random"], ["sparsity"], config, progress=False)
    explainer = get_explainer("random", seed=0)
    identity = {
        "task": {"name": "majority", "version": 1, "card_hash": task.card_hash, "data_hash": task.data_hash},
        "model": {"name": adapter.name, "checkpoint_sha256": training["checkpoint_sha256"]},
        "explainer": _component(explainer), "metrics": [_component(get_metric("sparsity"))],
        "perturbation": "remove", "seed": 0, "dtype": "float32",
    }
    assert record["identity_sha256"] == sha256_json(identity)
    assert (record_folder(tmp_path, "majority", "random", sha256_json(identity)) / "record.json").exists()


def test_a_model_given_by_the_caller_is_checked_on_the_evaluated_examples(both_tasks, tmp_path, capsys):
    import effbench

    def saved(adapter, name):  # the user's own classifier: a folder, with no effbench training record
        folder = tmp_path / name
        adapter.model.save_pretrained(folder)
        adapter.tokenizer.save_pretrained(folder)
        return str(folder)

    task, adapter, _, _ = reference("majority")
    config = effbench.RunConfig(limit=12, model_kind="tiny", output_dir=tmp_path)
    capsys.readouterr()
    [record] = effbench.evaluate(["majority"], ["random"], ["sparsity"], config, progress=False,
                                 model=saved(adapter, "majority-model"))
    gold = Counter(example.label for example in task.test[:12])
    block = record["model"]["degenerate"]
    assert block["measured_on"] == "evaluated examples"
    assert block["majority_rate"] == pytest.approx(max(gold.values()) / 12)
    assert block["test_accuracy"] == record["accuracy_on_evaluated"] == pytest.approx(gold[0] / 12)
    assert block["degenerate"] is True
    err = capsys.readouterr().err
    assert "effbench: WARNING: the model of task majority is degenerate: accuracy 0." in err
    assert "on the evaluated examples <= majority-class rate" in err

    _, toy_adapter, _, _ = reference("toy")
    [toy_record] = effbench.evaluate(["toy"], ["random"], ["sparsity"], config, progress=False,
                                     model=saved(toy_adapter, "toy-model"))
    assert toy_record["model"]["degenerate"]["degenerate"] is False
    assert "WARNING" not in capsys.readouterr().err


def test_a_training_record_from_before_the_check_still_loads(both_tasks, tmp_path, monkeypatch, capsys):
    """An older training.json lacks the new fields: the majority rate comes from the test split's labels."""
    import effbench

    task, _, training, folder = reference("majority")
    cache = tmp_path / "cache"
    shutil.copytree(folder, cache / "models" / "majority" / folder.name)
    old = {key: value for key, value in training.items() if key not in (
        "majority_class", "majority_rate", "macro_f1", "per_class_recall", "prediction_counts", "degenerate")}
    old["config"] = {key: value for key, value in old["config"].items() if key != "class_balanced"}
    (cache / "models" / "majority" / folder.name / "training.json").write_text(json.dumps(old))
    monkeypatch.setenv("EFFBENCH_CACHE", str(cache))

    assert main(["train", "--task", "majority", "--kind", "tiny"]) == 0
    captured = capsys.readouterr()
    assert "macro-F1 unknown" in captured.out and "recall per class: unknown" in captured.out
    assert f"majority-class rate {training['majority_rate']:.3f}" in captured.out
    assert "effbench: WARNING: the model of task majority is degenerate" in captured.err

    config = effbench.RunConfig(limit=4, model_kind="tiny", output_dir=tmp_path / "runs")
    [record] = effbench.evaluate(["majority"], ["random"], ["sparsity"], config, progress=False)
    assert record["model"]["degenerate"]["majority_rate"] == pytest.approx(training["majority_rate"])
    assert record["model"]["degenerate"]["degenerate"] is True
    assert record["model"]["training"] == old  # the checkpoint was reused, not retrained


def test_a_board_shows_the_degenerate_task_with_a_banner(both_tasks, tmp_path):
    from effbench.leaderboard import build_board, run_board

    board = tmp_path / "board"
    board.mkdir()
    (board / "board.yaml").write_text(yaml.safe_dump({
        "name": "board", "description": "A degenerate task and a healthy one.", "tasks": ["majority", "toy"],
        "explainers": ["random", "raw_attention"], "metrics": ["sparsity"], "main_metric": "sparsity",
        "limit": 8, "batch_size": 8, "seed": 0, "model_kind": "tiny", "perturbation": "remove",
    }))
    run_board(board, progress=False)
    build_board(board)

    readme = (board / "README.md").read_text()
    sections = dict(section.split("\n", 1) for section in readme.split("## Task: ")[1:])
    assert sections["majority"].lstrip().startswith("> ⚠ Warning: the model of task majority is degenerate: "
                                                    "accuracy 0.8")
    assert "⚠" not in sections["toy"] and readme.count("⚠") == 1
    page = (board / "index.html").read_text()
    majority_html = page.split('id="task-majority"')[1].split('id="task-toy"')[0]
    assert majority_html.count('class="warning degenerate"') == 1 and "task majority is degenerate" in majority_html
    assert page.count('class="warning degenerate"') == 1
    tasks = json.loads((board / "results.json").read_text())["tasks"]
    assert tasks["majority"]["degenerate"]["degenerate"] is True
    assert tasks["majority"]["degenerate"]["measured_on"] == "test split"
    assert tasks["toy"]["degenerate"]["degenerate"] is False

    # records written before the check: not known, so no banner
    for path in (board / "records" / "majority").glob("*/record.json"):
        record = json.loads(path.read_text())
        del record["model"]["degenerate"]
        path.write_text(json.dumps(record))
    build_board(board)
    assert "⚠" not in (board / "README.md").read_text() and "warning degenerate" not in (board / "index.html").read_text()
    assert json.loads((board / "results.json").read_text())["tasks"]["majority"]["degenerate"] is None


def test_a_malformed_check_in_a_record_is_a_clear_error(tmp_path):
    from effbench.recordio import read_record
    from test_leaderboard import make_record, write_record

    record, rows = make_record("mr-sentences", "saliency", {"necessity": [0.1, 0.2]})
    record["model"]["degenerate"] = {"degenerate": "yes", "test_accuracy": 0.5, "majority_rate": 0.5,
                                     "measured_on": "test split"}
    path = write_record(tmp_path, record, rows)
    with pytest.raises(EffbenchError, match=r"key 'model\.degenerate\.degenerate' must be true, false or null"):
        read_record(path)


# ---- class-balanced training -----------------------------------------------------------------------


def test_class_balanced_training_changes_the_key_and_the_model(both_tasks, tmp_path, monkeypatch):
    from effbench.models.reference import checkpoint_dir, load_reference_model, training_config
    from effbench.tasks import load_task

    task = load_task("toy")
    assert task.card.class_balanced is False
    default = checkpoint_dir(task, training_config(task, "tiny"))
    balanced = checkpoint_dir(task, training_config(task, "tiny", class_balanced=True))
    assert default != balanced and default.parent == balanced.parent

    folder = tmp_path / "balanced-tasks"
    folder.mkdir()
    write_majority_task(folder, class_balanced=True)
    monkeypatch.setenv("EFFBENCH_TASK_DIRS", str(folder))
    monkeypatch.setenv("EFFBENCH_CACHE", str(tmp_path / "cache"))
    task = load_task("majority")
    assert task.card.class_balanced is True
    _, training = load_reference_model(task, "tiny", progress=False)
    assert training["config"]["class_balanced"] is True
    assert training["prediction_counts"]["rare"] > 0  # the weighted loss no longer pays only for "common"


def test_the_default_checkpoint_keys_are_those_of_the_committed_board(tmp_path, monkeypatch):
    """Cards without class_balanced keep their checkpoint keys: the standard board's records name them."""
    from effbench.models.reference import TrainingConfig, checkpoint_dir

    monkeypatch.setenv("EFFBENCH_CACHE", str(tmp_path))

    records = sorted((REPO_ROOT / "leaderboards" / "standard" / "records").glob("*/random-*/record.json"))
    if not records:
        pytest.skip("the standard board has no records")
    for path in records:
        model = json.loads(path.read_text())["model"]
        training = model["training"]
        task = SimpleNamespace(card=SimpleNamespace(name=training["task"]), card_hash=training["card_hash"],
                               data_hash=training["data_hash"])
        folder = checkpoint_dir(task, TrainingConfig(**training["config"]))
        assert f"{training['task']}/{folder.name}" == model["name"]


@pytest.mark.parametrize("value", ["yes", 1, "true"])
def test_a_bad_class_balanced_value_is_a_one_line_card_error(tmp_path, value):
    from effbench.tasks.card import parse_card

    write_majority_task(tmp_path, rows=10, class_balanced=value)
    with pytest.raises(CardError) as caught:
        parse_card(tmp_path / "majority.yaml")
    message = str(caught.value)
    assert "\n" not in message
    assert "field 'class_balanced'" in message and "must be true or false" in message
