"""Hashing and provenance shared by checkpoints, run records and leaderboards."""

from __future__ import annotations

import functools
import hashlib
import json
import platform
import subprocess
from typing import Any

from effbench.paths import PACKAGE_DIR, REPO_ROOT, is_clone


def sha256_json(value: Any) -> str:
    """sha256 of a canonical JSON serialisation (sorted keys, no whitespace)."""
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def run_identity(task: dict, model: dict, explainer: dict, metrics: list[dict], *, perturbation: str, seed: int,
                 dtype: str) -> dict[str, Any]:
    """What a run's identity hashes (its record folder is named by the hash): task, model, components, settings.

    `task` holds the task's name, version, card_hash and data_hash; `model` the model's name and
    checkpoint_sha256; `explainer` and each metric their name, version and params.
    """
    return {"task": task, "model": model, "explainer": explainer, "metrics": metrics,
            "perturbation": perturbation, "seed": seed, "dtype": dtype}


def model_identity(name: str, checkpoint_sha256: str | None, is_reference_model: bool) -> dict[str, Any]:
    """The model's part of a run's identity: the same weights at two paths are one model; a reference
    model (one with a training record) keeps its cache name."""
    return {"name": name if is_reference_model else "own-model", "checkpoint_sha256": checkpoint_sha256}


def identity_of_record(record: dict) -> dict[str, Any]:
    """The identity a run record was written under, rebuilt from its fields (as the runner built it)."""
    def component(entry: dict) -> dict:
        return {"name": entry["name"], "version": entry["version"], "params": entry["params"]}

    model = record["model"]
    return run_identity(
        {key: record["task"][key] for key in ("name", "version", "card_hash", "data_hash")},
        model_identity(model["name"], model["checkpoint_sha256"], model.get("training") is not None),
        component(record["explainer"]), [component(metric) for metric in record["metrics"]],
        perturbation=record["config"]["perturbation"], seed=record["config"]["seed"], dtype=record["config"].get("dtype"),
    )


def json_safe(value: Any) -> Any:
    """NaN and infinities as null, so that what effbench writes as JSON is strict JSON."""
    import math

    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return value


def git_state() -> dict[str, Any]:
    """The code's git SHA and whether the work tree has uncommitted changes (None for an installed package)."""
    if not is_clone():  # an installed copy: a git repository around the environment is not its source
        return {"git_sha": None, "git_dirty": None}

    def git(*args: str) -> str | None:
        try:
            result = subprocess.run(["git", *args], cwd=REPO_ROOT, capture_output=True, text=True, timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            return None
        return result.stdout.strip() if result.returncode == 0 else None

    sha = git("rev-parse", "HEAD")
    status = git("status", "--porcelain", "--untracked-files=no")
    return {"git_sha": sha, "git_dirty": None if status is None else bool(status)}


@functools.lru_cache(maxsize=1)
def code_sha256() -> str:
    """sha256 over effbench's own source files (the folder hash of effbench/tasks/sources.py), installed or not."""
    from effbench.tasks.sources import files_sha256

    files = {path.relative_to(PACKAGE_DIR).as_posix(): path.read_bytes()
             for path in sorted(PACKAGE_DIR.rglob("*.py")) if "_shipped" not in path.parts}
    return files_sha256(files, single=False)


def environment() -> dict[str, Any]:
    """Library versions and platform."""
    import torch
    import transformers

    import effbench

    return {
        "effbench": effbench.__version__,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "platform": platform.platform(),
        "code_sha256": code_sha256(),
        **git_state(),
    }
