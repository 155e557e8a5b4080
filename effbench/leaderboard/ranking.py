"""Ranking a board's records: paired bootstrap ranks per (task, metric), the overall table, the provenance."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from effbench.leaderboard.records import BoardRecord, _as_float
from effbench.leaderboard.spec import BoardSpec

if TYPE_CHECKING:
    from effbench.leaderboard.claims import ClaimsSection
    from effbench.leaderboard.published import PublishedSection
    from effbench.leaderboard.rivals import RivalsSection

SIGNIFICANCE_LEVEL = 0.05
BOOTSTRAP_RESAMPLES = 1000


@dataclass(frozen=True)
class RankedEntry:
    """One explainer's place in the ranking of one (task, metric)."""

    explainer: str
    mean: float
    rank: int
    p_vs_next: float | None  # paired bootstrap p-value against the next-ranked explainer (None: last)
    significant_vs_next: bool | None
    p_vs_best: float | None  # against the top-ranked explainer (None: the top one itself)
    tied_with_best: bool  # tested and not significantly different from the top one (True for the top one)


def _paired(a: dict[str, float], b: dict[str, float]) -> tuple[list[float], list[float]]:
    ids = [example_id for example_id in a if example_id in b]
    return [a[i] for i in ids], [b[i] for i in ids]


def mean_order_key(mean: float, direction: str) -> tuple[bool, float]:
    """Sorts means best first in the metric's direction, undefined (NaN) ones last."""
    undefined = not math.isfinite(mean)
    return undefined, 0.0 if undefined else (-mean if direction == "higher" else mean)


def rank_explainers(
    means: dict[str, float], values: dict[str, dict[str, float]], direction: str, seed: int = 0,
    resamples: int = BOOTSTRAP_RESAMPLES,
) -> list[RankedEntry]:
    """Rank explainers by mean in the metric's direction (NaN last; listed by name where means are equal, which
    share a rank: competition ranking, 1, 1, 3), testing each against the next-listed and the top-listed one with a
    paired bootstrap on the values of shared example ids."""
    from effbench.stats import paired_bootstrap_pvalue

    order = sorted(means, key=lambda name: (*mean_order_key(means[name], direction), name))

    def p_value(a: str, b: str) -> float | None:
        first, second = _paired(values[a], values[b])
        p = paired_bootstrap_pvalue(first, second, resamples=resamples, seed=seed) if first else float("nan")
        return None if math.isnan(p) else p

    ranked = []
    best = order[0] if order else None
    for position, name in enumerate(order):
        shares_rank = position > 0 and math.isfinite(means[name]) and means[name] == means[order[position - 1]]
        rank = ranked[-1].rank if shares_rank else position + 1
        p_next = p_value(name, order[position + 1]) if position + 1 < len(order) else None
        p_best = p_value(name, best) if name != best else None
        ranked.append(RankedEntry(
            explainer=name, mean=means[name], rank=rank, p_vs_next=p_next,
            significant_vs_next=None if p_next is None else p_next < SIGNIFICANCE_LEVEL,
            p_vs_best=p_best, tied_with_best=name == best or (p_best is not None and p_best >= SIGNIFICANCE_LEVEL),
        ))
    return ranked


@dataclass(frozen=True)
class PairedComparison:
    """Two explainers' values on the same examples, in the same order."""

    first: dict  # mean, low, high, n: the 95% bootstrap interval over the first one's finite values
    second: dict
    difference: float  # mean of first - second over the examples where both are finite (NaN: none)
    p_value: float  # paired bootstrap over those examples (NaN: none)


def compare_paired(first: Sequence[float], second: Sequence[float], seed: int) -> PairedComparison:
    """Each one's mean and interval, their mean paired difference and its paired bootstrap p-value."""
    from effbench.stats import bootstrap_mean, paired_bootstrap_pvalue

    differences = [a - b for a, b in zip(first, second) if math.isfinite(a) and math.isfinite(b)]
    p_value = paired_bootstrap_pvalue(first, second, resamples=BOOTSTRAP_RESAMPLES, seed=seed) if first else float("nan")
    return PairedComparison(
        first=bootstrap_mean(first, resamples=BOOTSTRAP_RESAMPLES, seed=seed),
        second=bootstrap_mean(second, resamples=BOOTSTRAP_RESAMPLES, seed=seed),
        difference=sum(differences) / len(differences) if differences else float("nan"), p_value=p_value,
    )


