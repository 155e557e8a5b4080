"""Leaderboards: a board spec and its accepted run records -> comparability check -> ranked tables and report.

A board is a folder `leaderboards/<board>/` holding `board.yaml` (what to run and rank) and
`records/<task>/<explainer>-<hash>/{record.json, per_example.jsonl}` (accepted run records).
`run_board` moves the records it replaces (another model, data or component version) to `superseded/`.
`build_board` refuses records that cannot be compared, ranks the explainers per (task, metric) with
paired bootstrap tests between neighbours, and writes README.md, results.csv, results.json,
index.html and citations.bib into the board folder.

    from effbench.leaderboard import board_workspace, build_board
    result = build_board(board_workspace("quick"))   # ./leaderboards/quick, seeded from the packaged board
"""

from __future__ import annotations

import csv
import difflib
import io
import json
import math
import re
import sys
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

import effbench
from effbench.errors import CardError, EffbenchError
from effbench.paths import PACKAGE_DIR, shipped_dir
from effbench.recordio import read_per_example, read_record
from effbench.records import json_safe, sha256_json

BOARD_FILE = "board.yaml"
RECORDS_DIR = "records"
SUPERSEDED_DIR = "superseded"
SIGNIFICANCE_LEVEL = 0.05
BOOTSTRAP_RESAMPLES = 1000
MODEL_KINDS = ("minilm", "tiny")
PERTURBATION_MODES = ("remove", "mask")
EFFBENCH_RELEASE_YEAR = 2026
ARROWS = {"higher": "↑", "lower": "↓"}
NOT_SIGNIFICANT_VS_NEXT = "≈"
NOT_SIGNIFICANT_VS_BEST = "†"

_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9._-]*$")
_BIBTEX_KEY_RE = re.compile(r"@\s*\w+\s*[{(]\s*([^,\s]+)\s*,")


# ---- the board spec --------------------------------------------------------------------------------


@dataclass(frozen=True)
class BoardSpec:
    """One validated board.yaml. `explainers` and `metrics` map names to the parameters the board sets."""

    name: str
    description: str
    tasks: tuple[str, ...]
    explainers: dict[str, dict[str, Any]]
    metrics: dict[str, dict[str, Any]]
    main_metric: str
    limits: dict[str, int]
    batch_size: int
    seed: int
    model_kind: str
    perturbation: str
    folder: Path
    # explainer name (as its records carry it) -> what the runner loads: the name, or "package.module:Class"
    explainer_specs: dict[str, str] = field(default_factory=dict)
    # task -> a classifier folder (relative to the board folder) or hub id, for tasks not on their reference model
    models: dict[str, str] = field(default_factory=dict)

    def limit_for(self, task: str) -> int:
        return self.limits[task]

    def model_for(self, task: str) -> str | None:
        """The board's model of `task` as a folder path or hub id, or None for the task's reference model."""
        given = self.models.get(task)
        if given is None:
            return None
        local = (self.folder / given).expanduser()
        return str(local) if local.exists() else given


_BOARD_FIELDS = ("name", "description", "tasks", "explainers", "metrics", "main_metric", "limit",
                 "batch_size", "seed", "model_kind", "model", "perturbation")
_BOARD_REQUIRED = ("name", "description", "tasks", "explainers", "metrics", "main_metric", "limit")


def board_workspace(name_or_path: str | Path, *, output: str | Path | None = None, progress: bool = True) -> Path:
    """The board folder a `leaderboard` command reads and writes.

    A path to a board folder is used in place (or copied to `output`). A name means `output`, else
    ./leaderboards/<name>; where that folder has no board yet, the packaged board of that name (a
    read-only seed) is copied there first: its spec and committed records. (In a clone, run from its root, that is the
    repository's own board folder.) Nothing is ever written into the installed package.
    """
    path = Path(name_or_path).expanduser()
    if (path / BOARD_FILE).is_file():
        seed = path
        target = Path(output).expanduser() if output is not None else path
    elif path.exists():
        raise EffbenchError(f"{path} is not a board folder: it has no {BOARD_FILE}")
    else:
        target = Path(output).expanduser() if output is not None else Path("leaderboards") / str(name_or_path)
        seed = target if (target / BOARD_FILE).is_file() else _packaged_board(str(name_or_path))
    if target.resolve().is_relative_to(PACKAGE_DIR / "_shipped"):
        raise EffbenchError(f"{target} is a board inside the installed effbench package, which is read-only; "
                            "give --output DIR (or run from another folder) to work on a copy")
    if (target / BOARD_FILE).is_file():
        return target
    if target.is_file():
        raise EffbenchError(f"--output {target} is a file; give a folder for the board")
    _seed_board(seed, target)
    if progress:
        print(f"board {seed.name}: copied its spec and {len(find_records(target))} committed records from {seed} "
              f"into {target}", file=sys.stderr)
    return target


