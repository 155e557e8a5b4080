"""Reference models between machines: export to one file, import from it, pull from the Hugging Face Hub.

Training is deterministic on one machine, but another CPU gives other bits (same accuracy), and a
board's records are keyed on the checkpoint's sha256. Moving the checkpoint itself is how a second
machine reuses a board's records.

An export is an uncompressed tar file:

    effbench-checkpoint.json   manifest: task, model kind, cache folder name, sha256 of every file
    LICENSE-DATA.txt           the license of the data the model was trained on (the task card's)
    checkpoint/<file>          the cached checkpoint: weights, config, tokenizer, training.json

`import` checks every file against the manifest and the weights against training.json, then moves
the checkpoint into the cache atomically. A Hub repository (named in the task card by
`hub_repository` and a pinned `hub_revision`) holds the same checkpoint files under `<model kind>/`.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tarfile
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from effbench.errors import EffbenchError
from effbench.paths import models_dir

if TYPE_CHECKING:
    from effbench.tasks import TaskData

EXPORT_FORMAT = 1
MANIFEST = "effbench-checkpoint.json"
LICENSE_FILE = "LICENSE-DATA.txt"
CHECKPOINT_DIR = "checkpoint"
_FOLDER_RE = re.compile(r"^(minilm|tiny)-[0-9a-f]{12}$")
_TASK_RE = re.compile(r"^[a-z0-9][a-z0-9._-]*$")
_FILE_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
MAX_MEMBERS = 64


def _cached_folder(task: TaskData, kind: str) -> Path:
    from effbench.models.reference import checkpoint_dir, training_config

    return checkpoint_dir(task, training_config(task, kind))


def _license_text(task: TaskData) -> str:
    card = task.card
    return (f"The effbench reference model of task {card.name} was trained on data under this license:\n\n"
            f"    {card.license}\n\nSource: {card.homepage or card.package or card.dataset}\n\n"
            f"Cite the data as:\n\n{card.citation}\n")


def export_checkpoint(task: TaskData, kind: str, destination: str | Path) -> tuple[Path, dict]:
    """Write the task's cached reference model into `destination`: a tar file, or a folder (one that exists, or a
    path ending in a slash) to write effbench-<task>-<folder>.tar into. Returns (path, training record)."""
    from effbench.models.adapter import file_sha256
    from effbench.models.reference import verify_checkpoint

    folder = _cached_folder(task, kind)
    if not (folder / "training.json").is_file():
        raise EffbenchError(f"no cached {kind} model for task {task.card.name}: train it first "
                            f"(effbench train --task {task.card.name} --model-kind {kind}) or import one")
    record = verify_checkpoint(folder)
    files = {path.name: file_sha256(path) for path in sorted(folder.iterdir()) if path.is_file()}
    manifest = {"format": EXPORT_FORMAT, "task": task.card.name, "task_version": task.card.version,
                "card_hash": task.card_hash, "data_hash": task.data_hash, "kind": kind, "folder": folder.name,
                "checkpoint_sha256": record["checkpoint_sha256"], "license": task.card.license, "files": files}
    into_folder = str(destination).endswith(("/", os.sep))
    destination = Path(destination).expanduser()
    if destination.is_dir() or into_folder:
        destination = destination / f"effbench-{task.card.name}-{folder.name}.tar"
    partial = destination.with_name(f".{destination.name}.partial")
    try:
        destination.parent.mkdir(parents=True, exist_ok=True)
        with tarfile.open(partial, "w") as archive:
            _add_text(archive, MANIFEST, json.dumps(manifest, indent=2) + "\n")
            _add_text(archive, LICENSE_FILE, _license_text(task))
            for name in files:
                archive.add(folder / name, arcname=f"{CHECKPOINT_DIR}/{name}", recursive=False)
        partial.replace(destination)
    except OSError as error:
        raise EffbenchError(f"cannot write {destination}: {error.strerror or error}") from None
    finally:
        partial.unlink(missing_ok=True)
    return destination, record


def _add_text(archive: tarfile.TarFile, name: str, text: str) -> None:
    import io

    data = text.encode("utf-8")
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mode = 0o644
    archive.addfile(info, io.BytesIO(data))


def import_checkpoint(source: Path) -> tuple[Path, dict]:
    """Verify an export and put its checkpoint into the cache. Returns (cache folder, training record)."""
    source = source.expanduser()
    try:
        archive = tarfile.open(source, "r:")
    except (OSError, tarfile.TarError) as error:
        raise EffbenchError(f"{source} is not an effbench model export (a tar file): {error}") from None
    with archive, tempfile.TemporaryDirectory(dir=models_dir(), prefix=".import-") as staging:
        members = archive.getmembers()
        if len(members) > MAX_MEMBERS:
            raise EffbenchError(f"{source}: {len(members)} entries; an effbench model export has at most {MAX_MEMBERS}")
        by_name = {member.name: member for member in members}
        manifest = _read_manifest(archive, by_name, source)
        expected = {f"{CHECKPOINT_DIR}/{name}" for name in manifest["files"]} | {MANIFEST, LICENSE_FILE}
        unexpected = sorted(set(by_name) - expected)
        missing = sorted(expected - set(by_name))
        if unexpected or missing:
            raise EffbenchError(f"{source}: entries {', '.join(unexpected) or '-'} are not in its manifest, and "
                                f"{', '.join(missing) or '-'} are missing")
        staged = Path(staging) / manifest["folder"]
        staged.mkdir()
        for name, sha256 in manifest["files"].items():
            _extract_verified(archive, by_name[f"{CHECKPOINT_DIR}/{name}"], staged / name, sha256, source)
        record = _verify_training_record(staged, manifest, source)
        target = models_dir() / manifest["task"] / manifest["folder"]
        _install(staged, target)
    _warn_if_unused(manifest, target)
    return target, record


def _read_manifest(archive: tarfile.TarFile, by_name: dict, source: Path) -> dict:
    member = by_name.get(MANIFEST)
    if member is None or not member.isfile() or member.size > 1 << 20:
        raise EffbenchError(f"{source} has no {MANIFEST}; is it a file written by `effbench models export`?")
    try:
        manifest = json.loads(archive.extractfile(member).read().decode("utf-8"))
    except (ValueError, UnicodeDecodeError) as error:
        raise EffbenchError(f"{source}: {MANIFEST} is not valid JSON: {error}") from None
    problems = []
    if not isinstance(manifest, dict) or manifest.get("format") != EXPORT_FORMAT:
        raise EffbenchError(f"{source}: {MANIFEST} is not an effbench export of format {EXPORT_FORMAT}")
    if not isinstance(manifest.get("task"), str) or not _TASK_RE.match(manifest["task"]):
        problems.append("'task' must be a task name")
    if not isinstance(manifest.get("folder"), str) or not _FOLDER_RE.match(manifest["folder"]):
        problems.append("'folder' must be <kind>-<12 hex digits>")
    if not isinstance(manifest.get("checkpoint_sha256"), str) or not re.fullmatch(r"[0-9a-f]{64}", manifest["checkpoint_sha256"]):
        problems.append("'checkpoint_sha256' must be a sha256 hex digest")
    files = manifest.get("files")
    if not isinstance(files, dict) or not files or not all(
            isinstance(k, str) and _FILE_RE.match(k) and isinstance(v, str) and re.fullmatch(r"[0-9a-f]{64}", v)
            for k, v in files.items()):
        problems.append("'files' must map plain file names to sha256 hex digests")
    elif "training.json" not in files:
        problems.append("'files' must include training.json")
    if problems:
        raise EffbenchError(f"{source}: malformed {MANIFEST}: {'; '.join(problems)}")
    return manifest


def _extract_verified(archive: tarfile.TarFile, member: tarfile.TarInfo, destination: Path, sha256: str,
                      source: Path) -> None:
    import hashlib

    if not member.isfile():
        raise EffbenchError(f"{source}: {member.name} is not a regular file")
    digest = hashlib.sha256()
    handle = archive.extractfile(member)
    with open(destination, "wb") as out:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
            out.write(block)
    if digest.hexdigest() != sha256:
        raise EffbenchError(f"{source}: {member.name} has sha256 {digest.hexdigest()}, but the manifest says "
                            f"{sha256}: the file is damaged or was changed")


def _verify_training_record(folder: Path, expected: dict, where) -> dict:
    """The checkpoint's training record, checked against its weights and what `expected` says of it."""
    from effbench.models.reference import verify_checkpoint

    record = verify_checkpoint(folder)
    for key in ("task", "kind", "checkpoint_sha256"):
        if key in expected and record.get(key) != expected[key]:
            raise EffbenchError(f"{where}: training.json says {key} {record.get(key)!r}, not {expected[key]!r}")
    return record


