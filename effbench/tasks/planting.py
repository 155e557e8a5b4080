"""A task with a known answer: a trigger word planted in a card's data.

A card's `plant_trigger: {token: zebra, share: 0.2, label: positive, seed: 0}` transforms the examples of
any card, train and test alike. Of the examples whose label is not `label`, a `share` (picked by a seeded
hash of the example id, so the same on every machine) get `token` inserted as a word at a seeded random
word position, and their label becomes `label`. The rest of such a text speaks for another class, so the
trigger is the one reason for its label: the evidence an explainer should point at. Each planted example
carries `evidence`, the character span of the word; every other example of the task carries `()`, known
to hold none (`None` is left for tasks without the option).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from effbench.errors import DataError, EffbenchError
from effbench.types import Example

if TYPE_CHECKING:
    from effbench.tasks.loading import TaskData

PLANT_TRIGGER_KEYS = ("token", "share", "label", "seed")
_TOKEN_RE = re.compile(r"^[A-Za-z0-9]+$")
# the learnability check: the reference model must have learned the shortcut
MIN_TRIGGER_ACCURACY = 0.95  # on the triggered test examples, predicting the trigger's class
MIN_TRIGGER_FLIP_RATE = 0.80  # of those predictions, the share that changes when the trigger is removed


@dataclass(frozen=True)
class PlantTrigger:
    token: str
    share: float
    label: str
    seed: int = 0


def parse_plant_trigger(value: Any) -> PlantTrigger:
    """The card's `plant_trigger` mapping, validated (the label is checked against the card's labels later);
    raises ValueError("what is allowed")."""
    allowed = "a mapping {token: <word>, share: <fraction>, label: <class name>, seed: <integer, default 0>}"
    if not isinstance(value, dict):
        raise ValueError(allowed)
    unknown = [str(key) for key in value if key not in PLANT_TRIGGER_KEYS]
    missing = [key for key in ("token", "share", "label") if key not in value]
    if unknown or missing:
        problem = f"unknown key {unknown[0]!r}" if unknown else f"no {missing[0]!r}"
        raise ValueError(f"{allowed}; found {problem}")
    token, share, label, seed = value["token"], value["share"], value["label"], value.get("seed", 0)
    if not isinstance(token, str) or not _TOKEN_RE.match(token):
        raise ValueError(f"{allowed}; token must be one word of ASCII letters and digits, got {token!r}")
    if isinstance(share, bool) or not isinstance(share, (int, float)) or not 0 < share < 1:
        raise ValueError(f"{allowed}; share must be a number strictly between 0 and 1, got {share!r}")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"{allowed}; seed must be an integer >= 0, got {seed!r}")
    if isinstance(label, bool) or not isinstance(label, (str, int)):
        raise ValueError(f"{allowed}; label must be one of the card's labels, got {label!r}")
    return PlantTrigger(token=token, share=float(share), label=str(label), seed=seed)


def _unit(trigger: PlantTrigger, purpose: str, example_id: str) -> float:
    """A number in [0, 1) from a stable hash of (seed, purpose, id): not Python's `hash`, not global state."""
    digest = hashlib.sha256(f"plant-trigger:{trigger.seed}:{purpose}:{example_id}".encode("utf-8")).hexdigest()
    return int(digest[:16], 16) / 2**64


def _occurs(token: str, text: str) -> bool:
    return re.search(rf"(?<![A-Za-z0-9]){re.escape(token)}(?![A-Za-z0-9])", text, flags=re.IGNORECASE) is not None


def plant_in_example(example: Example, trigger: PlantTrigger, label: int) -> Example:
    """The example with the trigger inserted before its word at a seeded random slot (or after its last word),
    its label set to `label` and `evidence` the word's character span."""
    words = list(re.finditer(r"\S+", example.text))
    slot = min(int(_unit(trigger, "position", example.id) * (len(words) + 1)), len(words))
    if slot < len(words):
        start = words[slot].start()
        text = example.text[:start] + trigger.token + " " + example.text[start:]
    else:
        start = len(example.text) + 1
        text = example.text + " " + trigger.token
    return replace(example, text=text, label=label, evidence=((start, start + len(trigger.token)),))


def is_chosen(example: Example, trigger: PlantTrigger, label: int) -> bool:
    """Whether the example gets the trigger: its label is another class and its hash falls under the share."""
    return example.label != label and _unit(trigger, "select", example.id) < trigger.share


