"""The board's report files (README.md, results.json, results.csv, citations.bib, index.html) and the build summary."""

from __future__ import annotations

import csv
import io
import json
import math
import re
from dataclasses import asdict

from effbench.leaderboard.claims import (
    EFFICIENT,
    EQUAL_TOLERANCE,
    RAW,
    claims_document,
    favours,
    findings,
)
from effbench.leaderboard.ranking import (
    BOOTSTRAP_RESAMPLES,
    SIGNIFICANCE_LEVEL,
    BuildResult,
    Standing,
    metric_order,
)
from effbench.leaderboard.checks import DIAGNOSTIC_MARGIN
from effbench.leaderboard.published import (
    SEPARATED,
    TIE,
    observed_text,
    published_document,
    published_summary,
    ranking_text,
    which_way,
)
from effbench.leaderboard.records import _show
from effbench.leaderboard.rivals import RIVALS, rival_summary, rivals_document
from effbench.leaderboard.spec import RECORDS_DIR, BoardSpec
from effbench.records import json_safe

ARROWS = {"higher": "↑", "lower": "↓"}
NOT_SIGNIFICANT_VS_NEXT = "≈"
NOT_SIGNIFICANT_VS_BEST = "†"


def degenerate_banner(task: str, provenance: dict) -> str | None:
    """The warning at the top of a task's section when its model is degenerate; None when not, or not known."""
    from effbench.models.reference import degenerate_warning

    block = provenance.get("degenerate")
    if not block:
        return None
    warning = degenerate_warning(task, block["test_accuracy"], block["majority_rate"], block["measured_on"])
    return f"⚠ Warning: {warning}." if warning else None


def format_number(value: float | None, digits: int = 3) -> str:
    if value is None or not math.isfinite(value):
        return "n/a"
    return f"{value:.{digits}f}"


def format_cell(standing: Standing) -> str:
    """`mean [low, high] #rank` and the significance marks (see `legend`)."""
    text = (f"{format_number(standing.mean)} [{format_number(standing.low)}, {format_number(standing.high)}] "
            f"#{standing.rank}")
    marks = ""
    if standing.rank > 1 and standing.tied_with_best:
        marks += NOT_SIGNIFICANT_VS_BEST
    if standing.significant_vs_next is False:
        marks += NOT_SIGNIFICANT_VS_NEXT
    return f"{text} {marks}" if marks else text


def metric_header(name: str, metrics: dict[str, dict]) -> str:
    return f"{name} {ARROWS[metrics[name]['direction']]}"


def legend(board: BoardSpec) -> list[str]:
    return [
        "↑ higher is better, ↓ lower is better.",
        "Each cell: the mean over the evaluated examples, its 95% percentile bootstrap interval "
        f"[low, high] ({BOOTSTRAP_RESAMPLES} resamples), and #rank among the task's explainers on that metric.",
        f"{NOT_SIGNIFICANT_VS_NEXT}: not significantly different from the next-ranked explainer "
        f"(paired bootstrap over the same examples, p ≥ {SIGNIFICANCE_LEVEL}).",
        f"{NOT_SIGNIFICANT_VS_BEST}: not significantly different from the explainer ranked #1 (p ≥ {SIGNIFICANCE_LEVEL}).",
        f"Rows are ordered by the main metric, {board.main_metric}; the overall table averages each "
        f"explainer's rank on {board.main_metric} over the tasks.",
    ]


def task_table_rows(result: BuildResult, task: str) -> tuple[list[str], list[list[str]]]:
    """Headers and rows of a task's table: explainers x metrics (main metric first)."""
    names = metric_order(result.board, result.metrics)
    headers = ["explainer"] + [metric_header(name, result.metrics) for name in names]
    rows = []
    for explainer in result.ranked_explainers(task):
        row = [explainer]
        for name in names:
            standing = result.standing(task, explainer, name)
            row.append(format_cell(standing) if standing else "–")
        rows.append(row)
    return headers, rows


def overall_table_rows(result: BuildResult) -> tuple[list[str], list[list[str]]]:
    tasks = [t for t in result.board.tasks if t in result.records]
    headers = ["explainer", f"mean rank ({result.board.main_metric})", "tasks"] + tasks
    rows = [[row.explainer, format_number(row.mean_rank, 2), str(row.tasks)]
            + [str(row.ranks[t]) if t in row.ranks else "–" for t in tasks] for row in result.overall]
    return headers, rows


