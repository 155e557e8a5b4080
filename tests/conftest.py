"""Shared fixtures: a tiny randomly initialised BERT and the packaged MiniLM, both offline."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

import pytest

TINY_CORPUS = [
    "the film is a delight from start to finish and the cast is wonderful",
    "a dull and tedious mess that never finds its footing",
    "an honest moving portrait of a family in trouble",
    "the plot is thin but the jokes land and the pace never flags",
    "i wanted to like it but the script is lazy and the acting is worse",
    "beautifully shot , smartly written , and acted with real conviction",
    "nothing here works : not the story , not the music , not the ending",
    "a warm funny film about friendship , loss and starting over again",
] * 4

TINY_TEXTS = [
    "a delight",
    "the plot is thin but the jokes land",
    # longer than 33 tokens, so that the null space of efficient attention is not trivial
    "the film is a delight from start to finish and the cast is wonderful , "
    "but the plot is thin , the script is lazy in places , and the ending never finds its footing , "
    "which is a pity for a warm funny film about friendship , loss and starting over again",
    "nothing here works : not the story , not the music , not the ending , not the cast",
]


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
