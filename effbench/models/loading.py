"""Which model a run explains: the task's reference model, or the user's own (a local folder or a hub id).

Either way the model reads the task card's `max_length` tokens, cut on the card's truncation side, and
carries its provenance (`ModelProvenance`): what the user named, the hub revision, and the sha256 of its
weight files, which is what a run's identity keys on (never the path or id typed). Weights load from
safetensors only: a pickle checkpoint (`pytorch_model.bin`) is refused.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from effbench.errors import EffbenchError, warn

if TYPE_CHECKING:
    from effbench.models.adapter import ClassifierAdapter
    from effbench.tasks import TaskData

PICKLE_WEIGHTS = ("pytorch_model.bin", "*.bin", "*.pt", "*.pth", "*.ckpt", "*.pkl")
# what a classifier folder needs from a hub repository: config, tokenizer files and safetensors weights
HUB_FILES = ("*.json", "*.safetensors", "*.txt", "*.model", "*.tiktoken")
_HUB_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*(/[A-Za-z0-9][A-Za-z0-9._-]*)?$")
_REVISION_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/-]*$")
_DEFAULT_LABEL_RE = re.compile(r"^LABEL_\d+$")


@dataclass(frozen=True)
class ModelProvenance:
    """What a run record says about its model. `identity` is what the run's identity hashes."""

    name: str  # a display name: the reference model's cache folder, or what the user typed
    checkpoint_sha256: str | None  # sha256 of the weights (one file), or of their folder hash (shards)
    source: str | None = None  # the local path or hub id the user gave; None for a reference model
    hub_revision: str | None = None  # the hub commit the weights came from, where they came from the hub
    weight_files: tuple[str, ...] = ()
    training: dict | None = None  # the reference model's training record

    @property
    def identity(self) -> dict[str, Any]:
        from effbench.records import model_identity

        return model_identity(self.name, self.checkpoint_sha256, self.training is not None)

    def recorded(self, *, keep_local_path: bool = True) -> dict[str, Any]:
        values = asdict(self)
        values["weight_files"] = list(self.weight_files)
        if not keep_local_path and self.hub_revision is None and self.training is None:
            # a local path is provenance of this machine only: keep the folder's name
            values["source"], values["name"] = None, Path(self.name).name
        return values


def weights_sha256(folder: Path) -> tuple[str, tuple[str, ...]]:
    """(sha256, file names) of a model folder's safetensors weights; refuses pickle-only checkpoints."""
    import hashlib

    from effbench.models.adapter import file_sha256

    files = sorted(p for p in folder.glob("*.safetensors") if p.is_file())
    if not files:
        pickles = sorted({p.name for pattern in PICKLE_WEIGHTS for p in folder.glob(pattern)})
        if pickles:
            raise EffbenchError(
                f"refusing to load {folder}: its weights ({', '.join(pickles)}) are a pickle file, which can run code; "
                "effbench loads safetensors only (convert with model.save_pretrained(folder, safe_serialization=True))"
            )
        raise EffbenchError(f"{folder} has no model weights (*.safetensors); is it a model saved with save_pretrained?")
    if len(files) == 1:
        return file_sha256(files[0]), (files[0].name,)
    # shards: the folder hash of effbench/tasks/sources.py, sha256 of the sorted lines "name <file sha256>\n"
    lines = "".join(sorted(f"{p.name} {file_sha256(p)}\n" for p in files))
    return hashlib.sha256(lines.encode("utf-8")).hexdigest(), tuple(p.name for p in files)


