"""The board's section "The paper's claims": efficient against raw attention on inputs short enough that the
two are equal by construction (n <= rank) and on longer ones, from synthetic records and from a real run."""

from __future__ import annotations

import json
import shutil

import pytest

from effbench.leaderboard import build_board
from effbench.leaderboard.claims import LONG, SHORT
from effbench.paths import REPO_ROOT
from effbench.stats import bootstrap_mean, paired_bootstrap_pvalue
from test_leaderboard import _markdown_tables, make_record, synthetic_values, write_board, write_record

TASKS = ("mr-sentences", "tweets")
COUNT = 30
SHORT_IDS = range(12)  # readout_keys <= readout_rank
LONG_IDS = range(12, 27)
WITHOUT_FACTS = range(27, 30)


def facts_of(index: int) -> dict | None:
    if index in WITHOUT_FACTS:
        return None
    if index in SHORT_IDS:
        return {"length": 10 + index, "readout_keys": 10 + index, "readout_rank": 10 + index}
    return {"length": 40 + index, "readout_keys": 40 + index, "readout_rank": 33}


def values_for(seed: int) -> dict[str, tuple[list[float], list[float]]]:
    """metric -> (efficient, raw) per-example values: equal on the short inputs, efficient better on the long ones."""
    raw_necessity, raw_sufficiency = synthetic_values(seed, 0.30, COUNT), synthetic_values(seed + 1, 0.20, COUNT)
    efficient_necessity = [value + (0.2 if index in LONG_IDS else 0.0) for index, value in enumerate(raw_necessity)]
    efficient_sufficiency = [value - (0.1 if index in LONG_IDS else 0.0) for index, value in enumerate(raw_sufficiency)]
    return {"necessity": (efficient_necessity, raw_necessity), "sufficiency": (efficient_sufficiency, raw_sufficiency)}


def add_facts(rows: list[dict], facts=facts_of) -> list[dict]:
    for index, row in enumerate(rows):
        if facts(index) is not None:
            row["input"] = facts(index)
    return rows


def claims_board(root, *, explainers=("efficient_attention", "raw_attention", "random"), facts=facts_of,
                 change=None):
    """A board of both tasks; `change(explainer, values)` may alter an explainer's values before writing."""
    board = write_board(root, explainers=list(explainers))
    for offset, task in enumerate(TASKS):
        per_metric = values_for(10 * offset)
        per_explainer = {"efficient_attention": {m: list(v[0]) for m, v in per_metric.items()},
                         "raw_attention": {m: list(v[1]) for m, v in per_metric.items()},
                         "random": {m: synthetic_values(99 + offset, 0.1, COUNT) for m in per_metric}}
        for explainer in explainers:
            values = per_explainer[explainer]
            if change is not None:
                change(explainer, values)
            record, rows = make_record(task, explainer, values)
            write_record(board, record, add_facts(rows, facts))
    return board


def claims_rows(board) -> dict[tuple[str, str, str], dict]:
    document = json.loads((board / "results.json").read_text())
    return {(row["task"], row["metric"], row["part"]): row for row in document["claims"]["rows"]}


def test_the_split_follows_the_facts_and_the_numbers_are_the_paired_statistics(tmp_path):
    board = claims_board(tmp_path)
    result = build_board(board)
    [first, second] = result.claims.tasks
    assert (first.task, first.examples, first.short, first.long, first.without_facts) == ("mr-sentences", 30, 12, 15, 3)
    assert second.task == "tweets" and first.short_scores_compared == 12 and first.short_scores_differing == 0

    rows = claims_rows(board)
    assert len(rows) == len(TASKS) * 2 * 2  # tasks x metrics x parts
    efficient, raw = values_for(0)["necessity"]
    short = rows[("mr-sentences", "necessity", SHORT)]
    assert short["examples"] == 12 and short["differing"] == 0 and short["p_value"] == 1.0
    assert short["efficient"] == short["raw"] == bootstrap_mean([raw[i] for i in SHORT_IDS])
    long = rows[("mr-sentences", "necessity", LONG)]
    assert long["examples"] == 15 and long["differing"] == 15
    assert long["efficient"] == bootstrap_mean([efficient[i] for i in LONG_IDS])
    assert long["raw"] == bootstrap_mean([raw[i] for i in LONG_IDS])
    assert long["difference"] == pytest.approx(0.2)
    assert long["p_value"] == paired_bootstrap_pvalue([efficient[i] for i in LONG_IDS], [raw[i] for i in LONG_IDS])
    assert long["p_value"] < 0.05


