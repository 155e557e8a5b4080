"""A board's run records: reading them with their per-example rows, and checking they can be ranked together."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from effbench.errors import EffbenchError
from effbench.leaderboard.spec import RECORDS_DIR, BoardSpec
from effbench.recordio import read_per_example, read_record
from effbench.records import sha256_json


@dataclass
class BoardRecord:
    """One accepted run record with the per-example rows of the examples it evaluated, in order."""

    path: Path
    label: str  # the path relative to the board folder, for messages
    record: dict
    rows: list[dict]

    @property
    def task(self) -> str:
        return self.record["task"]["name"]

    @property
    def explainer(self) -> str:
        return self.record["explainer"]["name"]

    def metric(self, name: str) -> dict | None:
        return next((m for m in self.record["metrics"] if m["name"] == name), None)

    def values(self, metric: str) -> dict[str, float]:
        """example id -> the metric's value (NaN where undefined)."""
        return {row["example_id"]: _as_float(row["metrics"][metric]["value"]) for row in self.rows}


def _as_float(value: Any) -> float:
    return float("nan") if value is None else float(value)


def load_board_record(path: Path, board_dir: Path) -> BoardRecord:
    """Read a record and its per-example rows; check the rows are the evaluated examples and agree with the means."""
    label = str(path.relative_to(board_dir)) if path.is_relative_to(board_dir) else str(path)
    record = read_record(path)
    rows = read_per_example(path)
    task = record["task"]
    ids = [row["example_id"] for row in rows]
    if len(rows) != task["evaluated"] or sha256_json(ids) != task["example_ids_sha256"]:
        raise EffbenchError(
            f"{label}: the {len(rows)} rows in {record['per_example_file']} are not the {task['evaluated']} evaluated examples "
            f"(their ids hash to {sha256_json(ids)[:16]}..., the record says {task['example_ids_sha256'][:16]}...)"
        )
    for metric in record["metrics"]:
        name = metric["name"]
        missing = [row["example_id"] for row in rows if name not in row["metrics"]]
        if missing:
            raise EffbenchError(f"{label}: metric {name!r} has no per-example value for example {missing[0]!r}")
        values = [_as_float(row["metrics"][name]["value"]) for row in rows]
        kept = [v for v in values if math.isfinite(v)]
        result = record["results"][name]
        mean = sum(kept) / len(kept) if kept else float("nan")
        recorded = _as_float(result["mean"])
        agree = (math.isnan(mean) and math.isnan(recorded)) or abs(mean - recorded) <= 1e-9 * max(1.0, abs(mean))
        if not agree or result["n"] != len(kept):
            raise EffbenchError(
                f"{label}: results.{name} (mean {recorded!r}, n {result['n']}) disagrees with the per-example "
                f"rows (mean {mean!r}, n {len(kept)})"
            )
        flagged = sum(bool(row["metrics"][name]["flags"]) for row in rows)
        if result["flagged"] != flagged:
            raise EffbenchError(f"{label}: results.{name}.flagged is {result['flagged']}, but {flagged} of the "
                                "per-example rows are flagged")
    labelled = [row for row in rows if row.get("label") is not None]
    if len(labelled) == len(rows):
        accuracy = sum(row["target"] == row["label"] for row in rows) / len(rows)
        if abs(accuracy - record["accuracy_on_evaluated"]) > 1e-9:
            raise EffbenchError(f"{label}: accuracy_on_evaluated is {record['accuracy_on_evaluated']!r}, but the "
                                f"per-example rows give {accuracy!r}")
    return BoardRecord(path=path, label=label, record=record, rows=rows)


def find_records(board_dir: Path) -> list[Path]:
    records_dir = board_dir / RECORDS_DIR
    return sorted(records_dir.rglob("record.json")) if records_dir.is_dir() else []


