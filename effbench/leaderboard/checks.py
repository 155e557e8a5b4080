"""What a board says about its metrics and its cost: whether the metrics agree on the explainers'
ranking, whether each metric tells explainers from random, and what each explainer cost per example.

- **Agreement**: per task and pair of metrics, Kendall's tau-b between the explainers' means (each oriented
  so that higher is better), over the explainers both metrics scored. Metrics that measure one thing
  should order explainers alike; a tau near 0 or below says they do not.
- **Diagnosticity** (after Chan et al. 2022): per task and metric, the share of (example, explainer)
  pairs in which an explainer other than `random` scores better than `random` on the same example by
  more than DIAGNOSTIC_MARGIN of the metric's range; for a metric without a finite range (infidelity,
  sensitivity-max), of its scale on the task, the median absolute value of random's values there (an
  absolute margin would swamp infidelity's values of about 0.003). A metric that cannot tell explainers
  from random sits near or below 0.5.
- **Cost**: per task and explainer, seconds and forward rows per example computed, from the records'
  `timings_seconds_this_session` and `passes_this_session` (records made before passes were counted
  show none).
"""

from __future__ import annotations

import itertools
import math
import statistics
from dataclasses import dataclass

from effbench.leaderboard.ranking import BuildResult, metric_order

RANDOM = "random"
DIAGNOSTIC_MARGIN = 0.01  # of the metric's range, or of its scale on the task where the range is unbounded


@dataclass(frozen=True)
class AgreementRow:
    task: str
    first: str
    second: str
    explainers: int
    tau: float  # NaN: fewer than 3 explainers, or one metric gives them all the same mean


@dataclass(frozen=True)
class DiagnosticityRow:
    task: str
    metric: str
    pairs: int  # (example, explainer) pairs with a finite value for both the explainer and random
    share_above_random: float  # NaN: no pairs


@dataclass(frozen=True)
class CostRow:
    task: str
    explainer: str
    examples: int  # examples computed in the session the timings are from
    explainer_seconds: float  # per example
    metric_seconds: float  # per example, all of the board's metrics together
    explainer_rows: float | None  # forward rows per example (None: not counted in the record)
    metric_rows_requested: float | None
    metric_rows_computed: float | None
    explainer_backward_rows: float | None  # rows a gradient flowed back through, per example (None: not counted)
    metric_backward_rows: float | None


def _oriented(mean: float, direction: str) -> float:
    return mean if direction == "higher" else -mean


def metric_agreement(result: BuildResult) -> list[AgreementRow]:
    from scipy.stats import kendalltau

    rows = []
    names = metric_order(result.board, result.metrics)
    for task in result.board.tasks:
        means: dict[str, dict[str, float]] = {}
        for standing in result.standings:
            if standing.task == task and math.isfinite(standing.mean):
                means.setdefault(standing.metric, {})[standing.explainer] = _oriented(standing.mean, standing.direction)
        for first, second in itertools.combinations([name for name in names if name in means], 2):
            shared = [explainer for explainer in means[first] if explainer in means[second]]
            tau = float("nan")
            if len(shared) >= 3:
                a, b = [means[first][e] for e in shared], [means[second][e] for e in shared]
                if len(set(a)) > 1 and len(set(b)) > 1:
                    tau = float(kendalltau(a, b).statistic)
            rows.append(AgreementRow(task, first, second, len(shared), tau))
    return rows


def diagnosticity(result: BuildResult) -> list[DiagnosticityRow]:
    rows = []
    for task in result.board.tasks:
        records = result.records.get(task, {})
        if RANDOM not in records:
            continue
        for metric in metric_order(result.board, result.metrics):
            info = result.metrics[metric]
            low, high = info["range"]
            if metric not in records[RANDOM].record["results"]:
                continue
            random_values = records[RANDOM].values(metric)
            margin = DIAGNOSTIC_MARGIN * (high - low if math.isfinite(high - low) else _scale(random_values.values()))
            above = pairs = 0
            for explainer, record in records.items():
                if explainer == RANDOM or metric not in record.record["results"]:
                    continue
                for example_id, value in record.values(metric).items():
                    baseline = random_values.get(example_id, float("nan"))
                    if not (math.isfinite(value) and math.isfinite(baseline)):
                        continue
                    pairs += 1
                    above += _oriented(value - baseline, info["direction"]) > margin
            rows.append(DiagnosticityRow(task, metric, pairs, above / pairs if pairs else float("nan")))
    return rows


def _scale(values) -> float:
    """The median absolute value of the finite `values` (0 when there are none)."""
    finite = [abs(value) for value in values if math.isfinite(value)]
    return statistics.median(finite) if finite else 0.0


def cost(result: BuildResult) -> list[CostRow]:
    rows = []
    metrics = metric_order(result.board, result.metrics)
    for task in result.board.tasks:
        for explainer in result.ranked_explainers(task):
            record = result.records[task][explainer].record
            seconds = record.get("timings_seconds_this_session", {})
            examples = record.get("examples_computed_this_session", record["task"]["evaluated"])
            if not examples:
                continue
            passes = record.get("passes_this_session")
            explainer_rows = requested = computed = explainer_backward = metric_backward = None
            if passes is not None:
                explainer_rows = passes.get("explainer", {}).get("computed", 0) / examples
                requested = sum(passes.get(m, {}).get("requested", 0) for m in metrics) / examples
                computed = sum(passes.get(m, {}).get("computed", 0) for m in metrics) / examples
            if passes is not None and "backward" in passes.get("explainer", {}):
                explainer_backward = passes["explainer"]["backward"] / examples
                metric_backward = sum(passes.get(m, {}).get("backward", 0) for m in metrics) / examples
            rows.append(CostRow(task, explainer, examples, seconds.get("explainer", 0.0) / examples,
                                sum(seconds.get(m, 0.0) for m in metrics) / examples,
                                explainer_rows, requested, computed, explainer_backward, metric_backward))
    return rows
