import json

import pytest

from effbench.errors import EffbenchError


def test_tiny_reference_model_trains_caches_and_records(toy_env):
    from effbench.models.reference import checkpoint_dir, load_reference_model, training_config
    from effbench.tasks import load_task

    task = load_task("toy")
    adapter, record = load_reference_model(task, "tiny", progress=False)
    assert record["test_accuracy"] >= 0.9  # one sentiment word decides the label
    assert record["data_hash"] == task.data_hash and record["card_hash"] == task.card_hash
    assert record["config"]["seed"] == 0 and record["config"]["epochs"] == 4
    folder = checkpoint_dir(task, training_config(task, "tiny"))
    assert (folder / "model.safetensors").exists()
    written = (folder / "training.json").stat().st_mtime_ns

    again, record_again = load_reference_model(task, "tiny", progress=False)
    assert (folder / "training.json").stat().st_mtime_ns == written  # reused, not retrained
    assert record_again == record
    assert again.model.config._attn_implementation == "effbench_eager"


def test_training_is_deterministic(toy_env, tmp_path, monkeypatch):
    from effbench.models.reference import train_reference_model, training_config
    from effbench.tasks import load_task

    task = load_task("toy")
    config = training_config(task, "tiny", epochs=1)
    hashes = []
    for run in range(2):
        monkeypatch.setenv("EFFBENCH_CACHE", str(tmp_path / f"cache-{run}"))
        folder = train_reference_model(task, config, progress=False)
        hashes.append(json.loads((folder / "training.json").read_text())["checkpoint_sha256"])
    assert hashes[0] == hashes[1]


def test_a_card_that_truncates_on_the_left_gives_a_checkpoint_that_keeps_the_end(toy_folders, tmp_path, monkeypatch):
    import yaml

    from effbench.models.reference import load_reference_model
    from effbench.tasks import load_task

    card = yaml.safe_load((toy_folders["tasks"] / "toy.yaml").read_text())
    card.update(truncation_side="left", dataset=str(toy_folders["tasks"] / "toy.csv"))
    (tmp_path / "toy.yaml").write_text(yaml.safe_dump(card))
    monkeypatch.setenv("EFFBENCH_TASK_DIRS", str(tmp_path))
    monkeypatch.setenv("EFFBENCH_CACHE", str(tmp_path / "cache"))
    task = load_task(tmp_path / "toy.yaml")
    assert task.card.truncation_side == "left"
    adapter, _ = load_reference_model(task, "tiny", progress=False, epochs=1, train_limit=64)

    long_text = " ".join(["the film"] * 40 + ["was", "wonderful"])
    ids = adapter.tokenize([long_text])["input_ids"][0].tolist()
    tokens = adapter.tokenizer.convert_ids_to_tokens(ids)
    assert len(ids) == task.card.max_length
    assert tokens[0] == "[CLS]" and tokens[-3:] == ["was", "wonderful", "[SEP]"]


def test_unknown_model_kind_is_a_clear_error(toy_env):
    from effbench.models.reference import training_config
    from effbench.tasks import load_task

    with pytest.raises(EffbenchError, match="unknown model kind 'huge'; available: minilm, tiny"):
        training_config(load_task("toy"), "huge")


def test_missing_cached_model_without_training_says_how_to_train(toy_env, tmp_path, monkeypatch):
    from effbench.models.reference import load_reference_model
    from effbench.tasks import load_task

    monkeypatch.setenv("EFFBENCH_CACHE", str(tmp_path / "empty"))
    with pytest.raises(EffbenchError, match="effbench train --task toy --model-kind tiny"):
        load_reference_model(load_task("toy"), "tiny", train_if_missing=False)


def test_the_tiny_vocabulary_is_the_same_in_every_process():
    import subprocess
    import sys

    code = ("from effbench.models.reference import train_word_piece_tokenizer; import hashlib, json; "
            "from conftest import TINY_CORPUS; t = train_word_piece_tokenizer(TINY_CORPUS * 3, 300); "
            "print(hashlib.sha256(json.dumps(sorted(t.get_vocab().items())).encode()).hexdigest())")
    digests = {subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                              cwd=__import__("pathlib").Path(__file__).parent).stdout for _ in range(3)}
    assert len(digests) == 1


def test_the_tiny_vocabulary_covers_every_character_seen():
    from effbench.models.reference import train_word_piece_tokenizer

    tokenizer = train_word_piece_tokenizer(["the cat sat", "a dog ran"], vocab_size=100, min_frequency=1)
    assert tokenizer.unk_token_id not in tokenizer("tac god")["input_ids"]  # unseen words split into characters
    assert tokenizer.tokenize("cat") == ["cat"]