def favoured(first: str, second: str, direction: str, difference: float, p_value: float) -> str:
    """Which of two explainers the metric's direction prefers, given the mean of first - second and the paired
    test's p-value: the better one where p < SIGNIFICANCE_LEVEL, "neither" where not, "–" where nothing was tested."""
    if not math.isfinite(p_value) or not math.isfinite(difference):
        return "–"
    if p_value >= SIGNIFICANCE_LEVEL or difference == 0:
        return "neither"
    first_higher = difference > 0
    return first if first_higher == (direction == "higher") else second


@dataclass(frozen=True)
class Standing:
    """One row of results.json / results.csv: one explainer on one metric of one task."""

    task: str
    explainer: str
    metric: str
    direction: str
    mean: float
    low: float
    high: float
    n: int
    flagged: int
    rank: int
    p_vs_next: float | None
    significant_vs_next: bool | None
    p_vs_best: float | None
    tied_with_best: bool
    task_version: int
    explainer_version: int
    explainer_params: dict
    metric_version: int
    metric_params: dict
    record: str


@dataclass(frozen=True)
class OverallRow:
    """An explainer's mean rank on the main metric over the tasks it has a record for."""

    explainer: str
    mean_rank: float
    tasks: int
    ranks: dict[str, int]


@dataclass
class BuildResult:
    board: BoardSpec
    standings: list[Standing]
    overall: list[OverallRow]
    metrics: dict[str, dict]  # name -> version, params, family, direction, range (from the records)
    provenance: dict[str, list]  # field -> the distinct values over all records
    task_provenance: dict[str, dict]  # task -> version, data hash, checkpoint, accuracy, n
    records: dict[str, dict[str, BoardRecord]]  # task -> explainer -> record
    notes: list[str]
    citations: list[str]
    claims: ClaimsSection  # efficient against raw attention, on short and long inputs
    rivals: RivalsSection  # efficient attention against the decomposition methods, on all examples
    published: PublishedSection  # the board's published rankings against its numbers (none: no entries)
    # effbench.leaderboard.checks: do the metrics agree, does each tell explainers from random, the cost
    agreement: list = field(default_factory=list)
    diagnosticity: list = field(default_factory=list)
    cost: list = field(default_factory=list)
    files: dict[str, Path] = field(default_factory=dict)

    def standing(self, task: str, explainer: str, metric: str) -> Standing | None:
        return next((s for s in self.standings if (s.task, s.explainer, s.metric) == (task, explainer, metric)), None)

    def ranked_explainers(self, task: str) -> list[str]:
        """A task's explainers, by their rank on the main metric (a shared rank by name, as `rank_explainers` lists
        them; those without it last, by board order)."""
        explainers = list(self.records.get(task, {}))
        order = list(self.board.explainers)

        def key(name: str) -> tuple:
            standing = self.standing(task, name, self.board.main_metric)
            if standing is None:
                return (True, 0, "", order.index(name) if name in order else len(order))
            return (False, standing.rank, name, 0)

        return sorted(explainers, key=key)


def _metric_info(board: BoardSpec, records: Sequence[BoardRecord]) -> dict[str, dict]:
    info = {}
    for name in board.metrics:
        for record in records:
            metric = record.metric(name)
            if metric is not None:
                info[name] = {key: metric[key] for key in ("version", "params", "family", "direction", "range")}
                break
    return info


def metric_order(board: BoardSpec, metrics: dict[str, dict]) -> list[str]:
    """The board's metrics that have results, the main metric first."""
    names = [board.main_metric] + [m for m in board.metrics if m != board.main_metric]
    return [name for name in names if name in metrics]


