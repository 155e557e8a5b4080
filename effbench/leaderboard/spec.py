"""The board spec: a board folder's layout and its validated `board.yaml` (BoardSpec, load_board)."""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


from effbench.errors import CardError
from effbench.untrusted import excerpt, load_yaml_file

BOARD_FILE = "board.yaml"
RECORDS_DIR = "records"
SUPERSEDED_DIR = "superseded"
MODEL_KINDS = ("minilm", "tiny")
PERTURBATION_MODES = ("remove", "mask")

_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9._-]*$")
_CITATION_KEY_RE = re.compile(r"^[^\s,{}()\"#%'=\\]+$")  # what BibTeX takes as an entry's key


@dataclass(frozen=True)
class PublishedRanking:
    """One entry of the board's `published_rankings`: a paper's ranking of some of the board's explainers on one
    metric, best tier first; the members of a tier are claimed to be about equal."""

    source: str  # the paper's citation key
    claim: str  # what the paper says, in a sentence
    metric: str
    ranking: tuple[tuple[str, ...], ...]

    @property
    def explainers(self) -> tuple[str, ...]:
        return tuple(name for tier in self.ranking for name in tier)


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
    # papers' rankings of the board's explainers, checked against the board's numbers (effbench.leaderboard.published)
    published_rankings: tuple[PublishedRanking, ...] = ()

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
                 "batch_size", "seed", "model_kind", "model", "perturbation", "published_rankings")
_BOARD_REQUIRED = ("name", "description", "tasks", "explainers", "metrics", "main_metric", "limit")


def load_board(board_dir: str | Path) -> BoardSpec:
    """Read and validate `<board_dir>/board.yaml`; a bad field raises CardError naming it and what is allowed."""
    from effbench.explainers import explainers as explainer_registry
    from effbench.metrics import metrics as metric_registry
    from effbench.tasks.card import task_names

    folder = Path(board_dir)
    board_file = folder / BOARD_FILE
    data, _ = load_yaml_file(board_file, "board spec")
    if not isinstance(data, dict):
        raise CardError(f"{board_file}: a board spec is a YAML mapping of field: value")

    def fail(key: str, allowed: str) -> CardError:
        shown = f" (got {excerpt(data[key])})" if key in data else ""
        return CardError(f"{board_file}: field {key!r}{shown} must be {allowed}")

    for key in data:
        if key not in _BOARD_FIELDS:
            raise _unknown_key(str(board_file), key, _BOARD_FIELDS, "field")
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
            raise fail("explainers", f"distinct explainers; {excerpt(spec)} is explainer {excerpt(explainer_name)} again")
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
    published = _published_rankings(data["published_rankings"], board_file, explainers, metrics) \
        if "published_rankings" in data else ()

    return BoardSpec(name=name, description=description.strip(), tasks=tuple(tasks), explainers=explainers,
                     metrics=metrics, main_metric=main_metric, limits=limits, batch_size=batch_size, seed=seed,
                     model_kind=model_kind, perturbation=perturbation, folder=folder, explainer_specs=explainer_specs,
                     models=models, published_rankings=published)


def _unknown_key(where: str, key: Any, allowed: Sequence[str], noun: str) -> CardError:
    """"unknown <noun> KEY. Did you mean ...? Allowed <noun>s: ..." for a mapping's key outside `allowed`."""
    close = difflib.get_close_matches(str(key), allowed, n=1)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    return CardError(f"{where}: unknown {noun} {excerpt(key)}.{hint} Allowed {noun}s: {', '.join(allowed)}")


def _did_you_mean(name: str, known: Sequence[str]) -> str:
    """" (did you mean 'a' or 'b'?)" for the known names closest to `name`, or "" when none is close."""
    close = difflib.get_close_matches(name, list(known), n=3)
    return f" (did you mean {' or '.join(repr(c) for c in close)}?)" if close else ""


def _known_names_hint(kind: str, name: str, known: Sequence[str]) -> str:
    return f"known {kind} names; {excerpt(name)} is not one{_did_you_mean(name, known)}. Available: {', '.join(known)}"


_PUBLISHED_KEYS = ("source", "claim", "metric", "ranking")
_PUBLISHED_ALLOWED = ("a non-empty list of entries, each a mapping with source (a citation key), claim (a sentence), "
                      "metric (one of the board's metrics) and ranking (a list of tiers, best first, each a list of "
                      "the board's explainers)")
_RANKING_ALLOWED = ("a list of at least two tiers, best first, each a non-empty list of explainer names, e.g. "
                    "[[alti], [saliency, grad_x_input], [attention_rollout]]")


def _published_rankings(value: Any, board_file: Path, explainers: dict[str, dict],
                        metrics: dict[str, dict]) -> tuple[PublishedRanking, ...]:
    """The board's `published_rankings`, each entry checked against the board's metrics and explainers."""
    if not isinstance(value, list) or not value:
        raise CardError(f"{board_file}: field 'published_rankings' (got {excerpt(value)}) must be {_PUBLISHED_ALLOWED}")
    entries = []
    for number, entry in enumerate(value, start=1):
        where = f"{board_file}: field 'published_rankings', entry {number}"
        if not isinstance(entry, dict):
            raise CardError(f"{where} (got {excerpt(entry)}) must be a mapping with {', '.join(_PUBLISHED_KEYS)}")
        if isinstance(entry.get("source"), str) and _CITATION_KEY_RE.match(entry["source"]):
            where += f" ({excerpt(entry['source'])})"

        def fail(key: str, allowed: str) -> CardError:
            return CardError(f"{where}: {key} (got {excerpt(entry[key])}) must be {allowed}")

        for key in entry:
            if key not in _PUBLISHED_KEYS:
                raise _unknown_key(where, key, _PUBLISHED_KEYS, "key")
        for key in _PUBLISHED_KEYS:
            if key not in entry:
                raise CardError(f"{where}: missing key {key!r} (an entry has {', '.join(_PUBLISHED_KEYS)})")
        source, claim, metric, ranking = (entry[key] for key in _PUBLISHED_KEYS)
        if not isinstance(source, str) or not _CITATION_KEY_RE.match(source):
            raise fail("source", "a citation key: a non-empty string without spaces, commas, braces or quotes, e.g. "
                                 "ferrando2022measuring")
        if not isinstance(claim, str) or not claim.strip():
            raise fail("claim", "a non-empty string: what the paper says, in a sentence")
        if metric not in metrics:
            raise fail("metric", f"one of the board's metrics: {', '.join(metrics)}")
        if (not isinstance(ranking, list) or len(ranking) < 2
                or not all(isinstance(tier, list) and tier and all(isinstance(n, str) for n in tier) for tier in ranking)):
            raise fail("ranking", _RANKING_ALLOWED)
        seen: set[str] = set()
        for name in (name for tier in ranking for name in tier):
            if name not in explainers:
                raise fail("ranking", f"tiers of the board's explainers; {excerpt(name)} is not one"
                                      f"{_did_you_mean(name, explainers)}. The board's explainers: {', '.join(explainers)}")
            if name in seen:
                raise fail("ranking", f"a ranking that names each explainer once; {excerpt(name)} is named twice")
            seen.add(name)
        entries.append(PublishedRanking(source=source, claim=" ".join(claim.split()), metric=metric,
                                        ranking=tuple(tuple(tier) for tier in ranking)))
    return tuple(entries)


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