def _packaged_board(name: str) -> Path:
    root = shipped_dir("leaderboards")
    folder = root / name
    if _NAME_RE.match(name) and (folder / BOARD_FILE).is_file():
        return folder
    available = sorted(p.name for p in root.iterdir() if (p / BOARD_FILE).is_file()) if root.is_dir() else []
    close = difflib.get_close_matches(name, available, n=3)
    hint = f" Did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
    raise EffbenchError(f"unknown leaderboard {name!r}.{hint} Available: {', '.join(available) or '(none)'} "
                        "(or a path to a board folder)")


def _seed_board(seed: Path, target: Path) -> None:
    """Copy a board's spec and its committed records (not its report, not superseded/) into `target`."""
    import shutil

    try:
        target.mkdir(parents=True, exist_ok=True)
        shutil.copy2(seed / BOARD_FILE, target / BOARD_FILE)
        if (seed / RECORDS_DIR).is_dir():
            shutil.copytree(seed / RECORDS_DIR, target / RECORDS_DIR, dirs_exist_ok=True)
    except OSError as error:
        raise EffbenchError(f"cannot create the board folder {target}: {error.strerror or error}") from None


def load_board(board_dir: str | Path) -> BoardSpec:
    """Read and validate `<board_dir>/board.yaml`; a bad field raises CardError naming it and what is allowed."""
    from effbench.explainers import explainers as explainer_registry
    from effbench.metrics import metrics as metric_registry
    from effbench.tasks.card import task_names

    folder = Path(board_dir)
    board_file = folder / BOARD_FILE
    try:
        data = yaml.safe_load(board_file.read_text(encoding="utf-8"))
    except OSError as error:
        raise CardError(f"cannot read board spec {board_file}: {error.strerror or error}") from None
    except (yaml.YAMLError, UnicodeDecodeError) as error:
        raise CardError(f"{board_file}: not valid UTF-8 YAML: {error}") from None
    if not isinstance(data, dict):
        raise CardError(f"{board_file}: a board spec is a YAML mapping of field: value")

    def fail(key: str, allowed: str) -> CardError:
        shown = f" (got {data[key]!r})" if key in data else ""
        return CardError(f"{board_file}: field {key!r}{shown} must be {allowed}")

    for key in data:
        if key not in _BOARD_FIELDS:
            close = difflib.get_close_matches(str(key), _BOARD_FIELDS, n=1)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            raise CardError(f"{board_file}: unknown field {key!r}.{hint} Allowed fields: {', '.join(_BOARD_FIELDS)}")
    for key in _BOARD_REQUIRED:
        if key not in data:
            raise CardError(f"{board_file}: missing required field {key!r}")

    name = data["name"]  # a board's copy (--output) may lie in a folder of another name
    if not isinstance(name, str) or not _NAME_RE.match(name):
        raise fail("name", "lower-case letters, digits, '.', '_' or '-'")
    description = data["description"]
    if not isinstance(description, str) or not description.strip():
        raise fail("description", "a non-empty string")

    def is_int(value: Any, minimum: int) -> bool:
        return isinstance(value, int) and not isinstance(value, bool) and value >= minimum

    tasks = data["tasks"]
    if not isinstance(tasks, list) or not tasks or not all(isinstance(t, str) for t in tasks) or len(set(tasks)) != len(tasks):
        raise fail("tasks", "a non-empty list of distinct task names")
    known_tasks = task_names()
    for task in tasks:
        if task not in known_tasks:
            raise fail("tasks", _known_names_hint("task", task, known_tasks))

    explainer_specs_given = _components(data["explainers"], fail, "explainers", explainer_registry.names())
    # records carry an explainer's `name`; a "package.module:Class" entry is known by its class's name
    explainers: dict[str, dict[str, Any]] = {}
    explainer_specs: dict[str, str] = {}
    for spec, params in explainer_specs_given.items():
        explainer_name = explainer_registry.get(spec).name if ":" in spec else spec
        if explainer_name in explainers:
            raise fail("explainers", f"distinct explainers; {spec!r} is explainer {explainer_name!r} again")
        explainers[explainer_name], explainer_specs[explainer_name] = params, spec
    metrics = _components(data["metrics"], fail, "metrics", metric_registry.names())
    main_metric = data["main_metric"]
    if main_metric not in metrics:
        raise fail("main_metric", f"one of the board's metrics: {', '.join(metrics)}")

    limit = data["limit"]
    if is_int(limit, 1):
        limits = {task: limit for task in tasks}
    elif isinstance(limit, dict):
        if set(limit) != set(tasks) or not all(is_int(value, 1) for value in limit.values()):
            raise fail("limit", f"a positive integer, or a mapping from each board task ({', '.join(tasks)}) "
                                "to a positive integer")
        limits = {task: limit[task] for task in tasks}
    else:
        raise fail("limit", "a positive integer, or a mapping task -> positive integer")

    batch_size = data.get("batch_size", 16)
    if not is_int(batch_size, 1):
        raise fail("batch_size", "a positive integer")
    seed = data.get("seed", 0)
    if not is_int(seed, 0):
        raise fail("seed", "a non-negative integer")
    model_kind = data.get("model_kind", "minilm")
    if model_kind not in MODEL_KINDS:
        raise fail("model_kind", f"one of {', '.join(MODEL_KINDS)}")
    perturbation = data.get("perturbation", "remove")
    if perturbation not in PERTURBATION_MODES:
        raise fail("perturbation", f"one of {', '.join(PERTURBATION_MODES)}")
    model = data.get("model")
    if model is None:
        models = {}
    elif isinstance(model, str) and model.strip():
        models = {task: model for task in tasks}
    elif isinstance(model, dict) and set(model) <= set(tasks) and all(isinstance(v, str) and v.strip() for v in model.values()):
        models = dict(model)
    else:
        raise fail("model", "a classifier folder (relative to the board folder) or hub id, or a mapping from some "
                            f"of the board's tasks ({', '.join(tasks)}) to one; tasks without one use their reference model")

    return BoardSpec(name=name, description=description.strip(), tasks=tuple(tasks), explainers=explainers,
                     metrics=metrics, main_metric=main_metric, limits=limits, batch_size=batch_size, seed=seed,
                     model_kind=model_kind, perturbation=perturbation, folder=folder, explainer_specs=explainer_specs,
                     models=models)