def unfinished_runs(board: BoardSpec, board_dir: Path) -> list[str]:
    """A note per task with runs under way: the folders that have per-example rows but no record yet (a run
    stopped before its last batch; `effbench leaderboard run` resumes it), and how many examples have every
    metric of the board. The rows are read as the runner's resume reads them."""
    from effbench.recordio import RecordError, read_rows

    notes = []
    for task in board.tasks:
        task_dir = board_dir / RECORDS_DIR / task
        if not task_dir.is_dir():
            continue
        done, unreadable = {}, []
        for rows_file in sorted(task_dir.glob("*/per_example.jsonl")):
            if (rows_file.parent / "record.json").exists():
                continue
            try:
                rows = read_rows(rows_file)
            except RecordError:
                unreadable.append(rows_file.parent.name)
                continue
            done[rows_file.parent.name] = sum(all(name in row.get("metrics", {}) for name in board.metrics)
                                              for row in rows.values())
        if not done and not unreadable:
            continue
        if done:
            counts = sorted(set(done.values()))
            span = f"{counts[0]}" if len(counts) == 1 else f"{counts[0]} to {counts[-1]}"
            resume = f"effbench leaderboard run {board.name} --task {task}"
            note = (f"task {task}: a run under way in {len(done) + len(unreadable)} folder(s) with no record yet: "
                    f"{span} of {board.limit_for(task)} examples have every metric (`{resume}` resumes it)")
        else:
            note = f"task {task}: unfinished run folder(s) with no record yet"
        if unreadable:
            note += f"; unreadable rows in {', '.join(unreadable)}"
        notes.append(note)
    return notes


def _show(value: Any) -> str:
    return json.dumps(value, sort_keys=True, ensure_ascii=False)


def check_records(board: BoardSpec, records: Sequence[BoardRecord]) -> list[str]:
    """Every reason the records cannot be ranked together on this board, one line each (empty: all fine).

    Records of one task must share the task version, data hash, model checkpoint, perturbation mode and
    evaluated example ids; a metric or an explainer must have one version and one set of parameters on
    the whole board; there is one record per (task, explainer); and every record follows the board spec.
    """
    problems: list[str] = []

    def compare(group: str, field_name: str, members: Sequence[tuple[BoardRecord, Any]]) -> None:
        reference_record, reference_value = members[0]
        for member, value in members[1:]:
            if value != reference_value:
                problems.append(
                    f"not comparable ({group}): {field_name} is {_show(reference_value)} in {reference_record.label} "
                    f"but {_show(value)} in {member.label}"
                )

    by_task: dict[str, list[BoardRecord]] = {}
    for record in records:
        by_task.setdefault(record.task, []).append(record)
    for task, members in by_task.items():
        group = f"task {task}"
        for field_name, get in (
            ("task.version", lambda r: r.record["task"]["version"]),
            ("task.data_hash", lambda r: r.record["task"]["data_hash"]),
            ("task.example_ids_sha256", lambda r: r.record["task"]["example_ids_sha256"]),
            ("task.card_hash", lambda r: r.record["task"]["card_hash"]),
            ("model.checkpoint_sha256", lambda r: r.record["model"]["checkpoint_sha256"]),
            # records written before the runner recorded them lack these two
            ("model.max_length", lambda r: r.record["model"].get("max_length")),
            ("model.truncation_side", lambda r: r.record["model"].get("truncation_side")),
            ("config.perturbation", lambda r: r.record["config"]["perturbation"]),
        ):
            compare(group, field_name, [(r, get(r)) for r in members])
        by_explainer: dict[str, list[BoardRecord]] = {}
        for record in members:
            by_explainer.setdefault(record.explainer, []).append(record)
        for explainer, same in by_explainer.items():
            if len(same) > 1:
                labels = " and ".join(r.label for r in same)
                problems.append(f"two records for task {task}, explainer {explainer}: {labels}; keep one")

    mixed = mixed_dtypes(records)
    if mixed:
        problems.append(mixed)

    explainer_members: dict[str, list[BoardRecord]] = {}
    metric_members: dict[str, list[tuple[BoardRecord, dict]]] = {}
    for record in records:
        explainer_members.setdefault(record.explainer, []).append(record)
        for metric in record.record["metrics"]:
            if metric["name"] in board.metrics:
                metric_members.setdefault(metric["name"], []).append((record, metric))
    for explainer, members in explainer_members.items():
        for key in ("version", "params"):
            compare(f"explainer {explainer}", f"explainer.{key}", [(r, r.record["explainer"][key]) for r in members])
    for metric_name, members in metric_members.items():
        for key in ("version", "params", "direction"):
            compare(f"metric {metric_name}", f"metrics[{metric_name}].{key}", [(r, m[key]) for r, m in members])

    for record in records:
        problems.extend(_board_conformance(board, record))
    problems.extend(_unpinned_parameters(board, records))
    return problems


