"""The board's section "The paper's claims": efficient attention against raw attention, per task and metric,
on the inputs where the two are equal by construction and on the longer ones, where the claim is tested.

At the readout row, C(a) = {a} and efficient attention is raw attention (shared/spec/efficient-attention.md,
the trivial case) when the tokens the row attends to number at most rank([T | 1]) for every head of the
readout layer. Each per-example row carries those facts in its "input" mapping
(`effbench.explainers.efficient.input_facts`); rows written before the runner recorded them lack it, and
their examples fall in neither part.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass

from effbench.leaderboard.ranking import compare_paired, favoured, metric_order
from effbench.leaderboard.records import BoardRecord
from effbench.leaderboard.spec import BoardSpec
from effbench.recordio import INPUT_FACTS

EFFICIENT = "efficient_attention"
RAW = "raw_attention"
SHORT = "n ≤ rank"
LONG = "n > rank"
# efficient and raw attention count as equal on an example within this (values and token scores)
EQUAL_TOLERANCE = 1e-6
# the reading that the facts describe: the last layer's readout row (explainer parameters layer and readout)
FACTS_LAYER, FACTS_READOUT = -1, "cls"


@dataclass(frozen=True)
class ClaimRow:
    """Efficient against raw attention on one metric of one task, over one part of its examples."""

    task: str
    metric: str
    direction: str
    part: str  # SHORT or LONG
    examples: int  # the examples in the part
    efficient: dict  # mean, low, high, n: the 95% bootstrap interval over the part's finite values
    raw: dict
    difference: float  # mean of efficient - raw over the part's examples where both are finite (NaN: none)
    p_value: float  # paired bootstrap over those examples (NaN: none)
    differing: int  # examples whose two values differ by more than EQUAL_TOLERANCE (or only one is undefined)


@dataclass(frozen=True)
class TaskSplit:
    """How a task's examples divide between the parts."""

    task: str
    examples: int
    short: int
    long: int
    without_facts: int  # neither record's row carries the input facts
    conflicting_facts: int  # the two records' rows carry different facts
    short_scores_compared: int  # short examples whose rows both carry token scores
    short_scores_differing: int  # of those, the ones whose scores differ by more than EQUAL_TOLERANCE


@dataclass(frozen=True)
class ClaimsSection:
    unavailable: str | None  # why there is no comparison on this board at all (None: there is one)
    tasks: list[TaskSplit]
    rows: list[ClaimRow]
    notes: list[str]  # one line each: tasks not compared, readings the split does not describe


def paper_claims(board: BoardSpec, records: dict[str, dict[str, BoardRecord]], metrics: dict[str, dict]) -> ClaimsSection:
    """The section's numbers, from the board's accepted records (task -> explainer -> record)."""
    absent = [name for name in (EFFICIENT, RAW) if name not in board.explainers]
    if absent:
        return ClaimsSection(unavailable=f"This board does not rank {' or '.join(absent)}, so it cannot compare "
                                         f"{EFFICIENT} with {RAW}.", tasks=[], rows=[], notes=[])
    tasks, rows, notes = [], [], []
    for task in board.tasks:
        having = records.get(task, {})
        missing = [name for name in (EFFICIENT, RAW) if name not in having]
        if missing:
            notes.append(f"task {task}: not compared, no {' or '.join(missing)} record yet")
            continue
        efficient, raw = having[EFFICIENT], having[RAW]
        notes += _reading_notes(task, efficient, raw)
        split, short_ids, long_ids = _split(task, efficient, raw)
        tasks.append(split)
        if not short_ids and not long_ids:
            continue
        for metric in metric_order(board, metrics):
            if metric not in efficient.record["results"] or metric not in raw.record["results"]:
                notes.append(f"task {task}: metric {metric} not compared, a record lacks it")
                continue
            efficient_values, raw_values = efficient.values(metric), raw.values(metric)
            for part, ids in ((SHORT, short_ids), (LONG, long_ids)):
                rows.append(_compare(task, metric, metrics[metric]["direction"], part, ids, efficient_values,
                                     raw_values, board.seed))
    return ClaimsSection(unavailable=None, tasks=tasks, rows=rows, notes=notes)


