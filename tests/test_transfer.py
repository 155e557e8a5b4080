"""Reference models that travel: export, import into an empty cache, pull from a hub layout; verified on load."""

import json
import shutil
import tarfile

import pytest
import yaml

from effbench.cli import main
from effbench.errors import EffbenchError


@pytest.fixture()
def trained(toy_env):
    """The toy task's tiny reference model, trained (once per session) into the shared toy cache."""
    from effbench.models.reference import load_reference_model
    from effbench.tasks import load_task

    task = load_task("toy")
    adapter, record = load_reference_model(task, "tiny", progress=False)
    return task, adapter, record


def rewrite_export(export, target, name, change):
    """Copy the tar `export` to `target` with member `name`'s bytes replaced by change(bytes)."""
    import io

    with tarfile.open(export) as source, tarfile.open(target, "w") as copy:
        for member in source.getmembers():
            data = source.extractfile(member).read()
            if member.name == name:
                data = change(data)
                member.size = len(data)
            copy.addfile(member, io.BytesIO(data))


def write_board(folder):
    folder.mkdir()
    (folder / "board.yaml").write_text(yaml.safe_dump({
        "name": folder.name, "description": "Two explainers on the toy task.", "tasks": ["toy"],
        "explainers": ["random", "raw_attention"], "metrics": ["necessity", "sparsity"], "main_metric": "necessity",
        "limit": 8, "batch_size": 8, "model_kind": "tiny",
    }))
    return folder


def test_export_then_import_into_an_empty_cache_reuses_every_board_record(trained, tmp_path, monkeypatch, capsys):
    from effbench.leaderboard import run_board

    task, _, record = trained
    board = write_board(tmp_path / "board")
    run_board(board, progress=False)
    rows_before = {path: path.read_text() for path in board.rglob("per_example.jsonl")}
    assert len(rows_before) == 2

    export = tmp_path / "toy-tiny.tar"
    assert main(["models", "export", "toy", "--model-kind", "tiny", "--to", str(export)]) == 0
    assert record["checkpoint_sha256"] in capsys.readouterr().out
    with tarfile.open(export) as archive:
        names = archive.getnames()
        license_text = archive.extractfile("LICENSE-DATA.txt").read().decode()
    assert "checkpoint/model.safetensors" in names and "checkpoint/training.json" in names
    assert "CC0-1.0" in license_text  # the toy card's license travels with its model

    monkeypatch.setenv("EFFBENCH_CACHE", str(tmp_path / "empty-cache"))  # another machine: nothing cached
    assert main(["models", "import", str(export)]) == 0
    assert f"checkpoint sha256 {record['checkpoint_sha256']}" in capsys.readouterr().out

    import effbench.models.reference as reference

    def no_training(*args, **kwargs):
        raise AssertionError("the imported model must be used, not retrained")

    monkeypatch.setattr(reference, "train_reference_model", no_training)
    written = run_board(board, progress=False)
    assert {r["model"]["checkpoint_sha256"] for r in written} == {record["checkpoint_sha256"]}
    assert {path: path.read_text() for path in board.rglob("per_example.jsonl")} == rows_before  # nothing recomputed
    assert not (board / "superseded").exists()


def test_export_into_a_folder_names_the_file_and_its_manifest_reads_back(trained, tmp_path, capsys):
    _, _, record = trained
    assert main(["models", "export", "toy", "--model-kind", "tiny", "--to", f"{tmp_path}/new/"]) == 0
    [export] = (tmp_path / "new").iterdir()  # a path ending in a slash is a folder, made where missing
    assert export.name.startswith("effbench-toy-tiny-") and export.suffix == ".tar"
    assert str(export) in capsys.readouterr().out
    with tarfile.open(export) as archive:
        manifest = json.load(archive.extractfile("effbench-checkpoint.json"))
    assert (manifest["task"], manifest["checkpoint_sha256"]) == ("toy", record["checkpoint_sha256"])


def test_import_refuses_a_tampered_export(trained, tmp_path, monkeypatch, capsys):
    from effbench.models.transfer import export_checkpoint

    task, _, _ = trained
    export, _ = export_checkpoint(task, "tiny", tmp_path / "good.tar")
    tampered = tmp_path / "tampered.tar"
    rewrite_export(export, tampered, "checkpoint/model.safetensors", lambda data: data[:-1] + bytes([data[-1] ^ 1]))
    monkeypatch.setenv("EFFBENCH_CACHE", str(tmp_path / "cache"))
    assert main(["models", "import", str(tampered)]) == 2
    err = capsys.readouterr().err
    assert "checkpoint/model.safetensors has sha256" in err and "damaged or was changed" in err
    assert not list((tmp_path / "cache" / "models").glob("toy/*"))  # nothing half-imported


def test_import_refuses_entries_outside_its_manifest(trained, tmp_path, capsys):
    from effbench.models.transfer import export_checkpoint

    task, _, _ = trained
    export, _ = export_checkpoint(task, "tiny", tmp_path / "good.tar")
    shutil.copy(export, tmp_path / "extra.tar")
    with tarfile.open(tmp_path / "extra.tar", "a") as archive:
        archive.add(export, arcname="../../escape.txt")
    assert main(["models", "import", str(tmp_path / "extra.tar")]) == 2
    assert "../../escape.txt are not in its manifest" in capsys.readouterr().err
    assert not (tmp_path.parent / "escape.txt").exists()


