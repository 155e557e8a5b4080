"""The board's section "Efficient attention against the decomposition methods", on synthetic records."""

from __future__ import annotations

import json
import math

import pytest

from effbench.leaderboard import build_board
from effbench.leaderboard.report import RIVALS_HEADING
from effbench.stats import bootstrap_mean, paired_bootstrap_pvalue
from test_leaderboard import _markdown_tables, make_record, synthetic_values, write_board, write_record

TASKS = ("mr-sentences", "tweets")
COUNT = 30
UNDEFINED_EFFICIENT, UNDEFINED_ALTI = 5, 7  # examples where one of the two has no necessity value


def values_for(seed: int) -> dict[str, dict[str, list]]:
    """explainer -> metric -> per-example values. Efficient attention is higher than alti on both metrics:
    better on necessity (higher is better), worse on sufficiency (lower is better). attention_norm's necessity is
    efficient attention's own, its sufficiency that plus noise centred on 0: neither is favoured."""
    alti = {"necessity": synthetic_values(seed, 0.30, COUNT), "sufficiency": synthetic_values(seed + 1, 0.20, COUNT)}
    efficient = {"necessity": [value + 0.2 for value in alti["necessity"]],
                 "sufficiency": [value + 0.1 for value in alti["sufficiency"]]}
    efficient["necessity"][UNDEFINED_EFFICIENT] = None
    alti["necessity"][UNDEFINED_ALTI] = None
    return {"efficient_attention": efficient, "alti": alti,
            "attention_norm": {"necessity": list(efficient["necessity"]),
                               "sufficiency": [value + noise for value, noise in
                                               zip(efficient["sufficiency"], synthetic_values(seed + 2, 0.0, COUNT))]},
            "random": {metric: synthetic_values(99 + seed, 0.1, COUNT) for metric in alti}}


def rivals_board(root, *, explainers=("efficient_attention", "alti", "attention_norm", "random"),
                 skip=frozenset()):
    """A board of both tasks; `skip` holds the (task, explainer) pairs that get no record."""
    board = write_board(root, explainers=list(explainers))
    for offset, task in enumerate(TASKS):
        per_explainer = values_for(10 * offset)
        for explainer in explainers:
            if (task, explainer) not in skip:
                write_record(board, *flag_undefined(*make_record(task, explainer, per_explainer[explainer])))
    return board


def flag_undefined(record: dict, rows: list[dict]) -> tuple[dict, list[dict]]:
    """Flag the undefined values, as a metric does, and count them in the record's results."""
    for row in rows:
        for name, entry in row["metrics"].items():
            if entry["value"] is None:
                entry["flags"] = ["undefined"]
                record["results"][name]["flagged"] += 1
    return record, rows


def rivals_rows(board) -> dict[tuple[str, str, str], dict]:
    document = json.loads((board / "results.json").read_text())
    return {(row["task"], row["metric"], row["rival"]): row
            for row in document["efficient_against_decompositions"]["rows"]}


def _number(value) -> float:
    return float("nan") if value is None else value


def test_the_numbers_are_the_paired_statistics_of_the_two_records(tmp_path):
    board = rivals_board(tmp_path)
    build_board(board)
    rows = rivals_rows(board)
    assert len(rows) == len(TASKS) * 2 * 2  # tasks x metrics x rivals
    values = values_for(10)
    efficient = [_number(v) for v in values["efficient_attention"]["necessity"]]
    alti = [_number(v) for v in values["alti"]["necessity"]]
    row = rows[("tweets", "necessity", "alti")]
    assert row["examples"] == COUNT
    assert row["efficient"] == bootstrap_mean(efficient) and row["efficient"]["n"] == COUNT - 1
    assert row["rival_interval"] == bootstrap_mean(alti)
    paired = [(a, b) for a, b in zip(efficient, alti) if math.isfinite(a) and math.isfinite(b)]
    assert len(paired) == COUNT - 2
    assert row["difference"] == pytest.approx(sum(a - b for a, b in paired) / len(paired))
    assert row["difference"] == pytest.approx(0.2)
    assert row["p_value"] == paired_bootstrap_pvalue(efficient, alti) and row["p_value"] < 0.05
    # a p-value away from the bootstrap's bounds, where a different resampling would show
    efficient, norm = values["efficient_attention"]["sufficiency"], values["attention_norm"]["sufficiency"]
    row = rows[("tweets", "sufficiency", "attention_norm")]
    assert row["p_value"] == paired_bootstrap_pvalue(efficient, norm) and 0.05 < row["p_value"] < 0.99
    assert row["difference"] == pytest.approx(sum(a - b for a, b in zip(efficient, norm)) / COUNT)


