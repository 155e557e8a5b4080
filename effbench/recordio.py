"""Reading run records and their per-example rows back, with every field a leaderboard relies on checked.

A record comes from the runner or from a contributor, so nothing in it is trusted: a malformed record
raises EffbenchError naming the file and the key (as a dotted path) and what was expected.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

from effbench.errors import EffbenchError
from effbench.records import identity_of_record, sha256_json
from effbench.untrusted import EXCERPT_CHARACTERS, excerpt

KNOWN_SCHEMA_VERSIONS = (1,)
PER_EXAMPLE_FILE = "per_example.jsonl"
# a row's optional "input" mapping (effbench.explainers.efficient.input_facts); rows written before it lack it
INPUT_FACTS = ("length", "readout_keys", "readout_rank")


class RecordError(EffbenchError):
    """A run record or its per-example file is malformed."""


# ---- type checks: each returns None when the value is fine, else what was expected ---------------------

Check = Callable[[Any], "str | None"]


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return (isinstance(value, (int, float)) and not isinstance(value, bool)) or value is None


def _string(value: Any) -> str | None:
    return None if isinstance(value, str) else "a string"


def _optional_string(value: Any) -> str | None:
    return None if value is None or isinstance(value, str) else "a string or null"


def _optional_bool(value: Any) -> str | None:
    return None if value is None or isinstance(value, bool) else "true, false or null"


def _non_negative_int(value: Any) -> str | None:
    return None if _is_int(value) and value >= 0 else "a non-negative integer"


def _positive_int(value: Any) -> str | None:
    return None if _is_int(value) and value >= 1 else "a positive integer"


def _number(value: Any) -> str | None:
    """A float (NaN allowed: a metric is NaN where it is undefined), or null."""
    return None if _is_number(value) else "a number"


def _mapping(value: Any) -> str | None:
    return None if isinstance(value, dict) else "a mapping"


def _optional_mapping(value: Any) -> str | None:
    return None if value is None or isinstance(value, dict) else "a mapping or null"


def _direction(value: Any) -> str | None:
    return None if value in ("higher", "lower") else "'higher' or 'lower'"


def _range(value: Any) -> str | None:
    ok = isinstance(value, list) and len(value) == 2 and all(_is_number(v) for v in value)
    return None if ok else "a list [low, high] of two numbers"


def _file_name(value: Any) -> str | None:
    ok = isinstance(value, str) and value and "/" not in value and "\\" not in value and value not in (".", "..")
    return None if ok else "a plain file name beside the record (no folders)"


# key -> check, or a nested schema for a mapping
_ENVIRONMENT = {
    "effbench": _string, "python": _string, "torch": _string, "transformers": _string, "platform": _string,
    "git_sha": _optional_string, "git_dirty": _optional_bool,
}
_CONFIG = {"seed": _non_negative_int, "perturbation": _string, "model_kind": _string, "device": _string}
_TASK = {
    "name": _string, "version": _positive_int, "card_hash": _string, "data_hash": _string,
    "test_examples": _non_negative_int, "evaluated": _positive_int, "example_ids_sha256": _string,
    "citation": _optional_string,
}
_MODEL = {"name": _string, "checkpoint_sha256": _optional_string, "training": _optional_mapping}
# model.degenerate: optional, records written before it existed lack it
_DEGENERATE = {"degenerate": _optional_bool, "test_accuracy": _number, "majority_rate": _number, "measured_on": _string}
_EXPLAINER = {"name": _string, "version": _positive_int, "params": _mapping, "citation": _optional_string}
_METRIC = {
    "name": _string, "version": _positive_int, "params": _mapping, "family": _string, "direction": _direction,
    "range": _range, "citation": _optional_string,
}
_RESULT = {"mean": _number, "low": _number, "high": _number, "n": _non_negative_int, "flagged": _non_negative_int}
_RECORD = {
    "schema_version": _positive_int, "created": _string, "environment": _ENVIRONMENT, "config": _CONFIG,
    "task": _TASK, "model": _MODEL, "explainer": _EXPLAINER, "metrics": None,  # a list, checked below
    "results": _mapping, "accuracy_on_evaluated": _number, "timings_seconds_this_session": _mapping,
    "per_example_file": _file_name,
}


def _check_mapping(data: Any, schema: dict[str, Any], where: str, fail: Callable[[str, str], RecordError]) -> None:
    if not isinstance(data, dict):
        raise fail(where or "(top level)", "must be a mapping")
    for key, check in schema.items():
        path = f"{where}.{key}" if where else key
        if key not in data:
            raise fail(path, "is missing")
        if isinstance(check, dict):
            _check_mapping(data[key], check, path, fail)
        elif check is not None:
            expected = check(data[key])
            if expected is not None:
                raise fail(path, f"must be {expected}, got {excerpt(data[key])}")


def read_record(path: str | Path) -> dict:
    """Read and validate one run record (record.json)."""
    path = Path(path)

    def fail(key: str, problem: str) -> RecordError:
        return RecordError(f"malformed run record {path}: key {key!r} {problem}")

    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise RecordError(f"cannot read run record {path}: {getattr(error, 'strerror', None) or error}") from None
    try:
        record = json.loads(text)
    except json.JSONDecodeError as error:
        raise RecordError(f"run record {path} is not valid JSON: {error.msg} at line {error.lineno}, column {error.colno}") from None
    if not isinstance(record, dict):
        raise RecordError(f"malformed run record {path}: the top level must be a JSON object")
    if "schema_version" in record and record["schema_version"] not in KNOWN_SCHEMA_VERSIONS:
        raise fail("schema_version", f"is {excerpt(record['schema_version'])}; this effbench reads schema versions "
                                     f"{', '.join(map(str, KNOWN_SCHEMA_VERSIONS))} (a newer effbench may read it)")
    _check_mapping(record, _RECORD, "", fail)
    if "degenerate" in record["model"]:
        _check_mapping(record["model"]["degenerate"], _DEGENERATE, "model.degenerate", fail)

    metrics = record["metrics"]
    if not isinstance(metrics, list) or not metrics:
        raise fail("metrics", "must be a non-empty list of metric descriptions")
    names = []
    for index, metric in enumerate(metrics):
        _check_mapping(metric, _METRIC, f"metrics[{index}]", fail)
        names.append(metric["name"])
    if len(set(names)) != len(names):
        raise fail("metrics", f"names a metric twice: {excerpt(names)}")
    for name in names:
        if name not in record["results"]:
            raise fail(f"results.{name}", "is missing (every metric in 'metrics' needs a result)")
        _check_mapping(record["results"][name], _RESULT, f"results.{name}", fail)
    task = record["task"]
    labels = task.get("labels")  # class names; records written before runs recorded them have none
    if labels is not None and not (isinstance(labels, list) and all(isinstance(name, str) for name in labels)):
        raise fail("task.labels", f"must be a list of class names (strings), got {excerpt(labels)}")
    if task["evaluated"] > task["test_examples"]:
        raise fail("task.evaluated", f"({task['evaluated']}) exceeds task.test_examples ({task['test_examples']})")
    for name in names:
        result = record["results"][name]
        for count in ("n", "flagged"):
            if result[count] > task["evaluated"]:
                raise fail(f"results.{name}.{count}", f"({result[count]}) exceeds task.evaluated ({task['evaluated']})")
        low, high = result["low"], result["high"]
        if _is_finite(low) and _is_finite(high) and low > high:
            raise fail(f"results.{name}", f"must have low <= high, got low {low!r} and high {high!r}")
    accuracy = record["accuracy_on_evaluated"]
    if _is_finite(accuracy) and not 0 <= accuracy <= 1:
        raise fail("accuracy_on_evaluated", f"must lie in [0, 1], got {accuracy!r}")
    if "identity_sha256" in record:  # records written before it existed lack it
        if record["identity_sha256"] != sha256_json(identity_of_record(record)):
            raise fail("identity_sha256", "does not match the record's task, model, components and settings "
                                          "(the record was edited after its run)")
    return record


def read_per_example(record_path: str | Path) -> list[dict]:
    """The per-example rows of a record, one per example id in first-seen order (see `read_rows`)."""
    record_path = Path(record_path)
    record = read_record(record_path)
    return list(read_rows(record_path.parent / record["per_example_file"]).values())


def read_rows(path: Path) -> dict[str, dict]:
    """Read and check a per-example file: example id -> its row, the metrics of every row of the id merged.

    The one reader of per-example rows, for the runner's resume and for the leaderboard. Rows are read
    as the runner writes them: a resumed run may append a second row for an example with more metrics,
    and an interruption may cut the last line short (it has no newline; skipped). Every other line must
    be a well-formed row, else RecordError names the file and the line.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise RecordError(f"cannot read the per-example rows {path}: {getattr(error, 'strerror', None) or error}") from None
    lines = text.split("\n")  # the last item is "" when the file ends with a newline, else a line cut short
    rows: dict[str, dict] = {}
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            if number == len(lines):
                continue  # cut short by an interruption; the runner recomputes it
            raise RecordError(f"malformed per-example row in {path}, line {number}: not a JSON object "
                              f"(only the last line, cut short by an interruption, may be incomplete)") from None
        _check_row(row, path, number)
        existing = rows.get(row["example_id"])
        if existing is None:
            if "target" not in row:  # a later row of an example may add metrics only
                raise RecordError(f"malformed per-example row in {path}, line {number}: the first row of example "
                                  f"{excerpt(row['example_id'])} lacks key 'target' (the class explained)")
            rows[row["example_id"]] = row
        else:
            existing["metrics"].update(row["metrics"])
    return rows