def _values_text(values: list) -> str:
    return ", ".join("unknown" if v is None else str(v) for v in values) or "unknown"


def provenance_rows(result: BuildResult) -> list[list[str]]:
    p = result.provenance
    return [
        ["effbench", _values_text(p["effbench"])],
        ["git SHA", _values_text(p["git_sha"])],
        ["uncommitted changes (git dirty)", _values_text(p["git_dirty"])],
        ["python", _values_text(p["python"])],
        ["torch", _values_text(p["torch"])],
        ["transformers", _values_text(p["transformers"])],
        ["platform", _values_text(p["platform"])],
        ["device", _values_text(p["device"])],
        ["dtype", _values_text(p["dtype"])],
        ["seed", _values_text(p["seed"])],
        ["perturbation", _values_text(p["perturbation"])],
        ["reference model kind", _values_text(p["model_kind"])],
        ["records", _values_text(p["records"])],
        ["records created", " to ".join(p["created"])],
    ]


def task_provenance_rows(result: BuildResult) -> tuple[list[str], list[list[str]]]:
    headers = ["task", "version", "data sha256", "model", "checkpoint sha256", "test accuracy", "evaluated"]
    rows = []
    for task, p in result.task_provenance.items():
        rows.append([task, str(p["version"]), p["data_hash"], p["model"], str(p["checkpoint_sha256"]),
                     format_number(p["test_accuracy"]), f"{p['evaluated']} of {p['test_examples']}"])
    return headers, rows


def reproducing_section(result: BuildResult) -> list[str]:
    """README lines: which checkpoints the records were computed on, and how another machine gets them."""
    rows = [[task, p["model"], p["checkpoint_sha256"]] for task, p in result.task_provenance.items()]
    if not rows:
        return []
    return ["## Reproducing these records", "",
            "A record is reused, not recomputed, only on the checkpoint it was computed on. These are the "
            "checkpoints (sha256 of the weights):", "", tabulate_github(["task", "model", "checkpoint sha256"], rows), "",
            "To get a task's reference model onto another machine: `effbench models export TASK --to FILE` where it "
            "is cached, then `effbench models import FILE` (the import checks every sha256); or `effbench models "
            "pull TASK` where the task card names a Hub repository. `effbench train --task TASK` gives the same bits "
            "only on a machine like the one that trained it; elsewhere it gives another checkpoint (with the same "
            "accuracy), on which `effbench leaderboard run` reruns every explainer.", ""]


CLAIMS_HEADING = "The paper's claims"

CLAIMS_INTRO = (
    f"Naim & Asher's efficient attention ({EFFICIENT}) against raw attention ({RAW}) on the same examples. Where "
    "an input's n tokens number at most rank([T | 1]) for every head of the readout layer (n: the tokens the readout "
    "row attends to, special tokens included; T = V W_O^h), the raw row is the only attention row with its head "
    "output, so efficient attention equals raw attention by construction: there (n ≤ rank) the claim is not tested "
    "and the two must agree; it is tested on the longer inputs (n > rank). Each cell: the mean and its 95% bootstrap "
    f"interval; efficient − raw: the mean paired difference; p: paired bootstrap over the same examples "
    f"({BOOTSTRAP_RESAMPLES} resamples); favours: the better of the two where p < {SIGNIFICANCE_LEVEL}; "
    f"≠: examples whose two values differ by more than {EQUAL_TOLERANCE:g}."
)

NO_FACTS_REASON = ("their rows were written before the runner recorded them; a fresh run writes them, a resumed "
                   "one does not")

CLAIMS_HEADERS = ["task", "metric", "part", "examples", EFFICIENT, RAW, "efficient − raw", "p", "favours", "≠"]


def _interval(summary: dict) -> str:
    return f"{format_number(summary['mean'])} [{format_number(summary['low'])}, {format_number(summary['high'])}]"


def _signed(value: float) -> str:
    return f"{value:+.3f}" if math.isfinite(value) else "n/a"


