"""The board's checks of its metrics (agreement, diagnosticity) and its cost table, on synthetic records."""

from __future__ import annotations

import json
import math

import pytest
from scipy.stats import kendalltau

from effbench.leaderboard import build_board
from test_leaderboard import make_record, synthetic_values, write_board, write_record

EXPLAINERS = ["random", "saliency", "grad_x_input", "integrated_gradients"]


def checks_board(root, *, sufficiency_centres=(0.40, 0.30, 0.20, 0.10), passes=True):
    """One task; necessity (higher better) centred 0.1, 0.2, 0.3, 0.4 for the explainers in order; sufficiency
    (lower better) at `sufficiency_centres`: by default the same order of quality."""
    board = write_board(root, tasks=["mr-sentences"], explainers=EXPLAINERS)
    for index, explainer in enumerate(EXPLAINERS):
        values = {"necessity": synthetic_values(index, 0.1 * (index + 1)),
                  "sufficiency": synthetic_values(10 + index, sufficiency_centres[index])}
        changes = {"timings_seconds_this_session": {"explainer": 3.0 * (index + 1), "necessity": 6.0,
                                                    "sufficiency": 3.0}}
        if passes:
            changes["passes_this_session"] = {
                "explainer": {"computed": 30 * index, "backward": 60 * index},
                "necessity": {"requested": 300, "computed": 150, "from_forward_cache": 0, "backward": 0},
                "sufficiency": {"requested": 300, "computed": 60, "from_forward_cache": 30, "backward": 15}}
        record, rows = make_record("mr-sentences", explainer, values, **changes)
        write_record(board, record, rows)
    return board


def test_metrics_that_order_the_explainers_alike_agree_and_opposite_ones_disagree(tmp_path):
    alike = build_board(checks_board(tmp_path / "alike"))
    [row] = alike.agreement
    assert (row.task, row.first, row.second, row.explainers) == ("mr-sentences", "necessity", "sufficiency", 4)
    assert row.tau == pytest.approx(1.0)
    opposite = build_board(checks_board(tmp_path / "opposite", sufficiency_centres=(0.10, 0.20, 0.30, 0.40)))
    assert opposite.agreement[0].tau == pytest.approx(-1.0)


def test_agreement_is_kendalls_tau_of_the_oriented_means(tmp_path):
    result = build_board(checks_board(tmp_path, sufficiency_centres=(0.40, 0.10, 0.20, 0.30)))
    means = {(s.metric, s.explainer): s.mean for s in result.standings}
    necessity = [means[("necessity", e)] for e in EXPLAINERS]
    sufficiency = [-means[("sufficiency", e)] for e in EXPLAINERS]  # lower is better: negated
    assert result.agreement[0].tau == pytest.approx(kendalltau(necessity, sufficiency).statistic)


def test_diagnosticity_counts_pairs_that_beat_random_by_the_margin(tmp_path):
    result = build_board(checks_board(tmp_path))
    shares = {row.metric: row for row in result.diagnosticity}
    # every other explainer's necessity is centred 0.1 to 0.3 above random's with spread 0.05: nearly always above
    assert shares["necessity"].pairs == 3 * 30 and shares["necessity"].share_above_random > 0.9
    documented = json.loads((tmp_path / "demo" / "results.json").read_text())
    assert {row["metric"] for row in documented["diagnosticity"]} == {"necessity", "sufficiency"}


def test_a_metric_that_cannot_tell_explainers_from_random_sits_near_half(tmp_path):
    board = write_board(tmp_path, tasks=["mr-sentences"], explainers=EXPLAINERS)
    for index, explainer in enumerate(EXPLAINERS):
        record, rows = make_record("mr-sentences", explainer, {"necessity": synthetic_values(index, 0.3, spread=0.2)})
        write_record(board, record, rows)
    [row] = build_board(board).diagnosticity
    assert 0.25 < row.share_above_random < 0.6


def test_an_unbounded_metric_is_judged_against_its_own_scale_not_an_absolute_margin(tmp_path):
    """Infidelity's values are about 0.003: explainers 30% below random are told from it (an absolute margin of
    0.01 would call none of them better), and explainers within 0.5% of random are not."""
    board = write_board(tmp_path, tasks=["mr-sentences"], explainers=EXPLAINERS, metrics=["infidelity"],
                        main_metric="infidelity")
    baseline = [abs(v) for v in synthetic_values(0, 0.003, spread=0.0005)]
    for index, explainer in enumerate(EXPLAINERS):
        factor = 1.0 if explainer == "random" else (0.7 if explainer != "grad_x_input" else 0.995)
        record, rows = make_record("mr-sentences", explainer, {"infidelity": [v * factor for v in baseline]})
        write_record(board, record, rows)
    [row] = build_board(board).diagnosticity
    assert row.pairs == 3 * 30
    assert row.share_above_random == pytest.approx(2 / 3)  # saliency and IG on every example, grad_x_input never


def test_the_cost_table_is_per_example_and_marks_records_without_pass_counts(tmp_path):
    result = build_board(checks_board(tmp_path))
    cost = {row.explainer: row for row in result.cost}
    assert cost["saliency"].explainer_seconds == pytest.approx(6.0 / 30)
    assert cost["saliency"].metric_seconds == pytest.approx(9.0 / 30)
    assert cost["saliency"].explainer_rows == pytest.approx(1.0)
    assert (cost["random"].metric_rows_requested, cost["random"].metric_rows_computed) == (20.0, 7.0)
    assert (cost["saliency"].explainer_backward_rows, cost["saliency"].metric_backward_rows) == (2.0, 0.5)
    readme = (tmp_path / "demo" / "README.md").read_text()
    assert "## Cost" in readme and "## Do the metrics agree?" in readme
    assert "cost-table" in (tmp_path / "demo" / "index.html").read_text()

    unmeasured = build_board(checks_board(tmp_path / "old", passes=False))
    assert all(row.explainer_rows is None and row.explainer_backward_rows is None for row in unmeasured.cost)
    assert "| –" in (tmp_path / "old" / "demo" / "README.md").read_text()


def test_fewer_than_three_explainers_give_no_tau(tmp_path):
    board = write_board(tmp_path, tasks=["mr-sentences"], explainers=["random", "saliency"])
    for index, explainer in enumerate(["random", "saliency"]):
        record, rows = make_record("mr-sentences", explainer, {"necessity": synthetic_values(index, 0.1 * index),
                                                               "sufficiency": synthetic_values(5 + index, 0.2)})
        write_record(board, record, rows)
    [row] = build_board(board).agreement
    assert row.explainers == 2 and math.isnan(row.tau)
