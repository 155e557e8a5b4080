"""The board's section "Published rankings reproduced", on synthetic records."""

from __future__ import annotations

import json

import pytest
import yaml

from effbench.errors import CardError
from effbench.leaderboard import build_board, load_board
from effbench.leaderboard.report import PUBLISHED_HEADING, RIVALS_HEADING
from effbench.stats import paired_bootstrap_pvalue
from test_leaderboard import board_spec, make_record, synthetic_values, write_board, write_record

TASKS = ("mr-sentences", "tweets")
COUNT = 30
EXPLAINERS = ("alti", "saliency", "grad_x_input", "attention_norm", "random")
# the synthetic means on both metrics: alti 0.6 > saliency = grad_x_input 0.4 > attention_norm 0.2 (random 0.1)
AS_THE_NUMBERS = [["alti"], ["saliency", "grad_x_input"], ["attention_norm"]]
ALTI_CITATION = "@inproceedings{ferrando2022measuring,\n  title = {Measuring the Mixing of Contextual Information}\n}"


def values_for(seed: int) -> dict[str, list[float]]:
    """explainer -> per-example values, each a step of about 0.2 above the next with noise of its own;
    grad_x_input's are saliency's own, so the two are not separated."""
    norm = synthetic_values(seed, 0.2, COUNT)
    saliency = [value + step for value, step in zip(norm, synthetic_values(seed + 1, 0.2, COUNT))]
    alti = [value + step for value, step in zip(saliency, synthetic_values(seed + 2, 0.2, COUNT))]
    return {"alti": alti, "saliency": saliency, "grad_x_input": list(saliency), "attention_norm": norm,
            "random": synthetic_values(seed + 3, 0.1, COUNT)}


def entry(ranking, *, metric="necessity", source="ferrando2022measuring",
          claim="ALTI beats gradients, which beat attention norms") -> dict:
    return {"source": source, "claim": claim, "metric": metric,
            "ranking": [list(tier) if isinstance(tier, list) else tier for tier in ranking]}  # no YAML aliases


def published_board(root, entries, *, skip=frozenset()):
    """A board of both tasks, both metrics carrying the same values; `skip` holds the (task, explainer) pairs
    that get no record."""
    board = write_board(root, explainers=list(EXPLAINERS), published_rankings=entries)
    for offset, task in enumerate(TASKS):
        per_explainer = values_for(10 * offset)
        for explainer in EXPLAINERS:
            if (task, explainer) not in skip:
                values = per_explainer[explainer]
                cited = {"explainer.citation": ALTI_CITATION} if explainer == "alti" else {}
                write_record(board, *make_record(task, explainer, {"necessity": values, "sufficiency": list(values)},
                                                 **cited))
    return board


def document(board) -> dict:
    return json.loads((board / "results.json").read_text())["published_rankings"]


def pairs(board, number: int = 0) -> dict[tuple[str, str, str], dict]:
    """(task, claimed better, claimed worse) -> pair, for the board's published ranking `number`."""
    source = document(board)["entries"][number]
    return {(task["task"], pair["better"], pair["worse"]): pair for task in document(board)["tasks"]
            if task["source"] == source["source"] and task["metric"] == source["metric"] for pair in task["pairs"]}


def test_a_ranking_that_matches_the_numbers_holds_throughout(tmp_path):
    board = published_board(tmp_path, [entry(AS_THE_NUMBERS)])
    result = build_board(board)
    found = pairs(board)
    assert len(found) == len(TASKS) * (5 + 1)  # alti over three, saliency and grad_x_input over attention_norm; a tie
    assert all(pair["outcome"] == "held" for pair in found.values())
    assert all(pair["difference"] > 0.1 for pair in found.values() if not pair["tie"])
    tie = found[("mr-sentences", "saliency", "grad_x_input")]
    assert tie["tie"] and tie["difference"] == 0 and tie["favours"] == "neither" and tie["p_value"] == 1.0
    values = values_for(0)
    ordering = found[("mr-sentences", "alti", "saliency")]
    assert ordering["p_value"] == paired_bootstrap_pvalue(values["alti"], values["saliency"]) < 0.05
    assert ordering["difference"] == pytest.approx(sum(a - b for a, b in zip(values["alti"], values["saliency"])) / COUNT)
    assert ordering["examples"] == COUNT and ordering["favours"] == "alti"
    summaries = [task["summary"] for task in document(board)["tasks"]]
    assert summaries == [f"ferrando2022measuring on {task} (necessity, {COUNT} examples): 5 of 5 claimed orderings "
                         "hold; 1 of 1 claimed ties hold" for task in TASKS]
    observed = result.published.tasks[0].observed
    assert [row["explainer"] for row in observed] == ["alti", "saliency", "grad_x_input", "attention_norm"]
    assert result.published.notes == []