def _known_names_hint(kind: str, name: str, known: Sequence[str]) -> str:
    close = difflib.get_close_matches(name, known, n=3)
    hint = f" (did you mean {' or '.join(repr(c) for c in close)}?)" if close else ""
    return f"known {kind} names; {name!r} is not one{hint}. Available: {', '.join(known)}"


def _components(value: Any, fail: Callable[[str, str], CardError], key: str, known: Sequence[str]) -> dict[str, dict]:
    """A list of names, or a mapping name -> parameters (a mapping, or empty), as name -> parameters."""
    allowed = "a non-empty list of distinct names, or a mapping from names to parameter mappings"
    if isinstance(value, list):
        if not value or not all(isinstance(v, str) for v in value) or len(set(value)) != len(value):
            raise fail(key, allowed)
        components = {name: {} for name in value}
    elif isinstance(value, dict) and value:
        if not all(isinstance(k, str) and (v is None or isinstance(v, dict)) for k, v in value.items()):
            raise fail(key, allowed)
        components = {name: dict(params or {}) for name, params in value.items()}
    else:
        raise fail(key, allowed)
    kind = key.rstrip("s")
    for name in components:
        if name not in known and ":" not in name:  # "package.module:Class" names a third-party component
            raise fail(key, _known_names_hint(kind, name, known))
    return components


# ---- records on a board --------------------------------------------------------------------------------


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
    evaluated = rows[: task["evaluated"]]
    ids = [row["example_id"] for row in evaluated]
    if len(evaluated) < task["evaluated"] or sha256_json(ids) != task["example_ids_sha256"]:
        raise EffbenchError(
            f"{label}: the rows in {record['per_example_file']} are not the {task['evaluated']} evaluated examples "
            f"(their ids hash to {sha256_json(ids)[:16]}..., the record says {task['example_ids_sha256'][:16]}...)"
        )
    for metric in record["metrics"]:
        name = metric["name"]
        missing = [row["example_id"] for row in evaluated if name not in row["metrics"]]
        if missing:
            raise EffbenchError(f"{label}: metric {name!r} has no per-example value for example {missing[0]!r}")
        values = [_as_float(row["metrics"][name]["value"]) for row in evaluated]
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
    return BoardRecord(path=path, label=label, record=record, rows=evaluated)


