"""Leaderboards on synthetic run records written by hand: reading, comparability, ranking, the written report."""

from __future__ import annotations

import csv
import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from effbench.errors import CardError, EffbenchError
from effbench.leaderboard import build_board, load_board, rank_explainers, run_board
from effbench.paths import REPO_ROOT
from effbench.recordio import read_per_example, read_record
from effbench.records import sha256_json
from effbench.stats import bootstrap_mean
from effbench.tasks import load_task

BOARD_NAME = "demo"
CHECKPOINT = "c" * 64
DATA_HASH = "d" * 64
TOKENS = ["the", "film", "is", "a", "real", "delight"]

METRIC_META = {
    "necessity": {"family": "erasure", "direction": "higher", "range": [-1.0, 1.0],
                  "params": {"mode": "remove", "bins": [0.01, 0.05, 0.1, 0.2, 0.5]},
                  "citation": "@inproceedings{deyoung-etal-2020-eraser,\n  title = {ERASER}\n}"},
    "sufficiency": {"family": "erasure", "direction": "lower", "range": [-1.0, 1.0],
                    "params": {"mode": "remove", "bins": [0.01, 0.05, 0.1, 0.2, 0.5]},
                    "citation": "@inproceedings{deyoung-etal-2020-eraser,\n  title = {ERASER}\n}"},
    "sparsity": {"family": "sparsity", "direction": "higher", "range": [0.0, 1.0], "params": {},
                 "citation": "@inproceedings{chalasani2020concise,\n  title = {Concise Explanations}\n}"},
    "infidelity": {"family": "robustness", "direction": "lower", "range": [0.0, float("inf")],
                   "params": {"noise_std": 0.1, "samples": 10, "normalize": True, "seed": 0},
                   "citation": "@inproceedings{yeh2019fidelity,\n  title = {On the (In)fidelity}\n}"},
}


def board_spec(**overrides) -> dict:
    spec = {
        "name": BOARD_NAME, "description": "A synthetic board for tests.", "tasks": ["mr-sentences", "tweets"],
        "explainers": ["random", "saliency", "grad_x_input"], "metrics": ["necessity", "sufficiency"],
        "main_metric": "necessity", "limit": 30, "batch_size": 8, "seed": 0, "model_kind": "minilm",
        "perturbation": "remove",
    }
    spec.update(overrides)
    return spec


def write_board(root: Path, **overrides) -> Path:
    folder = root / overrides.get("name", BOARD_NAME)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "board.yaml").write_text(yaml.safe_dump(board_spec(**overrides), sort_keys=False))
    return folder


def example_ids(count: int = 30) -> list[str]:
    return [f"row-{index}" for index in range(count)]


