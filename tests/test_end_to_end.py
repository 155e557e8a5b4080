"""The whole path on the synthetic task and a tiny model: task -> model -> explainer -> metric -> record."""

import json

from effbench.cli import main


def test_run_prints_a_table_and_writes_a_record(toy_env, tmp_path, capsys):
    output = tmp_path / "runs"
    code = main(["run", "--task", "toy", "--model-kind", "tiny", "--explainer", "raw_attention",
                 "--metric", "necessity", "--limit", "20", "--output", str(output), "--quiet"])
    out = capsys.readouterr().out
    assert code == 0
    assert "| toy " in out and "raw_attention" in out and "necessity" in out and "95% CI" in out

    [record_path] = output.glob("toy/raw_attention-*/record.json")
    record = json.loads(record_path.read_text())
    result = record["results"]["necessity"]
    assert result["n"] == 20
    assert result["low"] <= result["mean"] <= result["high"]
    assert -1.0 <= result["mean"] <= 1.0
    assert record["explainer"] == {**record["explainer"], "name": "raw_attention"}
    assert record["explainer"]["params"]["layer"] == -1
    assert record["model"]["training"]["checkpoint_sha256"]
    assert record["model"]["max_length"] == 32 and record["model"]["truncation_side"] == "right"
    assert record["task"]["data_hash"] and record["environment"]["torch"]

    rows = [json.loads(line) for line in (record_path.parent / "per_example.jsonl").read_text().splitlines()]
    assert len(rows) == 20
    assert len({row["example_id"] for row in rows}) == 20
    assert all(len(row["tokens"]) == len(row["scores"]) for row in rows)
    mean = sum(row["metrics"]["necessity"]["value"] for row in rows) / len(rows)
    assert abs(mean - result["mean"]) < 1e-9
    bins = rows[0]["metrics"]["necessity"]["details"]["bins"]
    assert set(bins) == {"0.01", "0.05", "0.1", "0.2", "0.5"}
    assert abs(sum(bins.values()) / 5 - rows[0]["metrics"]["necessity"]["value"]) < 1e-9


def test_the_run_perturbation_mode_reaches_the_metrics(toy_env, tmp_path):
    import effbench

    config = effbench.RunConfig(limit=4, model_kind="tiny", perturbation="mask", output_dir=tmp_path)
    [record] = effbench.evaluate(["toy"], ["random"], ["necessity", "sparsity"], config, progress=False)
    params = {metric["name"]: metric["params"] for metric in record["metrics"]}
    assert params["necessity"]["mode"] == "mask"
    assert "mode" not in params["sparsity"]
    assert record["config"]["perturbation"] == "mask"


def test_the_record_carries_the_class_names_outside_its_identity(toy_env, tmp_path):
    import effbench
    from effbench.records import sha256_json

    config = effbench.RunConfig(limit=4, model_kind="tiny", output_dir=tmp_path)
    [record] = effbench.evaluate(["toy"], ["random"], ["sparsity"], config, progress=False)
    assert record["task"]["labels"] == ["negative", "positive"]
    # the identity (and so the record's folder name) is what it was before records carried labels
    task = record["task"]
    identity = {
        "task": {key: task[key] for key in ("name", "version", "card_hash", "data_hash")},
        "model": {"name": record["model"]["name"],
                  "checkpoint_sha256": record["model"]["training"]["checkpoint_sha256"]},
        "explainer": {key: record["explainer"][key] for key in ("name", "version", "params")},
        "metrics": [{key: metric[key] for key in ("name", "version", "params")} for metric in record["metrics"]],
        "perturbation": "remove", "seed": 0, "dtype": "float32",
    }
    assert record["identity_sha256"] == sha256_json(identity)
    [folder] = (tmp_path / "toy").glob("random-*")
    assert folder.name == f"random-{sha256_json(identity)[:10]}"


def test_a_board_rerun_on_a_new_model_moves_the_old_records_aside_and_builds(toy_folders, tmp_path, monkeypatch, capsys):
    import shutil

    import yaml

    from effbench.leaderboard import build_board, run_board

    tasks = tmp_path / "tasks"
    tasks.mkdir()
    shutil.copy(toy_folders["tasks"] / "toy.csv", tasks / "toy.csv")
    card = yaml.safe_load((toy_folders["tasks"] / "toy.yaml").read_text())
    (tasks / "toy.yaml").write_text(yaml.safe_dump(card))
    monkeypatch.setenv("EFFBENCH_TASK_DIRS", str(tasks))
    monkeypatch.setenv("EFFBENCH_CACHE", str(tmp_path / "cache"))
    board = tmp_path / "board"
    board.mkdir()
    (board / "board.yaml").write_text(yaml.safe_dump({
        "name": "board", "description": "Two explainers on the toy task.", "tasks": ["toy"],
        "explainers": ["random", "raw_attention"], "metrics": ["necessity", "sparsity"], "main_metric": "necessity",
        "limit": 8, "batch_size": 8, "seed": 0, "model_kind": "tiny", "perturbation": "remove",
    }))

    first = run_board(board, progress=False)
    build_board(board)
    first_folders = sorted(path.parent.name for path in (board / "records" / "toy").glob("*/record.json"))
    assert len(first_folders) == 2

    card["train_limit"] = 400  # the tiny model trains on fewer examples: another reference model
    (tasks / "toy.yaml").write_text(yaml.safe_dump(card))
    capsys.readouterr()
    second = run_board(board, progress=True)
    assert first[0]["model"]["training"]["checkpoint_sha256"] != second[0]["model"]["training"]["checkpoint_sha256"]
    current = sorted(path.parent.name for path in (board / "records" / "toy").glob("*/record.json"))
    assert len(current) == 2 and not set(current) & set(first_folders)
    assert sorted(path.name for path in (board / "superseded" / "toy").iterdir()) == first_folders
    assert "another task card or data, model checkpoint" in capsys.readouterr().err
    result = build_board(board)
    assert set(result.records["toy"]) == {"random", "raw_attention"}
    assert {record.record["identity_sha256"][:10] for record in result.records["toy"].values()} == {
        name.rsplit("-", 1)[1] for name in current}