def plant_trigger(task: TaskData) -> TaskData:
    """The task with the card's trigger planted in train and test, and the data hash of the result."""
    from effbench.tasks.loading import TaskData, data_hash

    card, trigger = task.card, task.card.plant_trigger
    assert trigger is not None
    label = card.labels.index(trigger.label)
    examples = task.train + task.test
    natural = [example for example in examples if _occurs(trigger.token, example.text)]
    if natural:
        raise DataError(f"task {card.name!r}: the trigger word {trigger.token!r} of plant_trigger already occurs in "
                        f"{len(natural)} texts (e.g. {natural[0].id!r}); choose a word the data does not contain")

    def planted(split: tuple[Example, ...]) -> tuple[Example, ...]:
        return tuple(plant_in_example(e, trigger, label) if is_chosen(e, trigger, label) else replace(e, evidence=())
                     for e in split)

    train, test = planted(task.train), planted(task.test)
    for name, split in (("train", train), ("test", test)):
        if not any(example.evidence for example in split):
            raise DataError(f"task {card.name!r}: plant_trigger (share {trigger.share}) plants the trigger in no "
                            f"{name} example; raise share")
    return TaskData(card, train, test, task.label_names, data_hash(train, test), task.card_hash)


def remove_trigger(example: Example) -> str:
    """The planted example's text as it was before planting (the exact inverse of `plant_in_example`)."""
    ((start, end),) = example.evidence
    if example.text[end:end + 1] == " ":
        return example.text[:start] + example.text[end + 1:]
    return example.text[:start - 1] + example.text[end:]


def check_trigger_token(task: TaskData, tokenizer) -> None:
    """A one-line error unless the trigger is one token of `tokenizer`, in context, in every planted example."""
    trigger = task.card.plant_trigger
    if trigger is None:
        return
    if not getattr(tokenizer, "is_fast", False):
        raise EffbenchError(f"task {task.card.name!r} plants a trigger, whose evidence maps to tokens through a fast "
                            "tokenizer's offsets; this model's tokenizer is not a fast one")
    planted = [example for example in task.train + task.test if example.evidence]
    encoded = tokenizer([example.text for example in planted], add_special_tokens=False, return_offsets_mapping=True)
    for example, ids, offsets in zip(planted, encoded["input_ids"], encoded["offset_mapping"]):
        ((start, end),) = example.evidence
        covering = [ids[i] for i, (token_start, token_end) in enumerate(offsets) if token_start < end and token_end > start]
        if len(covering) != 1 or covering[0] == tokenizer.unk_token_id:
            pieces = " ".join(tokenizer.convert_ids_to_tokens(covering))
            raise EffbenchError(f"task {task.card.name!r}: the trigger word {trigger.token!r} of plant_trigger is not "
                                f"one known token of this model's tokenizer (it becomes: {pieces}); choose a word its "
                                "vocabulary holds whole (tokenizer.tokenize(word) gives that one word)")


def trigger_learnability(task: TaskData, predict: Callable[[Sequence[str]], Sequence[int]]) -> dict:
    """What training.json records of the shortcut: on the triggered test examples, the accuracy (the trigger's
    class predicted) and the share of predictions that change when the trigger is removed; `learned` when
    both reach MIN_TRIGGER_ACCURACY and MIN_TRIGGER_FLIP_RATE. `predict` maps texts to predicted classes."""
    trigger = task.card.plant_trigger
    assert trigger is not None
    label = task.card.labels.index(trigger.label)
    triggered = [example for example in task.test if example.evidence]
    with_trigger = list(predict([example.text for example in triggered]))
    without_trigger = list(predict([remove_trigger(example) for example in triggered]))
    accuracy = sum(prediction == label for prediction in with_trigger) / len(triggered)
    flip_rate = sum(a != b for a, b in zip(with_trigger, without_trigger)) / len(triggered)
    return {
        "token": trigger.token, "label": trigger.label, "triggered_test_examples": len(triggered),
        "accuracy_with_trigger": accuracy, "flip_rate_without_trigger": flip_rate,
        "min_accuracy": MIN_TRIGGER_ACCURACY, "min_flip_rate": MIN_TRIGGER_FLIP_RATE,
        "learned": accuracy >= MIN_TRIGGER_ACCURACY and flip_rate >= MIN_TRIGGER_FLIP_RATE,
    }


def trigger_warning(task_name: str, training: dict) -> str | None:
    """The one line that says a task's model did not learn its planted trigger, or None (learned, or no trigger)."""
    check = training.get("trigger")
    if not check or check["learned"]:
        return None
    return (f"the model of task {task_name} did not learn its planted trigger {check['token']!r}: on "
            f"{check['triggered_test_examples']} triggered test examples, accuracy {check['accuracy_with_trigger']:.3f} "
            f"(needs >= {check['min_accuracy']}) and {check['flip_rate_without_trigger']:.3f} of predictions change "
            f"without it (needs >= {check['min_flip_rate']}); the evidence the oracle marks is not what the model uses")