def _split(task: str, efficient: BoardRecord, raw: BoardRecord) -> tuple[TaskSplit, list[str], list[str]]:
    """The task's split and the example ids of each part, in the efficient record's order."""
    raw_rows = {row["example_id"]: row for row in raw.rows}
    short_ids, long_ids = [], []
    without, conflicting, compared, differing = 0, 0, 0, 0
    for row in efficient.rows:
        other = raw_rows[row["example_id"]]  # comparable records evaluate the same example ids
        found = [facts for facts in (row.get("input"), other.get("input")) if facts is not None]
        if not found:
            without += 1
            continue
        if len(found) == 2 and _known(found[0]) != _known(found[1]):
            conflicting += 1
            continue
        facts = found[0]
        if facts["readout_keys"] > facts["readout_rank"]:
            long_ids.append(row["example_id"])
            continue
        short_ids.append(row["example_id"])
        if row.get("scores") is not None and other.get("scores") is not None:
            compared += 1
            differing += _scores_differ(row["scores"], other["scores"])
    split = TaskSplit(task=task, examples=len(efficient.rows), short=len(short_ids), long=len(long_ids),
                      without_facts=without, conflicting_facts=conflicting, short_scores_compared=compared,
                      short_scores_differing=differing)
    return split, short_ids, long_ids


def _known(facts: dict) -> dict:
    return {key: facts[key] for key in INPUT_FACTS}


def _scores_differ(first: Sequence, second: Sequence) -> bool:
    if len(first) != len(second):
        return True
    return any(_values_differ(_number(a), _number(b)) for a, b in zip(first, second))


def _number(value) -> float:
    return float("nan") if value is None else float(value)


def _values_differ(first: float, second: float) -> bool:
    """Beyond EQUAL_TOLERANCE; two undefined values are equal, one undefined value is a difference."""
    if not math.isfinite(first) or not math.isfinite(second):
        return math.isfinite(first) != math.isfinite(second)
    return abs(first - second) > EQUAL_TOLERANCE


def _compare(task: str, metric: str, direction: str, part: str, ids: list[str], efficient: dict[str, float],
             raw: dict[str, float], seed: int) -> ClaimRow:
    first, second = [efficient[i] for i in ids], [raw[i] for i in ids]
    paired = compare_paired(first, second, seed)
    return ClaimRow(
        task=task, metric=metric, direction=direction, part=part, examples=len(ids), efficient=paired.first,
        raw=paired.second, difference=paired.difference, p_value=paired.p_value,
        differing=sum(_values_differ(a, b) for a, b in zip(first, second)),
    )


def _reading(record: BoardRecord) -> tuple:
    """Which attention rows the explainer reads: (layer, heads, readout)."""
    params = record.record["explainer"]["params"]
    return params.get("layer", FACTS_LAYER), params.get("heads", "mean"), params.get("readout", FACTS_READOUT)


def _reading_notes(task: str, efficient: BoardRecord, raw: BoardRecord) -> list[str]:
    """Where the split does not decide equality: the two read other rows, or rows other than the facts describe."""
    notes = []
    if _reading(efficient) != _reading(raw):
        notes.append(f"task {task}: {EFFICIENT} and {RAW} read different attention rows (layer, heads, readout "
                     f"{_reading(efficient)} and {_reading(raw)}), so they can differ even where n ≤ rank")
    layer, _, readout = _reading(efficient)
    if (layer, readout) != (FACTS_LAYER, FACTS_READOUT):
        notes.append(f"task {task}: the split describes the last layer's readout row, but {EFFICIENT} reads layer "
                     f"{layer} with readout {readout}, so n ≤ rank does not make it equal to {RAW} there")
    return notes


def favours(row: ClaimRow) -> str:
    """Which of the two the metric's direction prefers, where the paired test finds a difference."""
    return favoured(EFFICIENT, RAW, row.direction, row.difference, row.p_value)


def findings(section: ClaimsSection) -> list[str]:
    """Where efficient and raw attention differ on inputs where they must be equal; else that they agree there."""
    lines = []
    for row in section.rows:
        if row.part == SHORT and row.differing:
            lines.append(f"finding: task {row.task}, {row.metric}: efficient != raw on {row.differing} of "
                         f"{row.examples} examples with n ≤ rank (by more than {EQUAL_TOLERANCE:g}), where they "
                         "must be equal")
    for split in section.tasks:
        if split.short_scores_differing:
            lines.append(f"finding: task {split.task}: the token scores of efficient and raw attention differ (by "
                         f"more than {EQUAL_TOLERANCE:g}) on {split.short_scores_differing} of "
                         f"{split.short_scores_compared} examples with n ≤ rank, where they must be equal")
    short_total = sum(split.short for split in section.tasks)
    if not lines and short_total:
        lines.append(f"On all {short_total} examples with n ≤ rank, efficient and raw attention agree within "
                     f"{EQUAL_TOLERANCE:g} on every metric value and every token score compared, as the theorem says.")
    return lines


def claims_document(section: ClaimsSection) -> dict:
    """The section's numbers for results.json."""
    return {"efficient": EFFICIENT, "raw": RAW, "parts": {"short": SHORT, "long": LONG},
            "equal_tolerance": EQUAL_TOLERANCE, "unavailable": section.unavailable,
            "tasks": [asdict(split) for split in section.tasks], "rows": [asdict(row) for row in section.rows],
            "notes": section.notes}