def _is_finite(value: Any) -> bool:
    return value is not None and math.isfinite(value)


def _check_row(row: Any, path: Path, number: int) -> None:
    def fail(problem: str) -> RecordError:
        return RecordError(f"malformed per-example row in {path}, line {number}: {problem}")

    if not isinstance(row, dict):
        raise fail(f"a row must be a JSON object, got {excerpt(row)}")
    for key in ("example_id", "metrics"):
        if key not in row:
            raise fail(f"key {key!r} is missing")
    if not isinstance(row["example_id"], str):
        raise fail(f"key 'example_id' must be a string, got {excerpt(row['example_id'])}")
    if not (row.get("target") is None or _is_int(row["target"])) or not (row.get("label") is None or _is_int(row["label"])):
        raise fail("keys 'target' and 'label' must be class indices (integers, or null)")
    if not isinstance(row["metrics"], dict):
        raise fail("key 'metrics' must be a mapping of metric name -> {value, flags}")
    for name, entry in row["metrics"].items():
        where = f"key 'metrics.{name[:EXCERPT_CHARACTERS]}'"  # JSON keys are strings
        if not isinstance(entry, dict) or "value" not in entry or not _is_number(entry["value"]):
            got = excerpt(entry.get("value")) if isinstance(entry, dict) and "value" in entry else excerpt(entry)
            raise fail(f"{where} must be a mapping with a numeric 'value' (a number, or null), got {got}")
        flags = entry.get("flags")
        if not isinstance(flags, list) or not all(isinstance(flag, str) for flag in flags):
            raise fail(f"{where}: 'flags' must be a list of strings, got {excerpt(flags)}")
        if not _is_finite(entry["value"]) and not flags:
            raise fail(f"{where}: a value of {excerpt(entry['value'])} needs a flag saying why it is undefined")
    facts = row.get("input")
    well_formed = isinstance(facts, dict) and all(_is_int(facts.get(key)) and facts[key] >= 0 for key in INPUT_FACTS)
    if facts is not None and not well_formed:
        raise fail(f"key 'input' must map {', '.join(INPUT_FACTS)} to non-negative integers, got {excerpt(facts)}")
    tokens, scores = row.get("tokens"), row.get("scores")
    if tokens is not None or scores is not None:
        if not isinstance(tokens, list) or not all(isinstance(token, str) for token in tokens):
            raise fail("key 'tokens' must be a list of strings")
        if not isinstance(scores, list) or len(scores) != len(tokens) or not all(_is_number(s) for s in scores):
            raise fail("key 'scores' must be a list of numbers, one per token")
