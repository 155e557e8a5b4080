"""The board's section "Published rankings reproduced": each ranking a method's authors published (the board's
`published_rankings`) set against the board's own numbers, per task, on all of the task's examples.

A ranking is a list of tiers, best first. Every pair of explainers in different tiers is a claimed ordering: it
holds where the paired bootstrap separates the two (`ranking.compare_paired`) and the metric's direction favours
the one claimed better (`ranking.favoured`), is reversed where it favours the other, and is not separated where
the test does not tell them apart. Every pair inside one tier is a claimed tie: it holds where the test does not
separate the two.
"""

from __future__ import annotations

import math
from collections.abc import Collection
from dataclasses import asdict, dataclass
from itertools import combinations

from effbench.leaderboard.ranking import _paired, compare_paired, favoured, mean_order_key
from effbench.leaderboard.records import BoardRecord, _as_float
from effbench.leaderboard.spec import BoardSpec, PublishedRanking

HELD = "held"
REVERSED = "reversed"
NOT_SEPARATED = "not separated"
SEPARATED = "separated"
NOT_TESTED = "not tested"  # no example has both values
TIE = "≈"  # how the pairs table shows a claimed tie


@dataclass(frozen=True)
class PublishedPair:
    """Two explainers of a published ranking on one task: claimed in that order, or claimed about equal."""

    better: str  # the one claimed better; of a claimed tie, the one the tier names first
    worse: str  # the one claimed worse; of a claimed tie, the other
    tie: bool  # the two share a tier
    examples: int  # the examples both records evaluated
    # mean of better - worse over the examples where both are finite, oriented by the metric's direction so that
    # positive is as claimed (of a tie: positive where the one named first is the better); NaN: none
    difference: float
    p_value: float  # paired bootstrap over those examples (NaN: none)
    favours: str  # `favoured`: the better of the two, "neither" (p >= SIGNIFICANCE_LEVEL) or "–" (not tested)
    outcome: str  # HELD, REVERSED or NOT_SEPARATED for an ordering; HELD or SEPARATED for a tie; NOT_TESTED


@dataclass(frozen=True)
class PublishedTask:
    """One published ranking against one task's records."""

    source: str
    task: str
    metric: str
    direction: str
    examples: int  # the examples the task's records evaluated
    compared: list[str]  # the ranking's explainers with values of the metric on the task, in the ranking's order
    observed: list[dict]  # explainer, mean: the compared explainers by mean in the metric's direction, best first
    pairs: list[PublishedPair]


@dataclass(frozen=True)
class PublishedSection:
    entries: list[PublishedRanking]  # the board's published rankings, as board.yaml gives them
    tasks: list[PublishedTask]
    notes: list[str]  # one line each: explainers and tasks not compared


def published_rankings(board: BoardSpec, records: dict[str, dict[str, BoardRecord]],
                       metrics: dict[str, dict], citation_keys: Collection[str]) -> PublishedSection:
    """The section's numbers, from the board's accepted records (task -> explainer -> record). `citation_keys`:
    the BibTeX keys of the board's citations.bib, where each ranking's source should be found."""
    tasks, notes = [], []
    for entry in board.published_rankings:
        if entry.source not in citation_keys:
            notes.append(f"{entry.source}: not a key of this board's citations.bib (no record cites it); check the "
                         "source's spelling against the explainers' citations")
        if entry.metric not in metrics:
            notes.append(f"{entry.source}: not compared, no record reports metric {entry.metric}")
            continue
        for task in board.tasks:
            having = records.get(task, {})
            missing = [name for name in entry.explainers if name not in having]
            lacking = [name for name in entry.explainers if name in having
                       and entry.metric not in having[name].record["results"]]
            if len(missing) == len(entry.explainers):
                notes.append(f"{entry.source} on task {task}: not compared, none of its explainers has a record yet")
                continue
            if missing:
                notes.append(f"{entry.source} on task {task}: {', '.join(missing)} not compared, no record yet")
            if lacking:
                notes.append(f"{entry.source} on task {task}: {', '.join(lacking)} not compared, their record lacks "
                             f"{entry.metric}")
            compared = [name for name in entry.explainers if name in having and name not in lacking]
            if len(compared) < 2:
                notes.append(f"{entry.source} on task {task}: not compared, fewer than two of its explainers have "
                             f"{entry.metric} values")
                continue
            tasks.append(_reproduce(entry, task, metrics[entry.metric]["direction"],
                                    {name: having[name] for name in compared}, board.seed))
    return PublishedSection(entries=list(board.published_rankings), tasks=tasks, notes=notes)


