"""Your own classifier: `--model DIR` on run, diagnose and boards; identity on the weights, labels by name."""

import json
import shutil

import pytest

from effbench.cli import main
from effbench.errors import EffbenchError


@pytest.fixture()
def own_model(toy_env, tmp_path):
    """A classifier saved with save_pretrained, outside effbench's cache: a copy of the toy task's tiny model."""
    from effbench.models.reference import load_reference_model
    from effbench.tasks import load_task

    adapter, _ = load_reference_model(load_task("toy"), "tiny", progress=False)
    folder = tmp_path / "my-classifier"
    adapter.model.save_pretrained(folder)
    adapter.tokenizer.save_pretrained(folder)
    return folder


def run_json(capsys, *argv):
    code = main(["run", "--task", "toy", "--quiet", "--format", "json", *argv])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    return json.loads(captured.out), captured.err  # stdout is one JSON document


def test_run_with_model_dir_records_the_model_and_its_weights(own_model, tmp_path, capsys):
    from effbench.models.adapter import file_sha256

    records, _ = run_json(capsys, "--model", str(own_model), "--explainer", "efficient_attention", "raw_attention",
                          "--metric", "necessity", "--metric", "sufficiency", "--limit", "6",
                          "--output", str(tmp_path / "runs"))
    assert [r["explainer"]["name"] for r in records] == ["efficient_attention", "raw_attention"]
    model = records[0]["model"]
    assert model["checkpoint_sha256"] == file_sha256(own_model / "model.safetensors")
    assert model["source"] == str(own_model.resolve()) and model["training"] is None
    assert model["weight_files"] == ["model.safetensors"]
    assert model["max_length"] == 32 and model["truncation_side"] == "right"  # the card's, not the model's
    assert set(records[0]["results"]) == {"necessity", "sufficiency"}


def test_the_same_weights_at_two_paths_are_one_record(own_model, tmp_path, capsys):
    twin = tmp_path / "elsewhere" / "same-weights"
    shutil.copytree(own_model, twin)
    output = str(tmp_path / "runs")
    first, _ = run_json(capsys, "--model", str(own_model), "--explainer", "random", "--metric", "sparsity",
                        "--limit", "4", "--output", output)
    second, _ = run_json(capsys, "--model", str(twin), "--explainer", "random", "--metric", "sparsity",
                         "--limit", "4", "--output", output)
    assert first[0]["identity_sha256"] == second[0]["identity_sha256"]
    assert len(list((tmp_path / "runs" / "toy").iterdir())) == 1


def test_pickle_weights_are_refused_in_one_line(own_model, tmp_path, capsys):
    import torch
    from safetensors.torch import load_file

    pickled = tmp_path / "pickled"
    shutil.copytree(own_model, pickled)
    torch.save(load_file(pickled / "model.safetensors"), pickled / "pytorch_model.bin")
    (pickled / "model.safetensors").unlink()
    code = main(["run", "--task", "toy", "--model", str(pickled), "--limit", "2", "--quiet"])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err
    assert "pytorch_model.bin" in err and "safetensors only" in err and len(err.strip().splitlines()) == 1


def test_a_missing_folder_and_a_wrong_label_count_are_clear_errors(own_model, tmp_path, capsys):
    import transformers

    code = main(["run", "--task", "toy", "--model", str(tmp_path / "nowhere"), "--quiet"])
    assert code == 2 and "no such folder" in capsys.readouterr().err
    three = tmp_path / "three-labels"
    model = transformers.AutoModelForSequenceClassification.from_pretrained(own_model, num_labels=3,
                                                                             ignore_mismatched_sizes=True)
    model.save_pretrained(three)
    transformers.AutoTokenizer.from_pretrained(own_model).save_pretrained(three)
    code = main(["run", "--task", "toy", "--model", str(three), "--quiet"])
    assert code == 2 and "has 3 labels but task toy has 2" in capsys.readouterr().err


