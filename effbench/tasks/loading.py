"""card -> examples: read, clean, dedupe, split by a stable hash, cache.

Ids: a source's own id where it has one ("business/001", "spam-2/00042", or the values of a datasets
card's id_field column, as strings); otherwise "row-<index>" (0-based position among the source's
records), or "text-<sha256(text)[:16]>" when the card dedupes. With a given test split the ids are prefixed
"<split>/".

Split: an example is in the test set when int(sha256(f"{split_salt}:{id}")[:8], 16) / 2**32 <
test_fraction. Train and test are both ordered by that same number (ties by id), so taking the
first k of either is a deterministic pseudo-random subset.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from effbench.errors import CardError, DataError, warn, EffbenchError, UnknownNameError
from effbench.paths import cache_dir
from effbench.tasks.card import CARD_SUFFIXES, TaskCard, get_card, task_names
from effbench.tasks.planting import plant_trigger
from effbench.tasks.readers import ARCHIVE_READERS, READER_VERSION, RawRecord, local_dataset_path, read_datasets
from effbench.tasks.sources import check_sha256, load_source_files, local_sha256
from effbench.types import Example

CACHE_FORMAT = 1


@dataclass(frozen=True)
class TaskData:
    """A task's examples, split and ordered, with the hashes a run records."""

    card: TaskCard
    train: tuple[Example, ...]
    test: tuple[Example, ...]
    label_names: tuple[str, ...]
    data_hash: str
    card_hash: str

    @property
    def num_classes(self) -> int:
        return len(self.label_names)

    def limited_train(self) -> tuple[Example, ...]:
        """The training examples the reference-model trainer uses: the first `train_limit` of train."""
        return self.train if self.card.train_limit is None else self.train[: self.card.train_limit]


def split_key(salt: str, example_id: str) -> int:
    """The stable 32-bit number that decides an example's split and its order."""
    return int(hashlib.sha256(f"{salt}:{example_id}".encode("utf-8")).hexdigest()[:8], 16)


def data_hash(train: Iterable[Example], test: Iterable[Example]) -> str:
    """sha256 over one JSON line [split, id, text, label] per example, train then test; an example with
    `evidence` (a planted task's) adds its spans to the line, [split, id, text, label, [[start, end], ...]]."""
    digest = hashlib.sha256()
    for split, examples in (("train", train), ("test", test)):
        for example in examples:
            fields = [split, example.id, example.text, example.label]
            if example.evidence is not None:
                fields.append([list(span) for span in example.evidence])
            line = json.dumps(fields, ensure_ascii=False)
            digest.update(line.encode("utf-8") + b"\n")
    return digest.hexdigest()


def _text_id(text: str) -> str:
    return "text-" + hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def _clean(records: list[RawRecord], card: TaskCard, prefix: str) -> list[Example]:
    """Strip texts, drop empty ones, map labels, dedupe and drop conflicts, give ids."""
    label_index = {raw: index for index, raw in enumerate(card.raw_labels)}
    kept: list[tuple[str | None, str, int]] = []
    empty = 0
    for number, record in enumerate(records):
        text = record.text.strip()
        if not text:
            empty += 1
            continue
        if record.raw_label not in label_index:
            where = record.id or f"record {number}"
            raise DataError(
                f"task {card.name!r}: {where} has label {record.raw_label!r}, which is not in raw_labels "
                f"({', '.join(card.raw_labels)}) of {card.card_file}"
            )
        kept.append((record.id or (None if card.dedupe else f"row-{number}"), text, label_index[record.raw_label]))

    if card.drop_conflicts:
        labels_of: dict[str, set[int]] = {}
        for _, text, label in kept:
            labels_of.setdefault(text, set()).add(label)
        kept = [item for item in kept if len(labels_of[item[1]]) == 1]
    if card.dedupe:
        seen: set[str] = set()
        unique = []
        for item in kept:  # the first occurrence stays
            if item[1] not in seen:
                seen.add(item[1])
                unique.append(item)
        kept = unique

    examples = [Example(prefix + (id_ or _text_id(text)), text, label) for id_, text, label in kept]
    counts = Counter(e.id for e in examples)
    if len(counts) != len(examples):
        duplicate = next(i for i, n in counts.items() if n > 1)
        column = f" in column {card.id_field!r} (the card's id_field); ids must be unique" if card.id_field else ""
        raise DataError(f"task {card.name!r}: id {duplicate!r} occurs more than once{column}")
    if empty:
        warn(f"task {card.name}: {empty} of {len(records)} rows have an empty or whitespace-only text and are left out")
    return examples


def _check_labels_used(card: TaskCard, examples: list[Example]) -> None:
    """Every class of the card occurs in the data: a class without examples (or a single-class dataset)
    means the card does not describe the data."""
    counts = Counter(example.label for example in examples)
    unused = [raw for index, raw in enumerate(card.raw_labels) if counts[index] == 0]
    if unused:
        found = ", ".join(f"{card.raw_labels[label]!r} ({count})" for label, count in sorted(counts.items()))
        raise DataError(f"task {card.name!r}: raw label(s) {', '.join(map(repr, unused))} of {card.card_file} occur in no "
                        f"example; the data has {found}. List in raw_labels only the labels the data has (at least 2)")


def _ordered(examples: list[Example], salt: str) -> tuple[Example, ...]:
    return tuple(sorted(examples, key=lambda e: (split_key(salt, e.id), e.id)))