def make_record(task: str, explainer: str, values: dict[str, list[float]], *, ids: list[str] | None = None,
                tokens: list[list[str]] | None = None, bins: bool = False, **changes) -> tuple[dict, list[dict]]:
    """A run record and its per-example rows with the given per-example metric values.

    `changes` maps dotted keys ("task.data_hash", "metrics.necessity.version") to values that replace
    the defaults, to make records that are not comparable.
    """
    ids = ids or example_ids(len(next(iter(values.values()))))
    rows = []
    for index, example_id in enumerate(ids):
        row_tokens = tokens[index] if tokens else TOKENS
        row_metrics = {}
        for name, metric_values in values.items():
            row_metrics[name] = {"value": metric_values[index], "flags": []}
            if bins and name in ("necessity", "sufficiency"):
                row_metrics[name]["details"] = {"bins": {str(q): metric_values[index] * (1 + q) for q in
                                                         (0.01, 0.05, 0.1, 0.2, 0.5)}}
        rows.append({"example_id": example_id, "label": index % 2, "target": index % 2, "tokens": row_tokens,
                     "scores": [round(0.1 * (position - 2) * (1 if explainer != "random" else -1), 3)
                                for position in range(len(row_tokens))],
                     "metrics": row_metrics})
    record = {
        "schema_version": 1,
        "created": "2026-01-02T03:04:05+00:00",
        "environment": {"effbench": "0.1.0", "python": "3.11.2", "torch": "2.13.0", "transformers": "5.0.0",
                        "platform": "Linux-x86_64", "git_sha": "0123456789abcdef0123456789abcdef01234567",
                        "git_dirty": False},
        "config": {"seed": 0, "limit": len(ids), "batch_size": 8, "device": "cpu", "dtype": "float32",
                   "output_dir": "runs", "model_kind": "minilm", "perturbation": "remove"},
        "task": {"name": task, "version": 1, "card_hash": "a" * 64, "data_hash": DATA_HASH, "test_examples": 100,
                 "evaluated": len(ids), "example_ids_sha256": sha256_json(ids),
                 "citation": f"@misc{{{task}-data,\n  title = {{The {task} data}}\n}}"},
        "model": {"name": "minilm-ft", "checkpoint_sha256": CHECKPOINT,
                  "training": {"checkpoint_sha256": CHECKPOINT, "test_accuracy": 0.875}},
        "explainer": {"name": explainer, "version": 1, "params": {"seed": 0} if explainer == "random" else {},
                      "citation": f"@inproceedings{{{explainer}2020,\n  title = {{{explainer}}}\n}}"},
        "metrics": [{"name": name, "version": 1, **METRIC_META[name]} for name in values],
        "results": {name: {**bootstrap_mean(metric_values), "flagged": 0} for name, metric_values in values.items()},
        "accuracy_on_evaluated": 1.0,
        "timings_seconds_this_session": {"explainer": 1.0},
        "per_example_file": "per_example.jsonl",
    }
    for dotted, value in changes.items():
        target = record
        *path, last = dotted.split(".")
        for key in path:
            target = next(m for m in target if m["name"] == key) if isinstance(target, list) else target[key]
        target[last] = value
    return record, rows


