"""README's "Your own data as a task": its card and CSV sample, written to a folder, load as a task."""

from __future__ import annotations

import csv
import re

import pytest
import yaml

from readme import README, readme_recipe

from effbench.tasks import get_card, load_task

CARD_TEXT = readme_recipe("own-csv-card")
CSV_TEXT = readme_recipe("own-csv-data")


@pytest.fixture
def recipe_folder(tmp_path, monkeypatch):
    """The README's card and CSV in a folder, with generated rows in the sample's format appended."""
    monkeypatch.setenv("EFFBENCH_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("EFFBENCH_TASK_DIRS", raising=False)
    card = yaml.safe_load(CARD_TEXT)
    folder = tmp_path / "my-data"
    folder.mkdir()
    (folder / f"{card['name']}.yaml").write_text(CARD_TEXT, encoding="utf-8")
    raw_labels = card["raw_labels"]
    with (folder / card["dataset"]).open("w", newline="", encoding="utf-8") as handle:
        handle.write(CSV_TEXT)
        writer = csv.writer(handle)
        for number in range(100, 160):
            writer.writerow([f"r{number}", f"generated review {number}, with a comma", raw_labels[number % 2]])
    return folder


def test_the_readme_names_the_card_fields_and_how_to_find_the_card():
    card = yaml.safe_load(CARD_TEXT)
    assert card["source"] == "datasets" and card["reader"] == "datasets" and card["id_field"] == "id"
    section = README.split("## Your own data as a task", 1)[1].split("\n## ", 1)[0]
    explained = section.split("What the fields mean:", 1)[1]
    for key in card:  # each as `key` or `key: value` in the list of what the fields mean
        assert re.search(rf"`{key}[`:]", explained), f"README's card recipe does not say what {key!r} means"
    assert f"EFFBENCH_TASK_DIRS=/path/to/folder effbench train --task {card['name']}" in README
    assert f"effbench run --task ./{card['name']}.yaml" in README


def test_the_readme_card_loads_with_ids_from_the_id_column(recipe_folder, monkeypatch):
    card = yaml.safe_load(CARD_TEXT)
    card_file = recipe_folder / f"{card['name']}.yaml"
    with (recipe_folder / card["dataset"]).open(newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    assert [row["id"] for row in rows[:3]] == ["r001", "r002", "r003"]  # the README's sample rows

    data = load_task(card_file)
    examples = {example.id: example for example in data.train + data.test}
    assert set(examples) == {row["id"] for row in rows}
    assert data.label_names == tuple(card["labels"])
    assert data.train and data.test
    first = rows[0]
    assert examples[first["id"]].text == first["text"]
    assert data.label_names[examples[first["id"]].label] == card["labels"][card["raw_labels"].index(first["label"])]

    monkeypatch.setenv("EFFBENCH_TASK_DIRS", str(recipe_folder))
    assert get_card(card["name"]).card_file == card_file.resolve()
    assert load_task(card["name"]).data_hash == data.data_hash
