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