def test_a_reversed_ordering_is_reported_reversed_with_a_negative_difference(tmp_path):
    board = published_board(tmp_path, [entry([["alti"], ["attention_norm"], ["saliency", "grad_x_input"]])])
    build_board(board)
    found = pairs(board)
    reversed_pair = found[("tweets", "attention_norm", "saliency")]
    assert reversed_pair["outcome"] == "reversed" and reversed_pair["favours"] == "saliency"
    assert reversed_pair["difference"] == pytest.approx(-0.2, abs=0.05)  # positive is as claimed
    assert found[("tweets", "alti", "attention_norm")]["outcome"] == "held"
    assert found[("tweets", "alti", "attention_norm")]["difference"] > 0
    summary = document(board)["tasks"][1]["summary"]
    assert summary == (f"ferrando2022measuring on tweets (necessity, {COUNT} examples): 3 of 5 claimed orderings hold, "
                       "2 reversed (saliency above attention_norm, grad_x_input above attention_norm); "
                       "1 of 1 claimed ties hold")


def test_an_ordering_of_two_equal_explainers_is_not_separated(tmp_path):
    board = published_board(tmp_path, [entry([["saliency"], ["grad_x_input"], ["attention_norm"]])])
    build_board(board)
    found = pairs(board)
    assert found[("mr-sentences", "saliency", "grad_x_input")]["outcome"] == "not separated"
    summary = document(board)["tasks"][0]["summary"]
    assert summary.endswith("2 of 3 claimed orderings hold, 1 not separated")


def test_a_tie_whose_members_differ_is_reported_separated_and_which_way(tmp_path):
    board = published_board(tmp_path, [entry([["saliency", "alti"], ["attention_norm"]])])
    build_board(board)
    tie = pairs(board)[("mr-sentences", "saliency", "alti")]
    assert tie["tie"] and tie["outcome"] == "separated" and tie["favours"] == "alti"
    assert tie["difference"] < 0  # of a tie: positive where the one named first is the better
    summary = document(board)["tasks"][0]["summary"]
    assert summary.endswith("2 of 2 claimed orderings hold; 0 of 1 claimed ties hold, 1 separated (alti above saliency)")


def test_a_metric_where_lower_is_better_flips_the_outcome(tmp_path):
    lowest_first = [["attention_norm"], ["saliency"], ["alti"]]
    board = published_board(tmp_path, [entry(lowest_first, metric="sufficiency"), entry(lowest_first)])
    build_board(board)
    on_sufficiency, on_necessity = pairs(board, 0), pairs(board, 1)
    assert set(on_sufficiency) == set(on_necessity) and len(on_sufficiency) == 3 * len(TASKS)
    for key, pair in on_sufficiency.items():
        assert pair["outcome"] == "held" and pair["difference"] > 0 and pair["favours"] == key[1]
        assert on_necessity[key]["outcome"] == "reversed" and on_necessity[key]["difference"] < 0
        assert on_necessity[key]["difference"] == pytest.approx(-pair["difference"])
        assert on_necessity[key]["p_value"] == pair["p_value"]
    observed = document(board)["tasks"][0]["observed"]
    assert document(board)["tasks"][0]["metric"] == "sufficiency"
    assert [row["explainer"] for row in observed] == ["attention_norm", "saliency", "alti"]


def test_explainers_and_tasks_lacking_records_get_a_note(tmp_path):
    skip = {("mr-sentences", "alti")} | {("tweets", name) for name in EXPLAINERS if name != "random"}
    board = published_board(tmp_path, [entry(AS_THE_NUMBERS)], skip=skip)
    result = build_board(board)
    assert [(task.task, task.compared) for task in result.published.tasks] == [
        ("mr-sentences", ["saliency", "grad_x_input", "attention_norm"])]
    assert {(pair.better, pair.worse) for pair in result.published.tasks[0].pairs} == {
        ("saliency", "attention_norm"), ("grad_x_input", "attention_norm"), ("saliency", "grad_x_input")}
    readme = (board / "README.md").read_text()
    assert "ferrando2022measuring on task mr-sentences: alti not compared, no record yet" in readme
    assert "ferrando2022measuring on task tweets: not compared, none of its explainers has a record yet" in readme