def claims_table_rows(result: BuildResult) -> list[list[str]]:
    """The rows of the claims table: per task, metric and part (see CLAIMS_HEADERS)."""
    rows = []
    for row in result.claims.rows:
        metric = f"{row.metric} {ARROWS[row.direction]}"
        if row.examples == 0:
            rows.append([row.task, metric, row.part, "0", "no inputs", "no inputs", "–", "–", "–", "–"])
            continue
        rows.append([row.task, metric, row.part, str(row.examples), _interval(row.efficient), _interval(row.raw),
                     _signed(row.difference), format_number(row.p_value), favours(row), str(row.differing)])
    return rows


def claims_lines(result: BuildResult) -> list[str]:
    """The claims section's sentences besides the table: each task's split, what is missing, the findings."""
    section = result.claims
    if section.unavailable is not None:
        return [section.unavailable]
    lines = []
    for split in section.tasks:
        if split.without_facts == split.examples:
            lines.append(f"task {split.task}: not split, none of its {split.examples} examples carries the input "
                         f"facts ({NO_FACTS_REASON})")
            continue
        text = (f"task {split.task}: {split.short} of {split.examples} examples with n ≤ rank, "
                f"{split.long} with n > rank")
        if split.without_facts:
            text += f"; {split.without_facts} in neither part, without the input facts ({NO_FACTS_REASON})"
        if split.conflicting_facts:
            text += f"; {split.conflicting_facts} in neither part: the two records' rows give different input facts"
        lines.append(text)
    return lines + section.notes + findings(section)


RIVALS_HEADING = "Efficient attention against the decomposition methods"

RIVALS_INTRO = (
    f"Efficient attention ({EFFICIENT}) against each of the decomposition-based explainers {', '.join(RIVALS)} "
    "that the board ranks, per task and metric, on all of the task's examples. Each cell: the mean and its 95% "
    "bootstrap interval; efficient − rival: the mean paired difference over the examples where both are defined; "
    f"p: paired bootstrap over the same examples ({BOOTSTRAP_RESAMPLES} resamples); favours: the better of the two "
    f"in the metric's direction where p < {SIGNIFICANCE_LEVEL}, else neither."
)

RIVALS_HEADERS = ["task", "metric", "rival", "examples", EFFICIENT, "rival's mean", "efficient − rival", "p",
                  "favours"]


def rivals_table_rows(result: BuildResult) -> list[list[str]]:
    """The rows of the rivals table: per task, metric and rival (see RIVALS_HEADERS)."""
    return [[row.task, f"{row.metric} {ARROWS[row.direction]}", row.rival, str(row.examples), _interval(row.efficient),
             _interval(row.rival_interval), _signed(row.difference), format_number(row.p_value), row.favours]
            for row in result.rivals.rows]


def rivals_lines(result: BuildResult) -> list[str]:
    """The rivals section's sentences besides the table: the tally per rival, what is not compared."""
    section = result.rivals
    if section.unavailable is not None:
        return [section.unavailable]
    return rival_summary(section) + section.notes


PUBLISHED_HEADING = "Published rankings reproduced"

PUBLISHED_INTRO = (
    "Rankings that methods' authors published (the board's published_rankings), set against this board's records "
    "per task, on all of the task's examples. A ranking lists tiers, best first. A claimed ordering (two explainers "
    f"in different tiers) holds where the paired bootstrap separates the two (p < {SIGNIFICANCE_LEVEL}) in the "
    "claimed order, is reversed where it separates them the other way, and is not separated where it does not; a "
    f"claimed tie (two explainers in one tier, {TIE}) holds where the test does not separate them. Difference: the "
    "mean paired difference over the examples where both are defined, in the metric's direction, positive as "
    "claimed (of a tie: positive where the one named first is the better); p: paired bootstrap over the same "
    f"examples ({BOOTSTRAP_RESAMPLES} resamples). Observed ranking: the explainers by mean in the metric's "
    "direction, best first, without a test."
)

PUBLISHED_OBSERVED_HEADERS = ["source", "task", "metric", "examples", "observed ranking by mean, best first"]
PUBLISHED_PAIRS_HEADERS = ["source", "task", "metric", "claimed better", f"claimed worse ({TIE}: a claimed tie)",
                           "examples", "difference (+: as claimed)", "p", "outcome"]


