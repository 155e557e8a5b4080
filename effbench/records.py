"""Hashing and provenance shared by checkpoints, run records and leaderboards."""

from __future__ import annotations

import hashlib
import json
import platform
import subprocess
from typing import Any

from effbench.paths import REPO_ROOT


def sha256_json(value: Any) -> str:
    """sha256 of a canonical JSON serialisation (sorted keys, no whitespace)."""
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def git_state() -> dict[str, Any]:
    """The code's git SHA and whether the work tree has uncommitted changes (None outside a checkout)."""
    def git(*args: str) -> str | None:
        try:
            result = subprocess.run(["git", *args], cwd=REPO_ROOT, capture_output=True, text=True, timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            return None
        return result.stdout.strip() if result.returncode == 0 else None

    sha = git("rev-parse", "HEAD")
    status = git("status", "--porcelain", "--untracked-files=no")
    return {"git_sha": sha, "git_dirty": None if status is None else bool(status)}


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
        **git_state(),
    }