def _install(staged: Path, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    if target.exists():
        shutil.rmtree(target)
    staged.rename(target)


def _warn_if_unused(record: dict, target: Path) -> None:
    """Say so when this machine's task card or data would not look for the checkpoint where it now lies."""
    from effbench.errors import warn
    from effbench.tasks import load_task
    from effbench.tasks.card import task_names

    if record["task"] not in task_names():
        warn(f"there is no task card {record['task']!r} here; the checkpoint is cached at {target}")
        return
    task = load_task(record["task"])
    expected = _cached_folder(task, record["kind"])
    if expected != target:
        warn(f"task {record['task']}'s card or data here differ from the ones the checkpoint was trained on "
             f"(card sha256 {task.card_hash[:12]}... vs {record.get('card_hash', '?')[:12]}..., data sha256 "
             f"{task.data_hash[:12]}... vs {record.get('data_hash', '?')[:12]}...): runs here will not use it")


def pull_checkpoint(task: TaskData, kind: str, *, hub_cache: Path | None = None) -> tuple[Path, dict]:
    """Download the task's reference model from the Hub repository and revision its card names; verify; cache."""
    import huggingface_hub
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError

    card = task.card
    if card.hub_repository is None:
        raise EffbenchError(f"task {card.name}'s card names no Hub repository for its reference models (no public "
                            f"copy yet); get an export from whoever trained them and run: effbench models import FILE")
    try:
        snapshot = Path(huggingface_hub.snapshot_download(
            card.hub_repository, revision=card.hub_revision, cache_dir=hub_cache, allow_patterns=[f"{kind}/*"]))
    except (LocalEntryNotFoundError, HfHubHTTPError, OSError, ValueError) as error:
        raise EffbenchError(f"cannot pull {card.hub_repository}@{card.hub_revision}: {type(error).__name__}: "
                            f"{str(error).splitlines()[0] if str(error) else ''}") from None
    folder = snapshot / kind
    if not (folder / "training.json").is_file():
        raise EffbenchError(f"{card.hub_repository}@{card.hub_revision} has no {kind}/training.json")
    where = f"{card.hub_repository}@{card.hub_revision}"
    record = _verify_training_record(folder, {"task": card.name, "kind": kind}, where)
    if (record.get("card_hash"), record.get("data_hash")) != (task.card_hash, task.data_hash):
        raise EffbenchError(f"{where}: its model was trained on another version of task {card.name}'s card or data "
                            "than the one here")
    target = _cached_folder(task, kind)
    with tempfile.TemporaryDirectory(dir=models_dir(), prefix=".pull-") as staging:
        staged = Path(staging) / target.name
        # the hub cache holds symlinks into its blob store: copy the files themselves
        shutil.copytree(folder, staged, symlinks=False)
        _verify_training_record(staged, {"checkpoint_sha256": record["checkpoint_sha256"]}, where)
        _install(staged, target)
    return target, record


def cached_checkpoints() -> list[dict]:
    """One row per cached reference model: task, kind, folder, checkpoint sha256, test accuracy."""
    rows = []
    for training in sorted(models_dir().glob("*/*/training.json")):
        try:
            record = json.loads(training.read_text())
        except (OSError, ValueError):
            continue
        rows.append({"task": training.parent.parent.name, "kind": record.get("kind"), "folder": training.parent.name,
                     "checkpoint_sha256": record.get("checkpoint_sha256"), "test_accuracy": record.get("test_accuracy")})
    return rows