def published_observed_rows(result: BuildResult) -> list[list[str]]:
    """Per published ranking and task: the observed ranking by mean (see PUBLISHED_OBSERVED_HEADERS)."""
    return [[task.source, task.task, f"{task.metric} {ARROWS[task.direction]}", str(task.examples),
             observed_text(task)] for task in result.published.tasks]


def published_pairs_rows(result: BuildResult) -> list[list[str]]:
    """Per published ranking, task and claimed pair (see PUBLISHED_PAIRS_HEADERS)."""
    rows = []
    for task in result.published.tasks:
        for pair in task.pairs:
            outcome = pair.outcome
            if outcome == SEPARATED:
                outcome += f" ({which_way(pair)})"
            rows.append([task.source, task.task, f"{task.metric} {ARROWS[task.direction]}", pair.better,
                         f"{TIE} {pair.worse}" if pair.tie else pair.worse, str(pair.examples),
                         _signed(pair.difference), format_number(pair.p_value), outcome])
    return rows


def published_lines(result: BuildResult) -> list[str]:
    """The section's sentences besides the tables: each published ranking, the summary per task, the notes."""
    section = result.published
    lines = [f'{entry.source} ({entry.metric}): "{entry.claim}"; claimed ranking, best first: '
             f"{ranking_text(entry.ranking)}"
             for entry in section.entries]
    return lines + published_summary(section) + section.notes


_MARKDOWN_SPECIAL = {"&": "&amp;", "<": "&lt;", ">": "&gt;", "|": "\\|", "`": "\\`", "*": "\\*", "\\": "\\\\",
                     "\n": " ", "\r": " "}


def markdown_text(value) -> str:
    """`value` as inert Markdown text: no HTML, code span, link, emphasis or table cell can start in it.
    (Brackets stay, so that intervals read [low, high]; a link also needs "](", which is broken up.)"""
    text = "".join(_MARKDOWN_SPECIAL.get(character, character) for character in str(value))
    return text.replace("](", "]\\(")


def code_fence(text: str, language: str = "") -> list[str]:
    """`text` in a fenced block that nothing inside can close: a fence longer than its longest run of backticks."""
    longest = max((len(run) for run in re.findall(r"`+", text)), default=0)
    fence = "`" * max(3, longest + 1)
    return [fence + language, text, fence]


def tabulate_github(headers: list[str], rows: list[list[str]]) -> str:
    """A GitHub table whose every cell is escaped Markdown text (records come from strangers)."""
    from tabulate import tabulate

    return tabulate([[markdown_text(cell) for cell in row] for row in rows], headers=[markdown_text(h) for h in headers],
                    tablefmt="github", disable_numparse=True)


AGREEMENT_HEADING = "Do the metrics agree?"
AGREEMENT_INTRO = ("Kendall's tau-b between the explainers' rankings by each pair of metrics (means oriented so that "
                   "higher is better), per task: near 1 the two metrics order the explainers alike, near 0 or below "
                   "they do not. Diagnosticity: the share of (example, explainer) pairs in which an explainer other "
                   f"than random scores better than random on the same example by more than {DIAGNOSTIC_MARGIN:g} "
                   "of the metric's range, or, for a metric without a finite range, of the median absolute value of "
                   "random's values on the task (after Chan et al. 2022); near or below 0.5 a metric hardly tells "
                   "explainers from random.")
COST_HEADING = "Cost"
COST_INTRO = ("Per example computed, in the session each record's figures are from: seconds of the explainer and of "
              "all the board's metrics together, forward rows through the model (the explainer's; the "
              "metrics' inputs asked for and those actually run, after the batch's and the forward "
              "cache's reuse) and backward rows (sequences a gradient flowed back through). \u2013: the record "
              "predates that count.")


def _number_or_dash(value: float | None, digits: int = 3) -> str:
    return "\u2013" if value is None or not math.isfinite(value) else f"{value:.{digits}f}"


def agreement_table_rows(result: BuildResult) -> tuple[list[str], list[list[str]]]:
    pairs = []
    for row in result.agreement:
        if (row.first, row.second) not in pairs:
            pairs.append((row.first, row.second))
    tasks = [task for task in result.board.tasks if any(row.task == task for row in result.agreement)]
    tau = {(row.task, row.first, row.second): row.tau for row in result.agreement}
    headers = ["metrics"] + tasks
    rows = [[f"{first} ~ {second}"] + [_number_or_dash(tau.get((task, first, second)), 2) for task in tasks]
            for first, second in pairs]
    return headers, rows


