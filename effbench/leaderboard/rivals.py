"""The board's section "Efficient attention against the decomposition methods": efficient attention against
each decomposition-based explainer the board ranks, per task and metric, on all of the task's examples.

Each row pairs the two records' values by example id (`ranking.compare_paired`) and says which of the two the
metric's direction favours where the paired bootstrap separates them (`ranking.favoured`), as the claims
section does for raw attention.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from effbench.leaderboard.claims import EFFICIENT
from effbench.leaderboard.ranking import _paired, compare_paired, favoured, metric_order
from effbench.leaderboard.records import BoardRecord
from effbench.leaderboard.spec import BoardSpec

# the decomposition-based explainers, in the order the section lists them
RIVALS = ("effective_attention", "attention_norm", "alti", "globenc", "value_zeroing", "attn_lrp", "attention_flow")
NOT_TESTED = "–"  # what `favoured` says where no example has both values


@dataclass(frozen=True)
class RivalRow:
    """Efficient attention against one rival on one metric of one task, over the examples both evaluated."""

    task: str
    metric: str
    direction: str
    rival: str
    examples: int  # the examples both records evaluated
    efficient: dict  # mean, low, high, n: the 95% bootstrap interval over efficient attention's finite values
    rival_interval: dict  # the same for the rival
    difference: float  # mean of efficient - rival over the examples where both are finite (NaN: none)
    p_value: float  # paired bootstrap over those examples (NaN: none)
    favours: str  # EFFICIENT, the rival, "neither" (p >= SIGNIFICANCE_LEVEL) or NOT_TESTED


@dataclass(frozen=True)
class RivalsSection:
    unavailable: str | None  # why there is no comparison on this board at all (None: there is one)
    rivals: list[str]  # the rivals the board ranks, in RIVALS order
    rows: list[RivalRow]
    notes: list[str]  # one line each: tasks and metrics not compared


def efficient_against_decompositions(board: BoardSpec, records: dict[str, dict[str, BoardRecord]],
                                     metrics: dict[str, dict]) -> RivalsSection:
    """The section's numbers, from the board's accepted records (task -> explainer -> record)."""
    rivals = [name for name in RIVALS if name in board.explainers]
    if EFFICIENT not in board.explainers:
        return RivalsSection(unavailable=f"This board does not rank {EFFICIENT}, so it cannot compare it with the "
                                         "decomposition methods.", rivals=rivals, rows=[], notes=[])
    if not rivals:
        return RivalsSection(unavailable=f"This board ranks none of the decomposition methods "
                                         f"({', '.join(RIVALS)}), so it cannot compare {EFFICIENT} with them.",
                             rivals=[], rows=[], notes=[])
    rows, notes = [], []
    for task in board.tasks:
        having = records.get(task, {})
        if EFFICIENT not in having:
            notes.append(f"task {task}: not compared, no {EFFICIENT} record yet")
            continue
        missing = [name for name in rivals if name not in having]
        if missing:
            notes.append(f"task {task}: not compared with {', '.join(missing)}, no record yet")
        present = [name for name in rivals if name in having]
        efficient = having[EFFICIENT]
        for metric in metric_order(board, metrics):
            if metric not in efficient.record["results"]:
                notes.append(f"task {task}: metric {metric} not compared, the {EFFICIENT} record lacks it")
                continue
            lacking = [name for name in present if metric not in having[name].record["results"]]
            if lacking:
                notes.append(f"task {task}: metric {metric} not compared with {', '.join(lacking)}, their "
                             "record lacks it")
            for rival in (name for name in present if name not in lacking):
                rows.append(_compare(task, metric, metrics[metric]["direction"], rival, efficient.values(metric),
                                     having[rival].values(metric), board.seed))
    return RivalsSection(unavailable=None, rivals=rivals, rows=rows, notes=notes)


def _compare(task: str, metric: str, direction: str, rival: str, efficient: dict[str, float],
             other: dict[str, float], seed: int) -> RivalRow:
    first, second = _paired(efficient, other)
    paired = compare_paired(first, second, seed)
    return RivalRow(
        task=task, metric=metric, direction=direction, rival=rival, examples=len(first), efficient=paired.first,
        rival_interval=paired.second, difference=paired.difference, p_value=paired.p_value,
        favours=favoured(EFFICIENT, rival, direction, paired.difference, paired.p_value),
    )


def tally(section: RivalsSection) -> dict[str, dict[str, int]]:
    """rival -> on how many (task, metric) pairs efficient attention is significantly better, worse, neither,
    or not tested; rivals without a row are left out."""
    counts: dict[str, dict[str, int]] = {}
    for row in section.rows:
        count = counts.setdefault(row.rival, {"better": 0, "worse": 0, "neither": 0, "not_tested": 0, "pairs": 0})
        outcome = {EFFICIENT: "better", row.rival: "worse", "neither": "neither"}.get(row.favours, "not_tested")
        count[outcome] += 1
        count["pairs"] += 1
    return {rival: counts[rival] for rival in section.rivals if rival in counts}


def rival_summary(section: RivalsSection) -> list[str]:
    """One sentence per rival compared: where efficient attention is significantly better, worse, or neither."""
    lines = []
    for rival, count in tally(section).items():
        text = f"against {rival}: better on {count['better']}, worse on {count['worse']}, neither on {count['neither']}"
        if count["not_tested"]:
            text += f", not tested on {count['not_tested']} (no example with both values defined)"
        lines.append(f"{text} of {count['pairs']} task–metric pairs")
    return lines


def rivals_document(section: RivalsSection) -> dict:
    """The section's numbers for results.json."""
    return {"efficient": EFFICIENT, "rivals": section.rivals, "unavailable": section.unavailable,
            "rows": [asdict(row) for row in section.rows], "tally": tally(section), "notes": section.notes}
