"""Shared fixtures: a tiny randomly initialised BERT and the packaged MiniLM, both offline."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

import pytest
from tiny_architectures import REVIEW_SENTENCES
from toy_task import write_toy_task


def pytest_configure(config):
    import torch

    # the test models are small: one thread avoids oversubscribing a loaded 2-core machine
    torch.set_num_threads(1)

TINY_CORPUS = REVIEW_SENTENCES * 4

TINY_TEXTS = [
    "a delight",
    "the plot is thin but the jokes land",
    # longer than 33 tokens, so that the null space of efficient attention is not trivial
    "the film is a delight from start to finish and the cast is wonderful , "
    "but the plot is thin , the script is lazy in places , and the ending never finds its footing , "
    "which is a pity for a warm funny film about friendship , loss and starting over again",
    "nothing here works : not the story , not the music , not the ending , not the cast",
]


@pytest.fixture(autouse=True)
def fresh_forward_cache(tmp_path_factory, monkeypatch):
    """Each test's runs start from an empty forward cache of their own, not the user's cache."""
    monkeypatch.setenv("EFFBENCH_FORWARD_CACHE", str(tmp_path_factory.mktemp("forward-cache") / "probabilities.sqlite"))


@pytest.fixture(scope="session")
def real_tasks_cache(tmp_path_factory):
    """One cache for the tests that use the shipped tasks' data (downloaded once) and their tiny models."""
    return tmp_path_factory.mktemp("real-tasks-cache")


@pytest.fixture(scope="session")
def corpus_sentences() -> list[str]:
    """Eight distinct review sentences (the tiny vocabulary's corpus)."""
    return TINY_CORPUS[:8]


@pytest.fixture(scope="session")
def tiny_adapter():
    """A 2-layer, 4-head BERT (hidden 128, d_h 32) with random weights and a WordPiece vocabulary."""
    import torch
    import transformers

    from effbench.models.adapter import ClassifierAdapter
    from effbench.models.reference import train_word_piece_tokenizer

    torch.manual_seed(0)
    tokenizer = train_word_piece_tokenizer(TINY_CORPUS, vocab_size=300, min_frequency=1)
    assert tokenizer.unk_token_id not in tokenizer(TINY_TEXTS[0])["input_ids"]
    config = transformers.BertConfig(
        vocab_size=tokenizer.vocab_size, hidden_size=128, num_hidden_layers=2, num_attention_heads=4,
        intermediate_size=256, max_position_embeddings=256, num_labels=2,
    )
    config._attn_implementation = "eager"
    model = transformers.BertForSequenceClassification(config)
    return ClassifierAdapter(model, tokenizer, max_length=128, name="tiny-random")


@pytest.fixture(scope="session")
def minilm_adapter():
    """The packaged all-MiniLM-L6-v2 with a seeded, untrained 2-class head."""
    import torch

    from effbench.models.adapter import ClassifierAdapter
    from effbench.models.reference import minilm_path

    torch.manual_seed(0)
    return ClassifierAdapter.load(minilm_path(), max_length=128)


@pytest.fixture()
def tiny_examples():
    from effbench.types import Example

    return [Example(id=f"ex-{i}", text=text, label=i % 2) for i, text in enumerate(TINY_TEXTS)]


@pytest.fixture(scope="session")
def toy_folders(tmp_path_factory):
    tasks = tmp_path_factory.mktemp("toy-tasks")
    write_toy_task(tasks)
    return {"tasks": tasks, "cache": tmp_path_factory.mktemp("toy-cache")}


@pytest.fixture()
def toy_env(toy_folders, monkeypatch):
    """The synthetic `toy` task registered and a private cache shared by the session (the tiny model trains once)."""
    monkeypatch.setenv("EFFBENCH_TASK_DIRS", str(toy_folders["tasks"]))
    monkeypatch.setenv("EFFBENCH_CACHE", str(toy_folders["cache"]))
    return toy_folders