def test_one_explainer_alone_is_not_compared(tmp_path):
    skip = {("tweets", name) for name in ("alti", "saliency", "grad_x_input")}
    board = published_board(tmp_path, [entry(AS_THE_NUMBERS)], skip=skip)
    result = build_board(board)
    assert [task.task for task in result.published.tasks] == ["mr-sentences"]
    assert ("ferrando2022measuring on task tweets: not compared, fewer than two of its explainers have necessity values"
            in result.published.notes)


def test_a_source_the_board_does_not_cite_gets_a_note(tmp_path):
    from effbench.leaderboard.published import published_rankings

    board = published_board(tmp_path, [entry(AS_THE_NUMBERS, source="ferando2022measuring")])
    result = build_board(board)  # alti's records cite ferrando2022measuring, nothing cites the misspelling
    assert any(note.startswith("ferando2022measuring: not a key of this board's citations.bib")
               for note in result.published.notes)
    cited = published_rankings(result.board, result.records, result.metrics, {"ferando2022measuring"})
    assert not any("citations.bib" in note for note in cited.notes) and cited.tasks == result.published.tasks


def test_readme_html_and_results_json_show_the_section(tmp_path):
    board = published_board(tmp_path, [entry([["alti"], ["attention_norm"], ["saliency", "grad_x_input"]])])
    build_board(board)
    readme = (board / "README.md").read_text()
    assert readme.index(f"## {RIVALS_HEADING}") < readme.index(f"## {PUBLISHED_HEADING}") < readme.index("## Metrics")
    section = readme.split(f"## {PUBLISHED_HEADING}")[1].split("\n## ")[0]
    assert ('- ferrando2022measuring (necessity): "ALTI beats gradients, which beat attention norms"; claimed '
            "ranking, best first: alti, then attention_norm, then saliency ≈ grad_x_input\n") in section
    assert "2 reversed (saliency above attention_norm, grad_x_input above attention_norm)" in section
    observed, pair_table = _tables(section)
    assert observed[0] == ["source", "task", "metric", "examples", "observed ranking by mean, best first"]
    assert observed[1][:4] == ["ferrando2022measuring", "mr-sentences", "necessity ↑", str(COUNT)]
    assert [cell.split(" (")[0] for cell in observed[1][4].split(", ")] == ["alti", "saliency", "grad_x_input",
                                                                           "attention_norm"]
    assert pair_table[0] == ["source", "task", "metric", "claimed better", "claimed worse (≈: a claimed tie)",
                             "examples", "difference (+: as claimed)", "p", "outcome"]
    cells = {(row[1], row[3], row[4]): row for row in pair_table[1:]}
    assert len(cells) == 6 * len(TASKS)
    pair = pairs(board)[("mr-sentences", "attention_norm", "saliency")]
    shown = cells[("mr-sentences", "attention_norm", "saliency")]
    assert shown[6] == f"{pair['difference']:+.3f}" and shown[6].startswith("-")
    assert shown[7] == f"{pair['p_value']:.3f}" and shown[8] == "reversed"
    assert cells[("mr-sentences", "saliency", "≈ grad_x_input")][8] == "held"
    page = (board / "index.html").read_text()
    assert f'<h2 id="published">{PUBLISHED_HEADING}</h2>' in page
    assert 'class="published-table"' in page and 'class="published-observed-table"' in page
    assert "2 reversed (saliency above attention_norm, grad_x_input above attention_norm)" in page
    assert page.index('<h2 id="rivals">') < page.index('<h2 id="published">')
    found = document(board)
    assert found["entries"] == [{"source": "ferrando2022measuring", "claim": "ALTI beats gradients, which beat "
                                 "attention norms", "metric": "necessity",
                                 "ranking": [["alti"], ["attention_norm"], ["saliency", "grad_x_input"]]}]
    assert [task["task"] for task in found["tasks"]] == list(TASKS) and found["notes"] == []


def test_a_board_without_published_rankings_has_no_section(tmp_path):
    board = write_board(tmp_path, explainers=list(EXPLAINERS))
    for explainer in EXPLAINERS:
        write_record(board, *make_record("mr-sentences", explainer, {"necessity": values_for(0)[explainer]}))
    result = build_board(board)
    assert result.board.published_rankings == () and result.published.tasks == []
    assert PUBLISHED_HEADING not in (board / "README.md").read_text()
    assert PUBLISHED_HEADING not in (board / "index.html").read_text()
    assert document(board) == {"entries": [], "tasks": [], "notes": []}