def diagnosticity_table_rows(result: BuildResult) -> tuple[list[str], list[list[str]]]:
    tasks = [task for task in result.board.tasks if any(row.task == task for row in result.diagnosticity)]
    share = {(row.task, row.metric): row for row in result.diagnosticity}
    metrics = [name for name in metric_order(result.board, result.metrics)
               if any(row.metric == name for row in result.diagnosticity)]
    rows = [[name] + [_number_or_dash(share[(task, name)].share_above_random, 2) if (task, name) in share else "\u2013"
                      for task in tasks] for name in metrics]
    return ["metric: share above random"] + tasks, rows


def cost_table_rows(result: BuildResult) -> tuple[list[str], list[list[str]]]:
    headers = ["task", "explainer", "examples", "explainer s", "metrics s", "explainer rows", "explainer backward",
               "metric rows asked", "metric rows run", "metric backward"]
    rows = [[row.task, row.explainer, str(row.examples), _number_or_dash(row.explainer_seconds),
             _number_or_dash(row.metric_seconds), _number_or_dash(row.explainer_rows, 1),
             _number_or_dash(row.explainer_backward_rows, 1), _number_or_dash(row.metric_rows_requested, 1),
             _number_or_dash(row.metric_rows_computed, 1), _number_or_dash(row.metric_backward_rows, 1)]
            for row in result.cost]
    return headers, rows


def render_readme(result: BuildResult) -> str:
    table = tabulate_github
    board = result.board
    lines = [f"# effbench leaderboard: {board.name}", "", markdown_text(board.description), "",
             f"Generated by `effbench leaderboard build {board.name}` from the run records under `{RECORDS_DIR}/`; "
             "the same numbers are in `results.json` and `results.csv`, charts in `index.html`, "
             "references in `citations.bib`.", "", "## Legend", ""]
    lines += [f"- {item}" for item in legend(board)]
    lines += ["", "## Overall", "", table(*overall_table_rows(result)), ""]
    for task in board.tasks:
        if task not in result.records:
            continue
        p = result.task_provenance[task]
        lines += [f"## Task: {task}", ""]
        banner = degenerate_banner(task, p)
        if banner:
            lines += [f"> {banner}", ""]
        lines += [f"Task version {p['version']}, data sha256 `{p['data_hash']}`; model {markdown_text(p['model'])}, checkpoint "
                  f"sha256 `{p['checkpoint_sha256']}`, test accuracy {format_number(p['test_accuracy'])}; "
                  f"{p['evaluated']} of {p['test_examples']} test examples evaluated.", "",
                  table(*task_table_rows(result, task)), ""]
    lines += [f"## {CLAIMS_HEADING}", "", markdown_text(CLAIMS_INTRO), ""]
    lines += [f"- {markdown_text(line)}" for line in claims_lines(result)] + [""]
    if result.claims.rows:
        lines += [table(CLAIMS_HEADERS, claims_table_rows(result)), ""]
    lines += [f"## {RIVALS_HEADING}", "", markdown_text(RIVALS_INTRO), ""]
    lines += [f"- {markdown_text(line)}" for line in rivals_lines(result)] + [""]
    if result.rivals.rows:
        lines += [table(RIVALS_HEADERS, rivals_table_rows(result)), ""]
    if result.published.entries:
        lines += [f"## {PUBLISHED_HEADING}", "", markdown_text(PUBLISHED_INTRO), ""]
        lines += [f"- {markdown_text(line)}" for line in published_lines(result)] + [""]
        if result.published.tasks:
            lines += [table(PUBLISHED_OBSERVED_HEADERS, published_observed_rows(result)), "",
                      table(PUBLISHED_PAIRS_HEADERS, published_pairs_rows(result)), ""]
    if result.agreement or result.diagnosticity:
        lines += [f"## {AGREEMENT_HEADING}", "", markdown_text(AGREEMENT_INTRO), ""]
        if result.agreement:
            lines += [table(*agreement_table_rows(result)), ""]
        if result.diagnosticity:
            lines += [table(*diagnosticity_table_rows(result)), ""]
    if result.cost:
        lines += [f"## {COST_HEADING}", "", markdown_text(COST_INTRO), "", table(*cost_table_rows(result)), ""]
    lines += ["## Metrics", ""]
    metric_rows = [[name, ARROWS[info["direction"]], str(info["version"]), info["family"],
                    f"[{info['range'][0]}, {info['range'][1]}]", _show(info["params"])]
                   for name, info in ((n, result.metrics[n]) for n in metric_order(board, result.metrics))]
    lines += [table(["metric", "better", "version", "family", "range", "parameters"], metric_rows), ""]
    lines += ["## Provenance", "", table(["", "value"], provenance_rows(result)), "",
              table(*task_provenance_rows(result)), ""]
    lines += reproducing_section(result)
    if result.notes:
        lines += ["## Notes", ""] + [f"- {markdown_text(note)}" for note in result.notes] + [""]
    lines += ["## Citation", "", "Please cite effbench and the methods, metrics and datasets behind these numbers "
              "(also in `citations.bib`):", "", *code_fence("\n\n".join(result.citations), "bibtex"), ""]
    return "\n".join(lines)