def find_records(board_dir: Path) -> list[Path]:
    records_dir = board_dir / RECORDS_DIR
    return sorted(records_dir.rglob("record.json")) if records_dir.is_dir() else []


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
            ("model.checkpoint_sha256", lambda r: r.record["model"]["checkpoint_sha256"]),
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
    return problems


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


# ---- ranking ---------------------------------------------------------------------------------------


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


def rank_explainers(
    means: dict[str, float], values: dict[str, dict[str, float]], direction: str, seed: int = 0,
    resamples: int = BOOTSTRAP_RESAMPLES,
) -> list[RankedEntry]:
    """Rank explainers by mean in the metric's direction (NaN last, ties by name), testing each against
    the next-ranked and the top-ranked one with a paired bootstrap on the values of shared example ids."""
    from effbench.stats import paired_bootstrap_pvalue

    def key(name: str) -> tuple:
        mean = means[name]
        undefined = not math.isfinite(mean)
        return (undefined, 0.0 if undefined else (-mean if direction == "higher" else mean), name)

    order = sorted(means, key=key)

    def p_value(a: str, b: str) -> float | None:
        first, second = _paired(values[a], values[b])
        p = paired_bootstrap_pvalue(first, second, resamples=resamples, seed=seed) if first else float("nan")
        return None if math.isnan(p) else p

    ranked = []
    best = order[0] if order else None
    for position, name in enumerate(order):
        p_next = p_value(name, order[position + 1]) if position + 1 < len(order) else None
        p_best = p_value(name, best) if name != best else None
        ranked.append(RankedEntry(
            explainer=name, mean=means[name], rank=position + 1, p_vs_next=p_next,
            significant_vs_next=None if p_next is None else p_next < SIGNIFICANCE_LEVEL,
            p_vs_best=p_best, tied_with_best=name == best or (p_best is not None and p_best >= SIGNIFICANCE_LEVEL),
        ))
    return ranked


# ---- the build -------------------------------------------------------------------------------------


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
    files: dict[str, Path] = field(default_factory=dict)

    def standing(self, task: str, explainer: str, metric: str) -> Standing | None:
        return next((s for s in self.standings if (s.task, s.explainer, s.metric) == (task, explainer, metric)), None)

    def ranked_explainers(self, task: str) -> list[str]:
        """A task's explainers, by their rank on the main metric (those without it last, by board order)."""
        explainers = list(self.records.get(task, {}))
        order = list(self.board.explainers)

        def key(name: str) -> tuple:
            standing = self.standing(task, name, self.board.main_metric)
            return (standing is None, standing.rank if standing else 0, order.index(name) if name in order else len(order))

        return sorted(explainers, key=key)


def build_board(board_dir: str | Path) -> BuildResult:
    """Read a board's spec and records, check they are comparable, rank, and write the report files."""
    board_dir = Path(board_dir)
    board = load_board(board_dir)
    notes: list[str] = []

    loaded: list[BoardRecord] = []
    for path in find_records(board_dir):
        record = load_board_record(path, board_dir)
        if record.task not in board.tasks:
            notes.append(f"ignored {record.label}: task {record.task} is not on this board")
            continue
        if record.explainer not in board.explainers:
            notes.append(f"ignored {record.label}: explainer {record.explainer} is not on this board")
            continue
        folder_task = path.parent.parent.name
        if folder_task != record.task:
            raise EffbenchError(f"{record.label}: the record is for task {record.task} but lies under "
                                f"{RECORDS_DIR}/{folder_task}/; move it to {RECORDS_DIR}/{record.task}/")
        extra = [m["name"] for m in record.record["metrics"] if m["name"] not in board.metrics]
        if extra:
            notes.append(f"{record.label}: metrics not on this board ignored: {', '.join(extra)}")
        loaded.append(record)
    if not loaded:
        raise EffbenchError(f"board {board.name} has no records for its tasks and explainers under "
                            f"{board_dir / RECORDS_DIR}; run `effbench run` with the board's settings first")

    problems = check_records(board, loaded)
    if problems:
        raise EffbenchError(f"board {board.name}: {len(problems)} problem(s) with its records:\n  " + "\n  ".join(problems))

    records: dict[str, dict[str, BoardRecord]] = {}
    for task in board.tasks:
        for record in loaded:
            if record.task == task:
                records.setdefault(task, {})[record.explainer] = record
    for task in board.tasks:
        missing = [e for e in board.explainers if e not in records.get(task, {})]
        if task not in records:
            notes.append(f"no records yet for task {task}")
        elif missing:
            notes.append(f"task {task}: no record yet for {', '.join(missing)}")

    metrics = _metric_info(board, loaded)
    for name in board.metrics:
        if name not in metrics:
            notes.append(f"no record reports metric {name}")
    standings = _standings(board, records, metrics, notes)
    result = BuildResult(
        board=board, standings=standings, overall=_overall(board, standings), metrics=metrics,
        provenance=_provenance(loaded), task_provenance=_task_provenance(board, records), records=records,
        notes=notes, citations=_citations(loaded),
    )
    _write_outputs(result)
    return result


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