def _tables(section: str) -> list[list[list[str]]]:
    """The section's Markdown tables, each as rows of cells (header first, the rule left out)."""
    tables, current = [], None
    for line in section.splitlines():
        if not line.startswith("|"):
            current = None
            continue
        if current is None:
            current = []
            tables.append(current)
        if not set(line) <= set("|-: "):
            current.append([cell.strip() for cell in line.strip("|").split("|")])
    return tables


# ---- validation --------------------------------------------------------------------------------------


@pytest.mark.parametrize("published, expected", [
    ([entry([["alti"], ["saliency"]], metric="sparsity")],
     r"field 'published_rankings', entry 1 \('ferrando2022measuring'\): metric \(got 'sparsity'\) must be one of "
     r"the board's metrics: necessity, sufficiency$"),
    ([entry([["alti"], ["integrated_gradients"]])],
     r"entry 1 \('ferrando2022measuring'\): ranking .* must be tiers of the board's explainers; "
     r"'integrated_gradients' is not one\. The board's explainers: alti, saliency, grad_x_input, attention_norm, random$"),
    ([entry([["alti"], ["salency"]])], r"'salency' is not one \(did you mean 'saliency'\?\)"),
    ([entry([["alti", "saliency"], ["saliency"]])],
     r"ranking .* must be a ranking that names each explainer once; 'saliency' is named twice$"),
    ([entry([["alti", "saliency", "attention_norm"]])],
     r"ranking \(got \[\['alti', 'saliency', 'attention_norm'\]\]\) must be a list of at least two tiers, best first"),
    ([entry([["alti"], "saliency"])], r"ranking .* must be a list of at least two tiers, best first, each a non-empty list"),
    ([entry([["alti"], []])], r"ranking .* must be a list of at least two tiers"),
    ([entry([["alti"], ["saliency"]], source="ferrando 2022")],
     r"entry 1: source \(got 'ferrando 2022'\) must be a citation key: a non-empty string without spaces"),
    ([entry([["alti"], ["saliency"]], claim="  ")], r"claim \(got '  '\) must be a non-empty string"),
    ([{**entry([["alti"], ["saliency"]]), "rank": 1}],
     r"entry 1 \('ferrando2022measuring'\): unknown key 'rank'\. Did you mean 'ranking'\? Allowed keys: source, claim, metric, ranking$"),
    ([{"source": "ferrando2022measuring", "metric": "necessity", "ranking": [["alti"], ["saliency"]]}],
     r"entry 1 \('ferrando2022measuring'\): missing key 'claim' \(an entry has source, claim, metric, ranking\)$"),
    ([entry([["alti"], ["saliency"]]), "alti > saliency"],
     r"entry 2 \(got 'alti > saliency'\) must be a mapping with source, claim, metric, ranking$"),
    ([], r"field 'published_rankings' \(got \[\]\) must be a non-empty list of entries"),
    ({"source": "x"}, r"field 'published_rankings' .* must be a non-empty list of entries"),
])
def test_a_bad_published_ranking_names_what_is_wrong_in_one_line(tmp_path, published, expected):
    board = write_board(tmp_path)
    spec = board_spec(explainers=list(EXPLAINERS), published_rankings=published)
    (board / "board.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    with pytest.raises(CardError, match=expected) as caught:
        load_board(board)
    assert "\n" not in str(caught.value)


def test_a_good_published_ranking_is_read_in_order(tmp_path):
    board = write_board(tmp_path, explainers=list(EXPLAINERS),
                        published_rankings=[entry(AS_THE_NUMBERS, claim="ALTI  beats\n gradients.")])
    spec = load_board(board)
    (ranking,) = spec.published_rankings
    assert ranking.ranking == (("alti",), ("saliency", "grad_x_input"), ("attention_norm",))
    assert ranking.explainers == ("alti", "saliency", "grad_x_input", "attention_norm")
    assert ranking.claim == "ALTI beats gradients." and ranking.metric == "necessity"


def test_the_shipped_boards_carry_alti_s_ranking():
    from effbench.paths import REPO_ROOT

    for name in ("standard", "field"):
        (ranking,) = load_board(REPO_ROOT / "leaderboards" / name).published_rankings
        assert ranking.source == "ferrando2022measuring" and ranking.metric == "necessity"
        assert ranking.ranking == (("alti",), ("integrated_gradients", "saliency", "grad_x_input"),
                                   ("attention_norm",), ("attention_rollout",))