def _build(card: TaskCard) -> TaskData:
    if card.source == "datasets":
        if card.sha256 is not None:
            local = local_dataset_path(card)
            if local is None:
                raise CardError(
                    f"{card.card_file}: field 'sha256' can only be checked for a local dataset file or folder, "
                    f"and {card.dataset!r} is not one; remove sha256 or point 'dataset' at a local copy"
                )
            check_sha256(card, local_sha256(local), str(local))
        parts = read_datasets(card)
    else:
        files, _ = load_source_files(card)
        parts = {"all": ARCHIVE_READERS[card.reader](files, card)}

    if "all" in parts:
        examples = _clean(parts["all"], card, prefix="")
        threshold = card.test_fraction * 2**32
        train = [e for e in examples if split_key(card.split_salt, e.id) >= threshold]
        test = [e for e in examples if split_key(card.split_salt, e.id) < threshold]
    else:
        train = _clean(parts["train"], card, prefix=f"{card.split}/")
        test = _clean(parts["test"], card, prefix=f"{card.test_split}/")
    if not train or not test:
        raise DataError(f"task {card.name!r}: {len(train)} train and {len(test)} test examples; need both")
    _check_labels_used(card, train + test)
    train_t, test_t = _ordered(train, card.split_salt), _ordered(test, card.split_salt)
    return TaskData(card, train_t, test_t, card.labels, data_hash(train_t, test_t), card.card_hash)


# --- cache of parsed examples (archive sources only: their content is pinned by sha256) ---


def _cache_file(card: TaskCard) -> Path:
    return cache_dir() / "tasks" / f"{card.name}-{card.card_hash[:12]}.jsonl"


def _cache_header(card: TaskCard) -> dict:
    return {"format": CACHE_FORMAT, "reader_version": READER_VERSION, "card_hash": card.card_hash,
            "sha256": card.sha256, "labels": list(card.labels)}  # fmt: skip


def _read_cache(card: TaskCard) -> TaskData | None:
    """The cached examples, or None when missing, stale or damaged."""
    path = _cache_file(card)
    if not path.is_file():
        return None
    try:
        with path.open(encoding="utf-8") as handle:
            header = json.loads(handle.readline())
            expected = {**_cache_header(card), "data_hash": header.get("data_hash")}
            if header != expected:
                return None
            splits: dict[str, list[Example]] = {"train": [], "test": []}
            for line in handle:
                split, id_, text, label = json.loads(line)
                splits[split].append(Example(id_, text, label))
    except (OSError, ValueError, KeyError, TypeError):
        return None
    train, test = tuple(splits["train"]), tuple(splits["test"])
    if data_hash(train, test) != header["data_hash"]:
        return None
    return TaskData(card, train, test, card.labels, header["data_hash"], card.card_hash)


def _write_cache(data: TaskData) -> None:
    path = _cache_file(data.card)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with tmp.open("w", encoding="utf-8") as handle:
            handle.write(json.dumps({**_cache_header(data.card), "data_hash": data.data_hash}) + "\n")
            for split, examples in (("train", data.train), ("test", data.test)):
                for e in examples:
                    handle.write(json.dumps([split, e.id, e.text, e.label], ensure_ascii=False) + "\n")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def load_task(name_or_card: str | Path | TaskCard) -> TaskData:
    """A task's examples: fetched if missing, checked against the pinned sha256, split, cached; with the
    card's trigger planted (the cache holds the examples before planting)."""
    card = name_or_card if isinstance(name_or_card, TaskCard) else get_card(name_or_card)
    cacheable = card.source != "datasets"
    data = _read_cache(card) if cacheable else None
    if data is None:
        data = _build(card)
        if cacheable:
            _write_cache(data)
    return data if card.plant_trigger is None else plant_trigger(data)


def describe_tasks(names: Iterable[str] | None = None) -> list[dict]:
    """One row per task (loading each): task, rows, classes, train, test, max_length, license, status.

    A card that cannot be read or validated, or whose data does not load, is listed too: its status is
    "broken: <the first line of the error>" and its other values are None. The good ones say "ok".
    An unknown task name still raises UnknownNameError (it names the close matches).
    """
    rows = []
    for name in task_names() if names is None else names:
        try:
            data = load_task(name)
        except UnknownNameError:
            raise
        except Exception as error:  # a user's card or reader may fail in any way; the others are still listed
            rows.append(_broken_row(_listed_name(name), error))
            continue
        rows.append({
            "task": data.card.name, "rows": len(data.train) + len(data.test), "classes": data.num_classes,
            "train": len(data.train), "test": len(data.test), "max_length": data.card.max_length,
            "license": data.card.license, "status": "ok",
        })  # fmt: skip
    return rows


def _listed_name(name_or_path: str | Path) -> str:
    """The name a listing shows for a task given by name or by card path: the card file's stem."""
    text = str(name_or_path)
    return Path(text).stem if text.endswith(CARD_SUFFIXES) else text


def _broken_row(name: str, error: Exception) -> dict:
    message = str(error).strip()
    reason = message.splitlines()[0] if message else ""
    if not isinstance(error, EffbenchError):  # not one of effbench's own messages: say what kind of failure
        reason = f"{type(error).__name__}: {reason}" if reason else type(error).__name__
    return {"task": name, "rows": None, "classes": None, "train": None, "test": None, "max_length": None,
            "license": None, "status": f"broken: {reason}"}  # fmt: skip