def test_import_refuses_a_manifest_without_a_checkpoint_digest(trained, tmp_path, capsys):
    from effbench.models.transfer import export_checkpoint

    task, _, _ = trained
    export, _ = export_checkpoint(task, "tiny", tmp_path / "good.tar")
    broken = tmp_path / "broken.tar"
    rewrite_export(export, broken, "effbench-checkpoint.json",
                   lambda data: json.dumps({**json.loads(data), "checkpoint_sha256": "../elsewhere"}).encode())
    assert main(["models", "import", str(broken)]) == 2
    assert "'checkpoint_sha256' must be a sha256 hex digest" in capsys.readouterr().err


def test_a_changed_checkpoint_is_refused_on_load(trained, tmp_path, monkeypatch):
    from effbench.models.reference import checkpoint_dir, load_reference_model, training_config
    from effbench.models.transfer import export_checkpoint, import_checkpoint

    task, _, _ = trained
    export, _ = export_checkpoint(task, "tiny", tmp_path / "model.tar")
    monkeypatch.setenv("EFFBENCH_CACHE", str(tmp_path / "cache"))
    import_checkpoint(export)
    weights = checkpoint_dir(task, training_config(task, "tiny")) / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 1
    weights.write_bytes(bytes(data))
    with pytest.raises(EffbenchError, match="is not the .* its training.json records"):
        load_reference_model(task, "tiny", progress=False)


def test_pull_without_a_hub_repository_points_to_import(toy_env, capsys):
    assert main(["models", "pull", "toy", "--model-kind", "tiny"]) == 2
    err = capsys.readouterr().err
    assert "names no Hub repository" in err and "effbench models import FILE" in err


def test_pull_from_a_hub_layout_verifies_and_caches(trained, tmp_path, monkeypatch):
    """The hub code path, offline: the card names a repository and a pinned commit, found in a local hub cache."""
    from effbench.models.reference import checkpoint_dir, load_reference_model, training_config
    from effbench.models.transfer import pull_checkpoint
    from effbench.tasks import load_task

    task, adapter, record = trained
    commit = "89abcdef0123456789abcdef0123456789abcdef"
    repo = tmp_path / "hub" / "models--effbench--toy-reference"
    shutil.copytree(checkpoint_dir(task, training_config(task, "tiny")), repo / "snapshots" / commit / "tiny")
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)

    tasks = tmp_path / "tasks"  # the same card with a hub repository: another card hash, so copy the data too
    shutil.copytree(task.card.card_dir, tasks)
    card = yaml.safe_load((tasks / "toy.yaml").read_text())
    (tasks / "toy.yaml").write_text(yaml.safe_dump({**card, "hub_repository": "effbench/toy-reference",
                                                     "hub_revision": commit}))
    monkeypatch.setenv("EFFBENCH_TASK_DIRS", str(tasks))
    monkeypatch.setenv("EFFBENCH_CACHE", str(tmp_path / "cache"))
    hub_task = load_task("toy")
    # the record was trained on the card without the hub fields: pulling checks the card and data hashes
    with pytest.raises(EffbenchError, match="trained on another version of task toy's card or data"):
        pull_checkpoint(hub_task, "tiny", hub_cache=tmp_path / "hub")

    training = json.loads((repo / "snapshots" / commit / "tiny" / "training.json").read_text())
    training["card_hash"] = hub_task.card_hash
    (repo / "snapshots" / commit / "tiny" / "training.json").write_text(json.dumps(training))
    folder, pulled = pull_checkpoint(hub_task, "tiny", hub_cache=tmp_path / "hub")
    assert pulled["checkpoint_sha256"] == record["checkpoint_sha256"]
    assert folder == checkpoint_dir(hub_task, training_config(hub_task, "tiny"))
    assert not any(path.is_symlink() for path in folder.iterdir())
    loaded, _ = load_reference_model(hub_task, "tiny", train_if_missing=False, progress=False)
    assert loaded.provenance.checkpoint_sha256 == record["checkpoint_sha256"]


def test_a_card_names_both_hub_fields_or_neither(toy_env, tmp_path):
    from effbench.tasks.card import parse_card

    card = yaml.safe_load((toy_env["tasks"] / "toy.yaml").read_text())
    path = tmp_path / "toy.yaml"
    path.write_text(yaml.safe_dump({**card, "hub_repository": "effbench/toy"}))
    with pytest.raises(EffbenchError, match="give both 'hub_repository' and 'hub_revision'"):
        parse_card(path)
    path.write_text(yaml.safe_dump({**card, "hub_repository": "effbench/toy", "hub_revision": "main"}))
    with pytest.raises(EffbenchError, match="a pinned commit: 40 lower-case hex digits"):
        parse_card(path)


def test_models_list_shows_the_cached_checkpoints(trained, capsys):
    import json

    _, _, record = trained
    assert main(["models", "list", "--format", "json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert {"task": "toy", "kind": "tiny", "checkpoint_sha256": record["checkpoint_sha256"]}.items() <= next(
        row for row in rows if row["task"] == "toy").items()