def test_favours_follows_the_metrics_direction(tmp_path):
    board = rivals_board(tmp_path)
    result = build_board(board)
    rows = rivals_rows(board)
    for task in TASKS:
        # efficient attention is higher on both: better where higher is better, worse where lower is better
        assert rows[(task, "necessity", "alti")]["favours"] == "efficient_attention"
        assert rows[(task, "sufficiency", "alti")]["difference"] == pytest.approx(0.1)
        assert rows[(task, "sufficiency", "alti")]["favours"] == "alti"
        assert rows[(task, "necessity", "attention_norm")]["favours"] == "neither"
        assert rows[(task, "necessity", "attention_norm")]["p_value"] == 1.0
    tally = json.loads((board / "results.json").read_text())["efficient_against_decompositions"]["tally"]
    assert tally["alti"] == {"better": 2, "worse": 2, "neither": 0, "not_tested": 0, "pairs": 4}
    assert tally["attention_norm"]["neither"] == 4
    assert [row.rival for row in result.rivals.rows[:2]] == ["attention_norm", "alti"]  # RIVALS order


def test_a_rival_the_board_does_not_rank_gives_no_rows(tmp_path):
    board = rivals_board(tmp_path, explainers=("efficient_attention", "alti", "random"))
    result = build_board(board)
    assert result.rivals.rivals == ["alti"]
    assert {row.rival for row in result.rivals.rows} == {"alti"}
    assert all(rival != "attention_norm" for _, _, rival in rivals_rows(board))


def test_a_board_without_efficient_attention_says_so_in_one_line(tmp_path):
    board = rivals_board(tmp_path, explainers=("alti", "attention_norm", "random"))
    build_board(board)
    line = "This board does not rank efficient_attention, so it cannot compare it with the decomposition methods."
    readme = (board / "README.md").read_text()
    section = readme.split(f"## {RIVALS_HEADING}")[1].split("\n## ")[0]
    assert line in section and "| task" not in section
    assert line in (board / "index.html").read_text() and 'class="rivals-table"' not in (board / "index.html").read_text()
    document = json.loads((board / "results.json").read_text())["efficient_against_decompositions"]
    assert document["unavailable"] == line and document["rows"] == []


def test_a_board_without_any_rival_says_so(tmp_path):
    board = rivals_board(tmp_path, explainers=("efficient_attention", "random"))
    result = build_board(board)
    assert result.rivals.unavailable.startswith("This board ranks none of the decomposition methods")
    assert result.rivals.rows == []


def test_tasks_lacking_a_record_get_a_note(tmp_path):
    board = rivals_board(tmp_path, skip={("mr-sentences", "efficient_attention"), ("tweets", "attention_norm")})
    result = build_board(board)
    assert {(row.task, row.rival) for row in result.rivals.rows} == {("tweets", "alti")}
    readme = (board / "README.md").read_text()
    assert "task mr-sentences: not compared, no efficient_attention record yet" in readme
    assert "task tweets: not compared with attention_norm, no record yet" in readme


def test_readme_html_and_results_json_show_the_section(tmp_path):
    board = rivals_board(tmp_path)
    build_board(board)
    readme = (board / "README.md").read_text()
    assert readme.index("## The paper's claims") < readme.index(f"## {RIVALS_HEADING}") < readme.index("## Metrics")
    assert "against alti: better on 2, worse on 2, neither on 0 of 4 task–metric pairs" in readme
    assert "against attention_norm: better on 0, worse on 0, neither on 4 of 4 task–metric pairs" in readme
    header, *cells = _markdown_tables(readme)[RIVALS_HEADING]
    assert header == ["task", "metric", "rival", "examples", "efficient_attention", "rival's mean",
                      "efficient − rival", "p", "favours"]
    table = {(cell[0], cell[1], cell[2]): cell for cell in cells}
    row = rivals_rows(board)[("mr-sentences", "sufficiency", "alti")]
    shown = table[("mr-sentences", "sufficiency ↓", "alti")]
    assert shown[3] == "30"
    assert shown[4] == f"{row['efficient']['mean']:.3f} [{row['efficient']['low']:.3f}, {row['efficient']['high']:.3f}]"
    assert shown[6] == "+0.100" and shown[7] == f"{row['p_value']:.3f}" and shown[8] == "alti"
    page = (board / "index.html").read_text()
    assert f'<h2 id="rivals">{RIVALS_HEADING}</h2>' in page and 'class="rivals-table"' in page
    assert "against alti: better on 2, worse on 2, neither on 0 of 4 task–metric pairs" in page
    document = json.loads((board / "results.json").read_text())["efficient_against_decompositions"]
    assert document["efficient"] == "efficient_attention" and document["rivals"] == ["attention_norm", "alti"]
    assert document["unavailable"] is None and len(document["rows"]) == 8