def test_labels_are_mapped_by_name_when_both_sides_name_them(own_model, tmp_path):
    import torch
    import transformers

    from effbench.models.loading import load_own_model
    from effbench.tasks import load_task

    task = load_task("toy")
    swapped = tmp_path / "swapped"
    model = transformers.AutoModelForSequenceClassification.from_pretrained(own_model)
    head = model.classifier
    with torch.no_grad():  # swap the two outputs and their names: the same classifier, other label order
        head.weight.copy_(head.weight.flip(0))
        head.bias.copy_(head.bias.flip(0))
    model.config.id2label = {0: "POSITIVE", 1: "NEGATIVE"}
    model.config.label2id = {"POSITIVE": 0, "NEGATIVE": 1}
    model.save_pretrained(swapped)
    transformers.AutoTokenizer.from_pretrained(own_model).save_pretrained(swapped)

    original, mapped = load_own_model(str(own_model), task), load_own_model(str(swapped), task)
    assert mapped.class_order.tolist() == [1, 0]
    batch = original.tokenize([example.text for example in task.test[:5]])
    expected = original.logits(batch["input_ids"], batch["attention_mask"])
    assert torch.allclose(mapped.logits(batch["input_ids"], batch["attention_mask"]), expected, atol=1e-6)


def test_unnamed_labels_go_by_the_cards_order_with_a_warning(own_model, tmp_path, capsys):
    import transformers

    from effbench.models.loading import load_own_model
    from effbench.tasks import load_task

    renamed = tmp_path / "renamed"
    shutil.copytree(own_model, renamed)
    config = transformers.AutoConfig.from_pretrained(renamed)
    config.id2label, config.label2id = {0: "bad", 1: "good"}, {"bad": 0, "good": 1}
    config.save_pretrained(renamed)
    adapter = load_own_model(str(renamed), load_task("toy"))
    assert adapter.class_order is None
    assert "labels (bad, good) do not name task toy's classes (negative, positive)" in capsys.readouterr().err


def test_a_model_that_reads_fewer_tokens_than_the_card_warns_and_reads_what_it_can(own_model, tmp_path, capsys):
    import transformers

    from effbench.models.loading import load_own_model
    from effbench.tasks import load_task

    short = tmp_path / "short"
    shutil.copytree(own_model, short)
    tokenizer = transformers.AutoTokenizer.from_pretrained(short)
    tokenizer.model_max_length = 16
    tokenizer.save_pretrained(short)
    adapter = load_own_model(str(short), load_task("toy"))
    assert adapter.max_length == 16
    assert "reads at most 16 tokens, fewer than task toy's max_length 32" in capsys.readouterr().err


def test_diagnose_takes_the_model_too(own_model, capsys):
    code = main(["diagnose", "--task", "toy", "--model", str(own_model), "--limit", "4", "--quiet", "--format", "json"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    document = json.loads(captured.out)
    assert document["model"]["source"] == str(own_model.resolve())
    assert [row["layer"] for row in document["layers"]] == ["0", "1", "all"]


def test_a_hub_id_resolves_through_the_hub_cache_offline(own_model, tmp_path, monkeypatch):
    """The hub code path, offline: a local hub cache laid out as huggingface_hub lays it out."""
    import huggingface_hub

    from effbench.models.loading import resolve_model_folder

    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = tmp_path / "hub" / "models--someone--toy-classifier"
    shutil.copytree(own_model, repo / "snapshots" / commit)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    folder, hub_id, revision = resolve_model_folder(f"someone/toy-classifier@{commit}")
    assert (folder / "model.safetensors").is_file() and hub_id == "someone/toy-classifier" and revision == commit
    with pytest.raises(EffbenchError, match="cannot fetch model 'someone/other'"):
        resolve_model_folder("someone/other")


def test_a_board_names_a_model_per_task_and_keeps_no_local_path(own_model, tmp_path):
    import yaml

    from effbench.leaderboard import build_board, run_board

    board = tmp_path / "board"
    board.mkdir()
    shutil.copytree(own_model, board / "models" / "toy")
    (board / "board.yaml").write_text(yaml.safe_dump({
        "name": "board", "description": "The toy task on a model of its own.", "tasks": ["toy"],
        "explainers": ["random"], "metrics": ["sparsity"], "main_metric": "sparsity", "limit": 4,
        "model": {"toy": "models/toy"}, "model_kind": "tiny",
    }))
    [record] = run_board(board, progress=False)
    assert record["model"]["source"] is None and record["config"]["model"] is None and record["config"]["output_dir"] is None
    text = "".join(path.read_text() for path in (board / "records").rglob("*.json*"))
    assert str(tmp_path) not in text
    assert build_board(board).records["toy"]["random"].record["model"]["checkpoint_sha256"]