def write_record(board_dir: Path, record: dict, rows: list[dict], folder_name: str | None = None) -> Path:
    task, explainer = record["task"]["name"], record["explainer"]["name"]
    folder = board_dir / "records" / task / (folder_name or f"{explainer}-{sha256_json(record['explainer'])[:10]}")
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "record.json").write_text(json.dumps(record, indent=2))
    (folder / "per_example.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    return folder / "record.json"


def synthetic_values(seed: int, centre: float, count: int = 30, spread: float = 0.05) -> list[float]:
    return [float(v) for v in np.random.default_rng(seed).normal(centre, spread, size=count)]


def populated_board(root: Path, *, bins: bool = False, tokens: list[list[str]] | None = None) -> Path:
    """Two tasks, three explainers: saliency clearly best on necessity; random and grad_x_input identical."""
    board = write_board(root)
    for offset, task in enumerate(("mr-sentences", "tweets")):
        shared = synthetic_values(10 + offset, 0.10)
        per_explainer = {
            "saliency": {"necessity": synthetic_values(20 + offset, 0.50),
                         "sufficiency": synthetic_values(30 + offset, 0.05)},
            "random": {"necessity": shared, "sufficiency": synthetic_values(40 + offset, 0.30)},
            "grad_x_input": {"necessity": list(shared), "sufficiency": synthetic_values(50 + offset, 0.29)},
        }
        for explainer, values in per_explainer.items():
            write_record(board, *make_record(task, explainer, values, bins=bins, tokens=tokens))
    return board


# ---- reading records ----------------------------------------------------------------------------------


def test_record_round_trip(tmp_path):
    record, rows = make_record("mr-sentences", "saliency", {"necessity": synthetic_values(0, 0.4)})
    path = write_record(tmp_path, record, rows)
    assert read_record(path) == record
    assert read_per_example(path) == rows


def test_per_example_rows_merge_resumed_runs_and_skip_a_last_line_cut_short(tmp_path):
    record, rows = make_record("mr-sentences", "saliency", {"necessity": [0.1, 0.2], "sparsity": [0.5, 0.6]})
    path = write_record(tmp_path, record, rows)
    first_pass = [{**row, "metrics": {"necessity": row["metrics"]["necessity"]}} for row in rows]
    second_pass = [{"example_id": row["example_id"], "metrics": {"sparsity": row["metrics"]["sparsity"]}} for row in rows]
    lines = [json.dumps(first_pass[0]), json.dumps(first_pass[1])] + [json.dumps(row) for row in second_pass]
    (path.parent / "per_example.jsonl").write_text("\n".join(lines) + '\n{"example_id": "row-2", "metr')
    merged = read_per_example(path)
    assert [row["example_id"] for row in merged] == ["row-0", "row-1"]
    assert merged[1]["metrics"]["sparsity"]["value"] == 0.6 and merged[1]["metrics"]["necessity"]["value"] == 0.2


def test_a_line_cut_short_before_other_rows_is_malformed(tmp_path):
    """Only the last line can be cut short by an interruption; a broken line among rows is tampering."""
    record, rows = make_record("mr-sentences", "saliency", {"necessity": [0.1, 0.2]})
    path = write_record(tmp_path, record, rows)
    lines = [json.dumps(rows[0]), '{"example_id": "row-1", "metr', json.dumps(rows[1])]
    (path.parent / "per_example.jsonl").write_text("\n".join(lines) + "\n")
    with pytest.raises(EffbenchError, match=r"per_example\.jsonl, line 2: not a JSON object"):
        read_per_example(path)


def _break(record: dict, how: str) -> str:
    if how == "missing key":
        del record["task"]["data_hash"]
    elif how == "schema version":
        record["schema_version"] = 99
    elif how == "wrong type":
        record["task"]["evaluated"] = "thirty"
    elif how == "bad direction":
        record["metrics"][0]["direction"] = "up"
    elif how == "result missing":
        del record["results"]["necessity"]
    elif how == "path in per_example_file":
        record["per_example_file"] = "../../elsewhere.jsonl"
    return json.dumps(record)


@pytest.mark.parametrize("how, expected", [
    ("missing key", r"key 'task\.data_hash' is missing"),
    ("schema version", r"key 'schema_version' is 99; this effbench reads schema versions 1"),
    ("wrong type", r"key 'task\.evaluated' must be a positive integer, got 'thirty'"),
    ("bad direction", r"key 'metrics\[0\]\.direction' must be 'higher' or 'lower'"),
    ("result missing", r"key 'results\.necessity' is missing"),
    ("path in per_example_file", r"key 'per_example_file' must be a plain file name"),
])
def test_a_malformed_record_names_the_file_and_the_problem(tmp_path, how, expected):
    record, rows = make_record("mr-sentences", "saliency", {"necessity": [0.1, 0.2]})
    path = write_record(tmp_path, record, rows)
    path.write_text(_break(record, how))
    with pytest.raises(EffbenchError, match=expected) as caught:
        read_record(path)
    assert str(path) in str(caught.value)


def test_a_record_that_is_not_json_is_a_clear_error(tmp_path):
    path = tmp_path / "record.json"
    path.write_text('{"schema_version": 1, "created": ')
    with pytest.raises(EffbenchError, match=r"is not valid JSON: .* line 1") as caught:
        read_record(path)
    assert str(path) in str(caught.value)


def test_a_malformed_per_example_row_names_the_file_and_line(tmp_path):
    record, rows = make_record("mr-sentences", "saliency", {"necessity": [0.1, 0.2]})
    path = write_record(tmp_path, record, rows)
    rows[1]["metrics"]["necessity"] = {"flags": []}
    (path.parent / "per_example.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    with pytest.raises(EffbenchError, match=r"per_example\.jsonl, line 2: key 'metrics\.necessity' must be"):
        read_per_example(path)


# ---- the board spec ----------------------------------------------------------------------------------


def test_the_shipped_boards_are_valid():
    standard = load_board(REPO_ROOT / "leaderboards" / "standard")
    quick = load_board(REPO_ROOT / "leaderboards" / "quick")
    field = load_board(REPO_ROOT / "leaderboards" / "field")
    assert standard.tasks == ("mr-sentences", "mr-reviews", "bbc-news", "tweets")
    assert len(standard.explainers) == 16 and len(standard.metrics) == 6
    # the costly methods and the metrics that rerun the explainer are on the field board, at most 100 per task
    costly = {"value_zeroing", "attention_flow"}
    assert costly <= set(field.explainers) and not costly & set(standard.explainers)
    assert {"sensitivity_max", "model_randomisation"} <= set(field.metrics)
    assert all(field.limit_for(task) <= 100 for task in field.tasks)
    assert standard.main_metric == "necessity"
    # where the paper's claim lives (long inputs), the whole test sets; at least 500 examples elsewhere
    for task in ("mr-reviews", "bbc-news"):
        assert standard.limit_for(task) == len(load_task(task).test)
    assert standard.limit_for("mr-sentences") >= 500 and standard.limit_for("tweets") >= 500
    assert quick.tasks == ("mr-sentences", "mr-reviews", "bbc-news", "tweets") and quick.limit_for("bbc-news") == 16
    assert quick.explainers == standard.explainers and quick.metrics == standard.metrics


@pytest.mark.parametrize("overrides, expected", [
    ({"colour": "blue"}, r"unknown field 'colour'\. Allowed fields: name, description"),
    ({"limits": 3}, r"unknown field 'limits'\. Did you mean 'limit'\?"),
    ({"model_kind": "bert"}, r"field 'model_kind' \(got 'bert'\) must be one of minilm, tiny"),
    ({"perturbation": "blank"}, r"field 'perturbation' \(got 'blank'\) must be one of remove, mask"),
    ({"tasks": ["mr-sentence"]}, r"field 'tasks' .* \(did you mean 'mr-sentences'"),
    ({"explainers": ["saliancy"]}, r"field 'explainers' .* \(did you mean 'saliency'\?\)"),
    ({"main_metric": "sparsity"}, r"field 'main_metric' \(got 'sparsity'\) must be one of the board's metrics"),
    ({"limit": {"mr-sentences": 10}}, r"field 'limit' .* a mapping from each board task \(mr-sentences, tweets\)"),
    ({"limit": 0}, r"field 'limit' \(got 0\) must be a positive integer"),
    ({"seed": -1}, r"field 'seed' \(got -1\) must be a non-negative integer"),
    ({"name": "Other/board"}, r"field 'name' \(got 'Other/board'\) must be lower-case letters, digits"),
])
def test_a_bad_board_spec_names_the_field_and_what_is_allowed(tmp_path, overrides, expected):
    board = write_board(tmp_path)
    spec = board_spec(**overrides)
    (board / "board.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    with pytest.raises(CardError, match=expected):
        load_board(board)


def test_a_board_spec_takes_explainer_parameters_and_per_task_limits(tmp_path):
    board = write_board(tmp_path, explainers={"random": None, "integrated_gradients": {"steps": 50}},
                        limit={"mr-sentences": 20, "tweets": 10})
    spec = load_board(board)
    assert spec.explainers == {"random": {}, "integrated_gradients": {"steps": 50}}
    assert spec.limit_for("tweets") == 10 and spec.batch_size == 8


# ---- comparability -----------------------------------------------------------------------------------


def test_records_with_different_data_hashes_are_refused_naming_both(tmp_path):
    board = write_board(tmp_path)
    values = {"necessity": synthetic_values(0, 0.3)}
    write_record(board, *make_record("mr-sentences", "saliency", values))
    write_record(board, *make_record("mr-sentences", "random", values, **{"task.data_hash": "e" * 64}))
    with pytest.raises(EffbenchError) as caught:
        build_board(board)
    message = str(caught.value)
    assert "not comparable (task mr-sentences): task.data_hash" in message
    assert f'is "{"e" * 64}" in records/mr-sentences/random-' in message
    assert f'but "{DATA_HASH}" in records/mr-sentences/saliency-' in message
    assert not (board / "README.md").exists()


def test_records_with_different_metric_versions_are_refused_naming_both(tmp_path):
    board = write_board(tmp_path)
    values = {"necessity": synthetic_values(0, 0.3)}
    write_record(board, *make_record("mr-sentences", "saliency", values))
    write_record(board, *make_record("tweets", "random", values, **{"metrics.necessity.version": 2}))
    with pytest.raises(EffbenchError, match=r"not comparable \(metric necessity\): metrics\[necessity\]\.version "
                                            r"is 1 in records/mr-sentences/saliency-\S+ but 2 in records/tweets/random-"):
        build_board(board)


@pytest.mark.parametrize("dotted, value, expected", [
    ("model.checkpoint_sha256", "f" * 64, r"model\.checkpoint_sha256 is \"f+\" in records/mr-sentences/random-\S+ but \"c+\" in records/mr-sentences/saliency-"),
    ("task.example_ids_sha256", None, r"task\.example_ids_sha256"),
    ("metrics.necessity.params", {"mode": "remove", "bins": [0.1]}, r"metrics\[necessity\]\.params is"),
])
def test_other_differences_within_a_task_are_refused(tmp_path, dotted, value, expected):
    board = write_board(tmp_path)
    values = {"necessity": synthetic_values(0, 0.3)}
    write_record(board, *make_record("mr-sentences", "saliency", values))
    if dotted == "task.example_ids_sha256":  # other examples: other ids, hashed consistently
        other = make_record("mr-sentences", "random", values, ids=[f"other-{i}" for i in range(30)])
    else:
        other = make_record("mr-sentences", "random", values, **{dotted: value})
    write_record(board, *other)
    with pytest.raises(EffbenchError, match=expected):
        build_board(board)


def test_two_records_for_one_task_and_explainer_conflict(tmp_path):
    board = write_board(tmp_path)
    values = {"necessity": synthetic_values(0, 0.3)}
    write_record(board, *make_record("mr-sentences", "random", values), folder_name="random-one")
    write_record(board, *make_record("mr-sentences", "random", values, **{"explainer.params": {"seed": 7}}),
                 folder_name="random-two")
    with pytest.raises(EffbenchError) as caught:
        build_board(board)
    message = str(caught.value)
    assert 'explainer.params is {"seed": 0} in records/mr-sentences/random-one/record.json but {"seed": 7}' in message
    assert "two records for task mr-sentences, explainer random" in message


def test_records_that_depart_from_the_board_spec_are_refused(tmp_path):
    board = write_board(tmp_path)
    values = {"necessity": synthetic_values(0, 0.3, count=20)}
    write_record(board, *make_record("mr-sentences", "saliency", values, **{"config.perturbation": "mask"}))
    with pytest.raises(EffbenchError) as caught:
        build_board(board)
    assert 'config.perturbation is "mask" but board demo sets "remove"' in str(caught.value)
    assert "task.evaluated is 20 but board demo sets 30" in str(caught.value)


def test_per_example_rows_must_be_the_evaluated_examples_and_match_the_means(tmp_path):
    board = write_board(tmp_path)
    record, rows = make_record("mr-sentences", "saliency", {"necessity": synthetic_values(0, 0.3)})
    path = write_record(board, record, rows[:-1])
    with pytest.raises(EffbenchError, match=r"are not the 30 evaluated examples"):
        build_board(board)
    record["results"]["necessity"]["mean"] += 0.01
    path.write_text(json.dumps(record))
    (path.parent / "per_example.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    with pytest.raises(EffbenchError, match=r"results\.necessity \(mean .*\) disagrees with the per-example rows"):
        build_board(board)


def test_records_off_the_board_are_ignored_with_a_note(tmp_path):
    board = populated_board(tmp_path)
    write_record(board, *make_record("bbc-news", "saliency", {"necessity": synthetic_values(0, 0.3)}))
    write_record(board, *make_record("mr-sentences", "leave_one_out", {"necessity": synthetic_values(1, 0.3)}))
    result = build_board(board)
    assert any("ignored records/bbc-news/" in note and "task bbc-news is not on this board" in note for note in result.notes)
    assert any("explainer leave_one_out is not on this board" in note for note in result.notes)
    assert {s.task for s in result.standings} == {"mr-sentences", "tweets"}
    assert "leave_one_out" not in {s.explainer for s in result.standings}
    assert "task bbc-news is not on this board" in (board / "README.md").read_text()


def test_runs_under_way_are_noted_with_their_progress_and_the_command_that_resumes_them(tmp_path):
    board = populated_board(tmp_path)
    (board / "board.yaml").write_text(yaml.safe_dump(board_spec(tasks=["mr-sentences", "tweets", "bbc-news"]),
                                                     sort_keys=False))
    for explainer, complete in (("saliency", 12), ("random", 10)):
        _, rows = make_record("bbc-news", explainer, {"necessity": synthetic_values(0, 0.3, count=12),
                                                      "sufficiency": synthetic_values(1, 0.3, count=12)})
        for row in rows[complete:]:
            del row["metrics"]["sufficiency"]  # stopped between two metrics
        folder = board / "records" / "bbc-news" / f"{explainer}-0123456789"
        folder.mkdir(parents=True)
        text = "".join(json.dumps(row) + "\n" for row in rows)
        (folder / "per_example.jsonl").write_text(text + text.splitlines()[0][:40])  # and a last line cut short
    result = build_board(board)
    expected = ("task bbc-news: a run under way in 2 folder(s) with no record yet: 10 to 12 of 30 examples have "
                "every metric (`effbench leaderboard run demo --task bbc-news` resumes it)")
    assert expected in result.notes
    assert "no records yet for task bbc-news" in result.notes
    assert {s.task for s in result.standings} == {"mr-sentences", "tweets"}
    assert "10 to 12 of 30 examples have every metric" in (board / "README.md").read_text()


def test_a_run_folder_with_unreadable_rows_only_is_named_in_a_note(tmp_path):
    board = populated_board(tmp_path)
    (board / "board.yaml").write_text(yaml.safe_dump(board_spec(tasks=["mr-sentences", "tweets", "bbc-news"]),
                                                     sort_keys=False))
    folder = board / "records" / "bbc-news" / "saliency-0123456789"
    folder.mkdir(parents=True)
    (folder / "per_example.jsonl").write_text("not json\n{}\n")  # broken before its last line
    result = build_board(board)
    assert "task bbc-news: unfinished run folder(s) with no record yet; unreadable rows in saliency-0123456789" \
        in result.notes


# ---- ranking -----------------------------------------------------------------------------------------


def test_rank_explainers_follows_the_direction_and_tests_neighbours():
    good, bad = synthetic_values(1, 0.6), synthetic_values(2, 0.2)
    ids = example_ids()
    values = {"good": dict(zip(ids, good)), "bad": dict(zip(ids, bad)), "bad_copy": dict(zip(ids, bad))}
    means = {name: float(np.mean(list(v.values()))) for name, v in values.items()}
    higher = rank_explainers(means, values, "higher")
    assert [e.explainer for e in higher] == ["good", "bad", "bad_copy"]
    assert higher[0].significant_vs_next is True and higher[0].p_vs_next < 0.05
    assert higher[1].significant_vs_next is False and higher[1].p_vs_next == 1.0
    assert higher[2].significant_vs_next is None and not higher[2].tied_with_best
    lower = rank_explainers(means, values, "lower")
    assert [e.explainer for e in lower] == ["bad", "bad_copy", "good"]
    assert [e.rank for e in lower] == [1, 1, 3]  # equal means share a rank
    assert lower[1].tied_with_best and lower[1].p_vs_best == 1.0


def test_the_better_explainer_ranks_first_and_identical_ones_are_not_significant(tmp_path):
    board = populated_board(tmp_path)
    result = build_board(board)
    for task in ("mr-sentences", "tweets"):
        necessity = sorted((s for s in result.standings if s.task == task and s.metric == "necessity"),
                           key=lambda s: s.rank)
        assert [s.explainer for s in necessity] == ["saliency", "grad_x_input", "random"]  # ties by name
        assert necessity[0].significant_vs_next is True
        assert necessity[1].significant_vs_next is False and necessity[1].p_vs_next == 1.0
        sufficiency = sorted((s for s in result.standings if s.task == task and s.metric == "sufficiency"),
                             key=lambda s: s.rank)
        assert sufficiency[0].explainer == "saliency"  # lower is better
    assert [row.explainer for row in result.overall][0] == "saliency"
    assert result.overall[0].mean_rank == 1.0
    header, *rows = _markdown_tables((board / "README.md").read_text())["Task: mr-sentences"]
    assert header[:2] == ["explainer", "necessity ↑"]
    assert [row[0] for row in rows] == ["saliency", "grad_x_input", "random"]
    # random and grad_x_input have the same values: one shared rank
    assert rows[0][1].endswith("#1") and rows[1][1].endswith("#2 ≈") and rows[2][1].endswith("#2")


# ---- the written report ------------------------------------------------------------------------------

CELL_RE = re.compile(r"(n/a|-?\d+\.\d{3}) \[(n/a|-?\d+\.\d{3}), (n/a|-?\d+\.\d{3})\] #(\d+)( [†≈]+)?")


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def _markdown_tables(readme: str) -> dict[str, list[list[str]]]:
    """Section heading -> the rows (split into cells, header first) of the first table under it."""
    tables: dict[str, list[list[str]]] = {}
    heading, current = None, None
    for line in readme.splitlines():
        if line.startswith("## "):
            heading, current = line[3:], None
        elif line.startswith("|"):
            if current is None:
                if heading in tables:
                    continue
                current = tables[heading] = []
            if not re.fullmatch(r"\|[-| :]+\|", line):
                current.append([cell.strip() for cell in line.strip("|").split("|")])
        else:
            current = None
    return tables


def test_the_readme_agrees_with_results_json(tmp_path):
    board = populated_board(tmp_path)
    build_board(board)
    document = json.loads((board / "results.json").read_text())
    tables = _markdown_tables((board / "README.md").read_text())
    by_key = {(row["task"], row["explainer"], row["metric"]): row for row in document["rows"]}
    assert len(by_key) == 2 * 3 * 2

    seen = set()
    for task in document["board"]["tasks"]:
        header, *rows = tables[f"Task: {task}"]
        metrics = [cell.split(" ")[0] for cell in header[1:]]
        assert metrics[0] == document["board"]["main_metric"]
        assert header[1:] == [f"{m} {'↑' if document['metrics'][m]['direction'] == 'higher' else '↓'}" for m in metrics]
        for cells in rows:
            explainer = cells[0]
            for metric, cell in zip(metrics, cells[1:]):
                match = CELL_RE.fullmatch(cell)
                assert match, cell
                row = by_key[(task, explainer, metric)]
                assert match.group(1, 2, 3) == (_fmt(row["mean"]), _fmt(row["low"]), _fmt(row["high"]))
                assert int(match.group(4)) == row["rank"]
                assert ("≈" in (match.group(5) or "")) == (row["significant_vs_next"] is False)
                assert ("†" in (match.group(5) or "")) == (row["tied_with_best"] and row["rank"] > 1)
                seen.add((task, explainer, metric))
    assert seen == set(by_key)

    header, *rows = tables["Overall"]
    assert len(rows) == len(document["overall"])
    for cells, row in zip(rows, document["overall"]):
        assert cells[0] == row["explainer"] and cells[1] == f"{row['mean_rank']:.2f}"
        assert cells[3:] == [str(row["ranks"][task]) for task in header[3:]]


def test_results_csv_has_one_row_per_task_explainer_and_metric(tmp_path):
    board = populated_board(tmp_path)
    build_board(board)
    rows = list(csv.DictReader((board / "results.csv").open()))
    document = json.loads((board / "results.json").read_text())
    assert len(rows) == len(document["rows"]) == 12
    first = rows[0]
    assert first["task"] == "mr-sentences" and first["metric"] == "necessity" and first["rank"] == "1"
    assert float(first["mean"]) == pytest.approx(document["rows"][0]["mean"])
    assert json.loads(first["metric_params"]) == METRIC_META["necessity"]["params"]


def test_readme_carries_provenance_and_citations_are_deduplicated(tmp_path):
    board = populated_board(tmp_path)
    result = build_board(board)
    readme = (board / "README.md").read_text()
    for expected in ("0123456789abcdef0123456789abcdef01234567", DATA_HASH, CHECKPOINT, "test accuracy 0.875",
                     "30 of 100 test examples evaluated", "| torch", "2.13.0", "| device", "cpu"):
        assert expected in readme
    bib = (board / "citations.bib").read_text()
    keys = re.findall(r"@\w+\{([^,]+),", bib)
    assert keys[0] == "effbench"
    assert len(keys) == len(set(keys))
    assert set(keys) == {"effbench", "deyoung-etal-2020-eraser", "saliency2020", "random2020", "grad_x_input2020",
                         "mr-sentences-data", "tweets-data"}
    assert "```bibtex\n@software{effbench," in readme
    assert result.files["citations.bib"] == board / "citations.bib"


def test_a_board_without_records_is_a_clear_error(tmp_path):
    board = write_board(tmp_path)
    with pytest.raises(EffbenchError, match=r"board demo has no records for its tasks and explainers"):
        build_board(board)


def test_run_board_runs_each_task_with_the_board_settings(tmp_path, monkeypatch):
    import effbench.runner

    board = write_board(tmp_path, limit={"mr-sentences": 20, "tweets": 10}, perturbation="mask",
                        metrics=["necessity", "sparsity"])
    calls = []
    monkeypatch.setattr(effbench.runner, "evaluate",
                        lambda tasks, explainers, metrics, config, progress: calls.append((tasks, explainers, metrics, config)) or [])
    run_board(board, progress=False)
    assert [(tasks, config.limit) for tasks, _, _, config in calls] == [(["mr-sentences"], 20), (["tweets"], 10)]
    tasks, explainers, metrics, config = calls[0]
    assert config.output_dir == board / "records" and config.perturbation == "mask" and config.batch_size == 8
    assert metrics == {"necessity": {}, "sparsity": {}}  # the runner gives perturbation metrics the mode
    assert list(explainers) == ["random", "saliency", "grad_x_input"]


def test_importing_the_leaderboard_does_not_import_torch():
    code = ("import sys, effbench.leaderboard, effbench.leaderboard.html, effbench.recordio; "
            "print('torch' in sys.modules, 'transformers' in sys.modules)")
    output = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert output.split() == ["False", "False"]


@pytest.mark.parametrize("board", ["standard", "field", "trigger"])
def test_the_committed_boards_are_reproduced_from_their_records(tmp_path, board):
    """Rebuilding a committed board from its records gives the committed numbers and report."""
    import shutil

    committed = REPO_ROOT / "leaderboards" / board
    if not (committed / "results.json").exists():
        pytest.skip(f"the {board} board has not been built")
    copy = tmp_path / board
    shutil.copytree(committed, copy, ignore=shutil.ignore_patterns("superseded"))
    build_board(copy)
    rebuilt = json.loads((copy / "results.json").read_text())
    shipped = json.loads((committed / "results.json").read_text())
    assert rebuilt["rows"] == shipped["rows"]
    assert (copy / "README.md").read_text() == (committed / "README.md").read_text()