def test_the_readme_shows_the_section_with_the_split_and_who_is_favoured(tmp_path):
    board = claims_board(tmp_path)
    build_board(board)
    readme = (board / "README.md").read_text()
    assert "## The paper's claims" in readme
    assert ("task mr-sentences: 12 of 30 examples with n ≤ rank, 15 with n &gt; rank; 3 in neither part, without "
            "the input facts") in readme
    assert "On all 24 examples with n ≤ rank, efficient and raw attention agree" in readme
    header, *cells = _markdown_tables(readme)["The paper's claims"]
    assert header == ["task", "metric", "part", "examples", "efficient_attention", "raw_attention", "efficient − raw",
                      "p", "favours", "≠"]
    table = {(row[0], row[1], row[2]): row for row in cells}
    rows = claims_rows(board)
    long = rows[("mr-sentences", "necessity", LONG)]
    shown = table[("mr-sentences", "necessity ↑", "n &gt; rank")]
    assert shown[3] == "15"
    assert shown[4] == f"{long['efficient']['mean']:.3f} [{long['efficient']['low']:.3f}, {long['efficient']['high']:.3f}]"
    assert shown[6] == "+0.200" and shown[8] == "efficient_attention" and shown[9] == "15"
    # sufficiency: lower is better, and efficient is lower on the long inputs
    assert table[("mr-sentences", "sufficiency ↓", "n &gt; rank")][8] == "efficient_attention"
    short = table[("mr-sentences", "necessity ↑", "n ≤ rank")]
    assert short[6] == "+0.000" and short[7] == "1.000" and short[8] == "neither" and short[9] == "0"


def test_efficient_differing_from_raw_on_a_short_input_is_reported_as_a_finding(tmp_path):
    def disturb(explainer, values):
        if explainer == "efficient_attention":
            values["necessity"][3] += 1e-3  # example 3 is short

    board = claims_board(tmp_path, change=disturb)
    build_board(board)
    assert claims_rows(board)[("tweets", "necessity", SHORT)]["differing"] == 1
    readme = (board / "README.md").read_text()
    assert "finding: task tweets, necessity: efficient != raw on 1 of 12 examples with n ≤ rank" in readme
    assert "On all" not in readme  # no confirmation where a finding contradicts it
    page = (board / "index.html").read_text()
    assert "finding: task tweets, necessity: efficient != raw on 1 of 12 examples with n ≤ rank" in page


def test_an_empty_part_says_no_inputs(tmp_path):
    board = claims_board(tmp_path, facts=lambda index: {"length": 8, "readout_keys": 8, "readout_rank": 8})
    result = build_board(board)
    assert all(split.long == 0 and split.short == COUNT for split in result.claims.tasks)
    table = {(row[0], row[1], row[2]): row for row in _markdown_tables((board / "README.md").read_text())["The paper's claims"][1:]}
    assert table[("tweets", "necessity ↑", "n &gt; rank")][3:6] == ["0", "no inputs", "no inputs"]
    assert "<td class=\"num\">no inputs</td>" in (board / "index.html").read_text()


def test_a_board_without_raw_attention_says_so_in_one_line(tmp_path):
    board = claims_board(tmp_path, explainers=("efficient_attention", "random"))
    build_board(board)
    line = "This board does not rank raw_attention, so it cannot compare efficient_attention with raw_attention."
    readme = (board / "README.md").read_text()
    section = readme.split("## The paper's claims")[1].split("\n## ")[0]
    assert line in section and "| task" not in section
    assert line in (board / "index.html").read_text()
    claims = json.loads((board / "results.json").read_text())["claims"]
    assert claims["unavailable"] == line and claims["rows"] == []