def _standings(board: BoardSpec, records: dict[str, dict[str, BoardRecord]], metrics: dict[str, dict],
               notes: list[str]) -> list[Standing]:
    standings = []
    for task in board.tasks:
        for metric in metric_order(board, metrics):
            having = {e: r for e, r in records.get(task, {}).items() if metric in r.record["results"]}
            lacking = [e for e in records.get(task, {}) if e not in having]
            if lacking:
                notes.append(f"task {task}: no {metric} result from {', '.join(lacking)}")
            if not having:
                continue
            means = {e: _as_float(r.record["results"][metric]["mean"]) for e, r in having.items()}
            values = {e: r.values(metric) for e, r in having.items()}
            for entry in rank_explainers(means, values, metrics[metric]["direction"], seed=board.seed):
                record = having[entry.explainer]
                result = record.record["results"][metric]
                described = record.metric(metric)
                standings.append(Standing(
                    task=task, explainer=entry.explainer, metric=metric, direction=described["direction"],
                    mean=entry.mean, low=_as_float(result["low"]), high=_as_float(result["high"]), n=result["n"],
                    flagged=result["flagged"], rank=entry.rank, p_vs_next=entry.p_vs_next,
                    significant_vs_next=entry.significant_vs_next, p_vs_best=entry.p_vs_best,
                    tied_with_best=entry.tied_with_best, task_version=record.record["task"]["version"],
                    explainer_version=record.record["explainer"]["version"],
                    explainer_params=record.record["explainer"]["params"], metric_version=described["version"],
                    metric_params=described["params"], record=record.label,
                ))
    return standings


def _overall(board: BoardSpec, standings: Sequence[Standing]) -> list[OverallRow]:
    ranks: dict[str, dict[str, int]] = {}
    for standing in standings:
        if standing.metric == board.main_metric:
            ranks.setdefault(standing.explainer, {})[standing.task] = standing.rank
    order = list(board.explainers)
    rows = [OverallRow(explainer=e, mean_rank=sum(r.values()) / len(r), tasks=len(r), ranks=r) for e, r in ranks.items()]
    return sorted(rows, key=lambda row: (row.mean_rank, -row.tasks, order.index(row.explainer)))


def _distinct(values: Sequence[Any]) -> list:
    seen: list = []
    for value in values:
        if value not in seen:
            seen.append(value)
    return seen


def _provenance(records: Sequence[BoardRecord]) -> dict[str, list]:
    def over(get: Callable[[dict], Any]) -> list:
        return _distinct([get(r.record) for r in records])

    created = sorted(r.record["created"] for r in records)
    return {
        "effbench": over(lambda r: r["environment"]["effbench"]),
        "git_sha": over(lambda r: r["environment"]["git_sha"]),
        "git_dirty": over(lambda r: r["environment"]["git_dirty"]),
        "python": over(lambda r: r["environment"]["python"]),
        "torch": over(lambda r: r["environment"]["torch"]),
        "transformers": over(lambda r: r["environment"]["transformers"]),
        "platform": over(lambda r: r["environment"]["platform"]),
        "device": over(lambda r: r["config"]["device"]),
        "dtype": over(lambda r: r["config"].get("dtype")),
        "seed": over(lambda r: r["config"]["seed"]),
        "perturbation": over(lambda r: r["config"]["perturbation"]),
        "model_kind": over(lambda r: r["config"]["model_kind"]),
        "created": [created[0], created[-1]] if created else [],
        "records": [len(records)],
    }


def _task_provenance(board: BoardSpec, records: dict[str, dict[str, BoardRecord]]) -> dict[str, dict]:
    provenance = {}
    for task in board.tasks:
        if task not in records:
            continue
        first = next(iter(records[task].values())).record  # the fields below are equal across a task's records
        training = first["model"]["training"] or {}
        # records written before effbench checked for a degenerate model lack the block: not known (None)
        degenerate = next((r.record["model"]["degenerate"] for r in records[task].values()
                           if "degenerate" in r.record["model"]), None)
        provenance[task] = {
            "version": first["task"]["version"], "data_hash": first["task"]["data_hash"],
            "model": first["model"]["name"], "checkpoint_sha256": first["model"]["checkpoint_sha256"],
            "test_accuracy": training.get("test_accuracy"), "evaluated": first["task"]["evaluated"],
            "test_examples": first["task"]["test_examples"],
            "example_ids_sha256": first["task"]["example_ids_sha256"],
            "degenerate": degenerate,
        }
    return provenance