def degenerate_banner(task: str, provenance: dict) -> str | None:
    """The warning at the top of a task's section when its model is degenerate; None when not, or not known."""
    from effbench.models.reference import degenerate_warning

    block = provenance.get("degenerate")
    if not block:
        return None
    warning = degenerate_warning(task, block["test_accuracy"], block["majority_rate"], block["measured_on"])
    return f"⚠ Warning: {warning}." if warning else None


# ---- citations -------------------------------------------------------------------------------------


def effbench_citation() -> str:
    return (
        "@software{effbench,\n"
        "  title = {effbench: A Benchmark Suite Scoring Explanations of Transformer Text Classifiers},\n"
        "  author = {{The effbench authors}},\n"
        f"  version = {{{effbench.__version__}}},\n"
        f"  year = {{{EFFBENCH_RELEASE_YEAR}}},\n"
        "  note = {Leaderboards, run records and per-example scores of attention-based and gradient-based explanations}\n"
        "}"
    )


def bibtex_key(entry: str) -> str | None:
    match = _BIBTEX_KEY_RE.search(entry)
    return match.group(1) if match else None


def _citations(records: Sequence[BoardRecord]) -> list[str]:
    """effbench's entry, then every explainer, metric and dataset citation, de-duplicated by BibTeX key."""
    candidates = [effbench_citation()]
    for record in records:
        candidates.append(record.record["explainer"].get("citation"))
        candidates.extend(m.get("citation") for m in record.record["metrics"])
        candidates.append(record.record["task"].get("citation"))
    entries: list[str] = []
    seen: set[str] = set()
    for entry in candidates:
        if not entry or not entry.strip():
            continue
        entry = entry.strip()
        identity = bibtex_key(entry) or entry
        if identity not in seen:
            seen.add(identity)
            entries.append(entry)
    return entries


# ---- output ----------------------------------------------------------------------------------------


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
    rows = [[task, p["model"], f"`{p['checkpoint_sha256']}`"] for task, p in result.task_provenance.items()]
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


def tabulate_github(headers: list[str], rows: list[list[str]]) -> str:
    from tabulate import tabulate

    return tabulate(rows, headers=headers, tablefmt="github", disable_numparse=True)