def resolve_model_folder(path_or_id: str) -> tuple[Path, str | None, str | None]:
    """(local folder, hub id, hub revision) for a model folder, or a hub id `org/name[@revision]` (online)."""
    path = Path(path_or_id).expanduser()
    if path.exists():
        if not path.is_dir() or not (path / "config.json").is_file():
            raise EffbenchError(f"--model {path_or_id!r} is not a model folder (one saved with save_pretrained, "
                                "holding config.json, the tokenizer and *.safetensors weights)")
        return path.resolve(), None, None
    repo_id, _, revision = path_or_id.partition("@")
    looks_local = path_or_id.startswith((".", "/", "~")) or "\\" in path_or_id or repo_id.count("/") > 1
    if looks_local or not _HUB_ID_RE.match(repo_id) or (revision and not _REVISION_RE.match(revision)):
        raise EffbenchError(f"--model {path_or_id!r}: no such folder, and not a hub id (org/name or org/name@revision)")
    import huggingface_hub
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError

    try:
        folder = huggingface_hub.snapshot_download(repo_id, revision=revision or None, allow_patterns=list(HUB_FILES))
    except (LocalEntryNotFoundError, HfHubHTTPError, OSError, ValueError) as error:
        offline = " (offline: HF_HUB_OFFLINE is set, and it is not in the local hub cache)" if huggingface_hub.constants.HF_HUB_OFFLINE else ""
        raise EffbenchError(f"cannot fetch model {path_or_id!r} from the Hugging Face Hub{offline}: "
                            f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}") from None
    folder = Path(folder)
    return folder, repo_id, folder.name  # a snapshot folder is named by its commit


def load_own_model(path_or_id: str, task: TaskData, *, device: str = "cpu", dtype: str = "float32") -> ClassifierAdapter:
    """A user's classifier for `task`: the card's max_length and truncation side, its labels in the card's order."""
    from effbench.models.adapter import ClassifierAdapter

    folder, hub_id, revision = resolve_model_folder(path_or_id)
    sha256, files = weights_sha256(folder)
    card = task.card
    adapter = ClassifierAdapter.load(folder, max_length=card.max_length, truncation_side=card.truncation_side,
                                     device=device, dtype=dtype)
    limit = adapter.position_limit()
    if limit is not None and limit < card.max_length:
        kept = "first" if card.truncation_side == "right" else "last"
        warn(f"model {path_or_id} reads at most {limit} tokens, fewer than task {card.name}'s max_length "
             f"{card.max_length}: it sees the {kept} {limit} tokens of each text")
        adapter.max_length = limit
    adapter.set_class_order(_class_order(adapter.model.config, task, path_or_id))
    adapter.name = hub_id or str(path_or_id)
    adapter.provenance = ModelProvenance(name=adapter.name, checkpoint_sha256=sha256, source=hub_id or str(folder),
                                         hub_revision=revision, weight_files=files)
    return adapter


def _class_order(config, task: TaskData, shown: str) -> list[int] | None:
    """The model's output index for each of the card's classes, or None when they already match."""
    labels = list(task.label_names)
    if config.num_labels != len(labels):
        raise EffbenchError(f"model {shown} has {config.num_labels} labels but task {task.card.name} has "
                            f"{len(labels)} ({', '.join(labels)}); use a classifier trained for this task")
    names = [str(config.id2label.get(index, f"LABEL_{index}")) for index in range(config.num_labels)]
    if all(not _DEFAULT_LABEL_RE.match(name) for name in names):
        by_name = {name.lower(): index for index, name in enumerate(names)}
        if set(by_name) == {label.lower() for label in labels}:
            order = [by_name[label.lower()] for label in labels]
            return None if order == list(range(len(labels))) else order
    if names != labels:
        warn(f"model {shown}'s labels ({', '.join(names)}) do not name task {task.card.name}'s classes "
             f"({', '.join(labels)}): output i is taken as the card's class i")
    return None


def load_model(task: TaskData | str, model: str | None = None, *, model_kind: str = "minilm", device: str = "cpu",
               dtype: str = "float32", progress: bool = True) -> ClassifierAdapter:
    """The model a run on `task` (a TaskData or a task name) explains: `model` (a folder or hub id) if given,
    else the task's reference model of `model_kind`, trained first if it is not cached."""
    if isinstance(task, str):
        from effbench.tasks import load_task

        task = load_task(task)
    if model is not None:
        return load_own_model(model, task, device=device, dtype=dtype)
    from effbench.models.reference import load_reference_model

    adapter, _ = load_reference_model(task, model_kind, device=device, dtype=dtype, progress=progress)
    return adapter