def _reproduce(entry: PublishedRanking, task: str, direction: str, having: dict[str, BoardRecord],
               seed: int) -> PublishedTask:
    tiers = [[name for name in tier if name in having] for tier in entry.ranking]
    tiers = [tier for tier in tiers if tier]
    pairs = [_compare(better, worse, False, direction, having, entry.metric, seed)
             for index, tier in enumerate(tiers) for better in tier
             for later in tiers[index + 1:] for worse in later]
    pairs += [_compare(first, second, True, direction, having, entry.metric, seed)
              for tier in tiers for first, second in combinations(tier, 2)]
    means = {name: _as_float(record.record["results"][entry.metric]["mean"]) for name, record in having.items()}
    observed = sorted(having, key=lambda name: mean_order_key(means[name], direction))  # ties in the ranking's order
    return PublishedTask(
        source=entry.source, task=task, metric=entry.metric, direction=direction,
        examples=len(next(iter(having.values())).rows), compared=list(having),
        observed=[{"explainer": name, "mean": means[name]} for name in observed], pairs=pairs,
    )


def _compare(better: str, worse: str, tie: bool, direction: str, having: dict[str, BoardRecord], metric: str,
             seed: int) -> PublishedPair:
    first, second = _paired(having[better].values(metric), having[worse].values(metric))
    paired = compare_paired(first, second, seed)
    favours = favoured(better, worse, direction, paired.difference, paired.p_value)
    if favours == "–":
        outcome = NOT_TESTED
    elif tie:
        outcome = HELD if favours == "neither" else SEPARATED
    else:
        outcome = {better: HELD, worse: REVERSED}.get(favours, NOT_SEPARATED)
    return PublishedPair(better=better, worse=worse, tie=tie, examples=len(first),
                         difference=paired.difference if direction == "higher" else -paired.difference,
                         p_value=paired.p_value, favours=favours, outcome=outcome)


def ranking_text(ranking: tuple[tuple[str, ...], ...] | list[list[str]]) -> str:
    """A ranking of tiers as one line: the tiers best first, a tier's members joined by TIE."""
    return ", then ".join(f" {TIE} ".join(tier) for tier in ranking)


def observed_text(task: PublishedTask) -> str:
    """The observed ranking by mean, best first, each explainer with its mean."""
    return ", ".join(f"{entry['explainer']} ({_mean(entry['mean'])})" for entry in task.observed)


def _mean(value: float) -> str:
    return f"{value:.3f}" if math.isfinite(value) else "n/a"


def which_way(pair: PublishedPair) -> str:
    """Which way a reversed or separated pair came out: "x above y"."""
    other = pair.worse if pair.favours == pair.better else pair.better
    return f"{pair.favours} above {other}"


def published_summary(section: PublishedSection) -> list[str]:
    """One sentence per (published ranking, task) compared: how many claimed orderings and ties hold."""
    lines = []
    for task in section.tasks:
        orderings = [pair for pair in task.pairs if not pair.tie]
        ties = [pair for pair in task.pairs if pair.tie]
        parts = []
        for claimed, kind, listed in ((orderings, "orderings", (REVERSED, NOT_SEPARATED, NOT_TESTED)),
                                      (ties, "ties", (SEPARATED, NOT_TESTED))):
            if not claimed:
                continue
            held = sum(pair.outcome == HELD for pair in claimed)
            text = f"{held} of {len(claimed)} claimed {kind} hold"
            for outcome in listed:
                which = [pair for pair in claimed if pair.outcome == outcome]
                if not which:
                    continue
                text += f", {len(which)} {outcome}"
                if outcome in (REVERSED, SEPARATED):
                    text += f" ({', '.join(which_way(pair) for pair in which)})"
            parts.append(text)
        lines.append(f"{task.source} on {task.task} ({task.metric}, {task.examples} examples): {'; '.join(parts)}")
    return lines


def published_document(section: PublishedSection) -> dict:
    """The section's numbers for results.json."""
    return {"entries": [asdict(entry) for entry in section.entries],
            "tasks": [{**asdict(task), "summary": line} for task, line in zip(section.tasks, published_summary(section))],
            "notes": section.notes}