def render_readme(result: BuildResult) -> str:
    table = tabulate_github
    board = result.board
    lines = [f"# effbench leaderboard: {board.name}", "", board.description, "",
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
        lines += [f"Task version {p['version']}, data sha256 `{p['data_hash']}`; model {p['model']}, checkpoint "
                  f"sha256 `{p['checkpoint_sha256']}`, test accuracy {format_number(p['test_accuracy'])}; "
                  f"{p['evaluated']} of {p['test_examples']} test examples evaluated.", "",
                  table(*task_table_rows(result, task)), ""]
    lines += ["## Metrics", ""]
    metric_rows = [[name, ARROWS[info["direction"]], str(info["version"]), info["family"],
                    f"[{info['range'][0]}, {info['range'][1]}]", _show(info["params"])]
                   for name, info in ((n, result.metrics[n]) for n in metric_order(board, result.metrics))]
    lines += [table(["metric", "better", "version", "family", "range", "parameters"], metric_rows), ""]
    lines += ["## Provenance", "", table(["", "value"], provenance_rows(result)), "",
              table(*task_provenance_rows(result)), ""]
    lines += reproducing_section(result)
    if result.notes:
        lines += ["## Notes", ""] + [f"- {note}" for note in result.notes] + [""]
    lines += ["## Citation", "", "Please cite effbench and the methods, metrics and datasets behind these numbers "
              "(also in `citations.bib`):", "", "```bibtex", "\n\n".join(result.citations), "```", ""]
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
    from effbench.report_html import render_html

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


# ---- running a board -------------------------------------------------------------------------------


def run_board(board_dir: str | Path, *, tasks: Sequence[str] | None = None, device: str = "cpu",
              dtype: str = "float32", model: str | None = None, progress: bool = True) -> list[dict]:
    """Run the board's explainers and metrics with its settings, writing records into its records/ folder.

    Metrics that take a perturbation `mode` get the board's `perturbation` (the runner passes it) unless the
    board sets one. `model` (a folder or hub id) replaces the board's model of every task run.
    """
    from effbench.runner import RunConfig, evaluate

    board_dir = Path(board_dir)
    board = load_board(board_dir)
    chosen = list(tasks) if tasks else list(board.tasks)
    unknown = [t for t in chosen if t not in board.tasks]
    if unknown:
        raise EffbenchError(f"task {unknown[0]!r} is not on board {board.name}; its tasks: {', '.join(board.tasks)}")
    records = []
    for task in chosen:
        config = RunConfig(seed=board.seed, limit=board.limit_for(task), batch_size=board.batch_size, device=device,
                           dtype=dtype, output_dir=board_dir / RECORDS_DIR, model_kind=board.model_kind,
                           perturbation=board.perturbation, model=model or board.model_for(task),
                           record_local_paths=False)
        explainers = {board.explainer_specs.get(name, name): params for name, params in board.explainers.items()}
        written = evaluate([task], explainers, board.metrics, config, progress=progress)
        for old_folder, new_folder, reason in retire_superseded(board_dir, task, written):
            if progress:
                print(f"{board.name}: {old_folder.relative_to(board_dir)} is out of date ({reason}): moved to "
                      f"{new_folder.relative_to(board_dir)}", file=sys.stderr)
        records += written
    return records


def retire_superseded(board_dir: Path, task: str, written: Sequence[dict]) -> list[tuple[Path, Path, str]]:
    """Move the task's other records of the explainers just run out of records/ into superseded/.

    A board keeps one record per (task, explainer): after a run, a record made with another model
    checkpoint, other data or other component versions is out of date. It is kept, not deleted.
    Returns (old folder, new folder, what differs) per record moved.
    """
    from effbench.runner import record_folder

    records_dir = board_dir / RECORDS_DIR
    moved = []
    for new in written:
        name = new["explainer"]["name"]
        current = record_folder(records_dir, task, name, new["identity_sha256"])
        pattern = re.compile(re.escape(name) + r"-[0-9a-f]{10}")
        for folder in sorted((records_dir / task).iterdir()):
            if folder == current or not folder.is_dir() or not pattern.fullmatch(folder.name):
                continue
            try:
                reason = _what_changed(read_record(folder / "record.json"), new)
            except EffbenchError:
                reason = "an unfinished or unreadable run"
            target = board_dir / SUPERSEDED_DIR / task / folder.name
            copies = 1
            while target.exists():
                copies += 1
                target = target.with_name(f"{folder.name}.{copies}")
            target.parent.mkdir(parents=True, exist_ok=True)
            folder.rename(target)
            moved.append((folder, target, reason))
    return moved


def _what_changed(old: dict, new: dict) -> str:
    checks = (
        ("task card or data", lambda r: (r["task"]["version"], r["task"]["card_hash"], r["task"]["data_hash"])),
        ("model checkpoint", lambda r: r["model"]["checkpoint_sha256"]),
        ("explainer version or parameters", lambda r: (r["explainer"]["version"], r["explainer"]["params"])),
        ("metric versions or parameters", lambda r: [(m["name"], m["version"], m["params"]) for m in r["metrics"]]),
        ("seed, perturbation or dtype", lambda r: (r["config"]["seed"], r["config"]["perturbation"], r["config"]["dtype"])),
    )
    changed = []
    for what, get in checks:
        try:
            if get(old) != get(new):
                changed.append(what)
        except (KeyError, TypeError):
            changed.append(what)
    return "another " + ", ".join(changed) if changed else "another run identity"