def mixed_dtypes(records: Sequence[BoardRecord]) -> str | None:
    """The one line naming which records ran in which dtype, where they ran in more than one, else None.

    The dtype changes the numbers on every task, so a board ranks records of one dtype only."""
    by_dtype: dict[str, list[str]] = {}
    for record in records:
        by_dtype.setdefault(record.record["config"].get("dtype") or "unrecorded", []).append(record.label)
    if len(by_dtype) < 2:
        return None

    def some(labels: list[str]) -> str:
        return ", ".join(labels[:3]) + (f" and {len(labels) - 3} more" if len(labels) > 3 else "")

    listed = "; ".join(f"{dtype} in {some(labels)}" for dtype, labels in by_dtype.items())
    return (f"records of different dtypes are never ranked together: config.dtype is {listed}; "
            "run every task of the board with one --dtype")


def _unpinned_parameters(board: BoardSpec, records: Sequence[BoardRecord]) -> list[str]:
    """Where a record's explainer or metric has a parameter the board does not set, at another value than the run's.

    The board's run gives every parameter it does not set its default, `seed` the board's seed and `mode`
    the board's perturbation; anything else (an explainer's `seed=5`) would be ranked beside records made
    as the board says. Component versions are compared between records, not with the installed code.
    """
    from effbench.explainers import explainers as explainer_registry
    from effbench.metrics import metrics as metric_registry

    problems = []

    def check(record: BoardRecord, where: str, entry: dict, registry, spec: str, pinned: dict, run_sets: dict) -> None:
        try:
            defaults = registry.get(spec).defaults
        except EffbenchError as error:
            problems.append(f"{record.label}: {where}: {error}")
            return
        for key, value in entry["params"].items():
            if key in pinned:
                continue  # compared with the board by _board_conformance
            if key not in defaults:
                problems.append(f"{record.label}: {where}.params.{key} is not a parameter of {entry['name']}")
                continue
            wanted = run_sets.get(key, defaults[key])
            if _as_json(value) != _as_json(wanted):
                problems.append(f"{record.label}: {where}.params.{key} is {_show(value)}, but board {board.name} "
                                f"does not set it: its run uses {_show(wanted)}")

    for record in records:
        name = record.explainer
        check(record, "explainer", record.record["explainer"], explainer_registry, board.explainer_specs.get(name, name),
              board.explainers.get(name, {}), {"seed": board.seed})
        for metric in record.record["metrics"]:
            if metric["name"] in board.metrics:
                check(record, f"metrics[{metric['name']}]", metric, metric_registry, metric["name"],
                      board.metrics[metric["name"]], {"mode": board.perturbation})
    return problems


def _as_json(value: Any) -> Any:
    """As the value reads back from a record (tuples become lists)."""
    return json.loads(json.dumps(value))


def _board_conformance(board: BoardSpec, record: BoardRecord) -> list[str]:
    """Where a record departs from what its board prescribes."""
    problems = []
    config = record.record["config"]
    task = record.record["task"]

    def differs(field_name: str, value: Any, wanted: Any) -> None:
        problems.append(f"{record.label}: {field_name} is {_show(value)} but board {board.name} sets {_show(wanted)}")

    if record.record["model"]["checkpoint_sha256"] is None:
        problems.append(f"{record.label}: model.checkpoint_sha256 is missing; a board ranks explanations of "
                        "models whose weights are known")
    if config["perturbation"] != board.perturbation:
        differs("config.perturbation", config["perturbation"], board.perturbation)
    if config["model_kind"] != board.model_kind:
        differs("config.model_kind", config["model_kind"], board.model_kind)
    if config["seed"] != board.seed:
        differs("config.seed", config["seed"], board.seed)
    expected = min(board.limit_for(task["name"]), task["test_examples"])
    if task["evaluated"] != expected:
        differs("task.evaluated", task["evaluated"], expected)
    wanted_params = board.explainers.get(record.explainer, {})
    for key, wanted in wanted_params.items():
        if record.record["explainer"]["params"].get(key) != wanted:
            differs(f"explainer.params.{key}", record.record["explainer"]["params"].get(key), wanted)
    for metric in record.record["metrics"]:
        if metric["name"] not in board.metrics:
            continue
        mode = metric["params"].get("mode")
        if "mode" in metric["params"] and mode != board.perturbation:
            differs(f"metrics[{metric['name']}].params.mode", mode, board.perturbation)
        for key, wanted in board.metrics[metric["name"]].items():
            if metric["params"].get(key) != wanted:
                differs(f"metrics[{metric['name']}].params.{key}", metric["params"].get(key), wanted)
    return problems