def test_facts_come_from_either_record_and_conflicting_ones_count_in_neither_part(tmp_path):
    board = claims_board(tmp_path)
    for folder in (board / "records" / "mr-sentences").glob("raw_attention-*"):
        path = folder / "per_example.jsonl"
        rows = [json.loads(line) for line in path.read_text().splitlines()]
        rows[0]["input"] = {"length": 10, "readout_keys": 10, "readout_rank": 9}  # efficient's row says rank 10
        rows[27]["input"] = {"length": 40, "readout_keys": 40, "readout_rank": 33}  # efficient's row has no facts
        path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    result = build_board(board)
    split = result.claims.tasks[0]
    assert (split.short, split.long, split.without_facts, split.conflicting_facts) == (11, 16, 2, 1)
    assert "1 in neither part: the two records' rows give different input facts" in (board / "README.md").read_text()


def test_a_reading_the_split_does_not_describe_is_noted(tmp_path):
    board = write_board(tmp_path, explainers={"efficient_attention": {"layer": 0}, "raw_attention": None})
    for task in TASKS:
        for explainer in ("efficient_attention", "raw_attention"):
            values = {m: v[0 if explainer == "efficient_attention" else 1] for m, v in values_for(0).items()}
            record, rows = make_record(task, explainer, values)
            if explainer == "efficient_attention":
                record["explainer"]["params"] = {"layer": 0}
            write_record(board, record, add_facts(rows))
    build_board(board)
    readme = (board / "README.md").read_text()
    assert "task tweets: efficient_attention and raw_attention read different attention rows" in readme
    assert "task tweets: the split describes the last layer's readout row, but efficient_attention reads layer 0" in readme


def test_the_committed_standard_board_splits_every_example_and_finds_efficient_equal_to_raw_on_the_short_ones(
        tmp_path):
    committed = REPO_ROOT / "leaderboards" / "standard"
    if not any(committed.glob("records/*/*/record.json")):
        pytest.skip("the standard board has no records")
    copy = tmp_path / "standard"
    shutil.copytree(committed, copy)
    result = build_board(copy)
    assert result.claims.tasks and result.claims.rows
    for split in result.claims.tasks:
        assert split.without_facts == 0 and split.conflicting_facts == 0
        assert split.short + split.long == split.examples and split.long > 0
        assert split.short_scores_compared == split.short and split.short_scores_differing == 0
    assert all(row.differing == 0 for row in result.claims.rows if row.part == SHORT)


def test_a_real_run_of_short_inputs_finds_efficient_equal_to_raw(toy_env, tmp_path):
    """The toy task's inputs (at most 17 tokens) are all shorter than the tiny BERT's rank([T | 1]) <= 33."""
    import yaml

    from effbench.leaderboard import run_board

    board = tmp_path / "board"
    board.mkdir()
    (board / "board.yaml").write_text(yaml.safe_dump({
        "name": "board", "description": "Efficient and raw attention on the toy task.", "tasks": ["toy"],
        "explainers": ["efficient_attention", "raw_attention"], "metrics": ["necessity", "sparsity"],
        "main_metric": "necessity", "limit": 8, "batch_size": 4, "seed": 0, "model_kind": "tiny",
        "perturbation": "remove",
    }))
    run_board(board, progress=False)
    result = build_board(board)
    [split] = result.claims.tasks
    assert (split.examples, split.short, split.long, split.without_facts) == (8, 8, 0, 0)
    assert split.short_scores_compared == 8 and split.short_scores_differing == 0
    short = [row for row in result.claims.rows if row.part == SHORT]
    assert len(short) == 2 and all(row.differing == 0 and row.examples == 8 for row in short)
    assert all(row.examples == 0 for row in result.claims.rows if row.part == LONG)
    assert "On all 8 examples with n ≤ rank, efficient and raw attention agree" in (board / "README.md").read_text()
    assert all(row.efficient == row.raw for row in short)