def results_document(result: BuildResult) -> dict:
    board = result.board
    return json_safe({
        "board": {"name": board.name, "description": board.description, "tasks": list(board.tasks),
                  "explainers": board.explainers, "metrics": board.metrics, "main_metric": board.main_metric,
                  "limit": board.limits, "batch_size": board.batch_size, "seed": board.seed,
                  "model_kind": board.model_kind, "perturbation": board.perturbation},
        "significance_level": SIGNIFICANCE_LEVEL,
        "bootstrap_resamples": BOOTSTRAP_RESAMPLES,
        "metrics": result.metrics,
        "provenance": result.provenance,
        "tasks": result.task_provenance,
        "rows": [asdict(s) for s in result.standings],
        "overall": [asdict(row) for row in result.overall],
        "claims": claims_document(result.claims),
        "efficient_against_decompositions": rivals_document(result.rivals),
        "published_rankings": published_document(result.published),
        "metric_agreement": [asdict(row) for row in result.agreement],
        "diagnosticity": [asdict(row) for row in result.diagnosticity],
        "cost": [asdict(row) for row in result.cost],
        "notes": result.notes,
    })


CSV_COLUMNS = ("task", "explainer", "metric", "direction", "mean", "low", "high", "n", "flagged", "rank", "p_vs_next",
               "significant_vs_next", "p_vs_best", "tied_with_best", "task_version", "explainer_version",
               "explainer_params", "metric_version", "metric_params", "record")


def render_csv(result: BuildResult) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=CSV_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for standing in result.standings:
        row = json_safe(asdict(standing))
        row["explainer_params"] = _show(row["explainer_params"])
        row["metric_params"] = _show(row["metric_params"])
        writer.writerow({key: "" if row[key] is None else row[key] for key in CSV_COLUMNS})
    return buffer.getvalue()


def _write_outputs(result: BuildResult) -> None:
    from effbench.leaderboard.html import render_html

    folder = result.board.folder
    outputs = {
        "README.md": render_readme(result),
        "results.json": json.dumps(results_document(result), indent=2, ensure_ascii=False, allow_nan=False) + "\n",
        "results.csv": render_csv(result),
        "citations.bib": "\n\n".join(result.citations) + "\n",
        "index.html": render_html(result),
    }
    for name, text in outputs.items():
        path = folder / name
        path.write_text(text, encoding="utf-8")
        result.files[name] = path


def format_summary(result: BuildResult) -> str:
    """What `effbench leaderboard build` prints: the overall table, the notes and the files written."""
    from tabulate import tabulate

    lines = [f"leaderboard {result.board.name}: {len(result.standings)} results from "
             f"{sum(len(r) for r in result.records.values())} records", "",
             tabulate(overall_table_rows(result)[1], headers=overall_table_rows(result)[0], tablefmt="github",
                      disable_numparse=True), ""]
    lines += [f"note: {note}" for note in result.notes]
    lines += [f"wrote {path}" for path in result.files.values()]
    return "\n".join(lines)
