"""The synthetic toy task of the tests: its words and its writer (a module of its own, so that test modules can
import it: `conftest` names two modules here)."""

from __future__ import annotations

TOY_POSITIVE = ["good", "great", "wonderful", "superb", "delightful", "moving"]
TOY_NEGATIVE = ["bad", "awful", "dull", "tedious", "lazy", "boring"]
TOY_FILLER = ["the", "film", "plot", "cast", "was", "really", "quite", "and", "story", "ending", "music", "a"]


def write_toy_task(folder, rows: int = 1600) -> None:
    """A two-class CSV task whose label is set by one sentiment word among filler words, and its card."""
    import csv
    import random

    import yaml

    generator = random.Random(0)
    with open(folder / "toy.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["text", "label"])
        for _ in range(rows):
            label = generator.randrange(2)
            words = generator.choices(TOY_FILLER, k=generator.randrange(4, 14))
            words.insert(generator.randrange(len(words) + 1), generator.choice(TOY_POSITIVE if label else TOY_NEGATIVE))
            writer.writerow([" ".join(words), "pos" if label else "neg"])
    card = {
        "name": "toy", "version": 1, "description": "Synthetic sentiment: one sentiment word among filler.",
        "license": "CC0-1.0", "citation": "@misc{toy, title={A synthetic test task}}", "source": "datasets",
        "dataset": "toy.csv", "text_field": "text", "label_field": "label", "reader": "datasets",
        "raw_labels": ["neg", "pos"], "labels": ["negative", "positive"], "max_length": 32,
        "test_fraction": 0.25, "split_salt": "toy", "train_epochs": 1, "learning_rate": 5.0e-5,
        "train_batch_size": 16,
    }
    (folder / "toy.yaml").write_text(yaml.safe_dump(card, sort_keys=False))
