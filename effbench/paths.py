"""Where effbench finds what it ships (task cards, metric folders, boards) and keeps downloads and models.

What ships lives in the top-level `tasks/`, `metrics/` and `leaderboards/` folders of the repository;
the build copies them into the package as `effbench/_shipped/<folder>`. An installed package reads them
there, a clone (or an editable install) reads them at the top level. Nothing is ever written into them
from an installed package: runs and boards write under the current folder or an `--output`.
"""

from __future__ import annotations

import os
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
REPO_ROOT = PACKAGE_DIR.parent
SHIPPED_FOLDERS = ("tasks", "metrics", "leaderboards")


def shipped_dir(folder: str) -> Path:
    """The shipped `tasks`, `metrics` or `leaderboards` folder: inside the installed package, else the clone's."""
    if folder not in SHIPPED_FOLDERS:
        raise ValueError(f"{folder!r} is not one of {SHIPPED_FOLDERS}")
    installed = PACKAGE_DIR / "_shipped" / folder
    return installed if installed.is_dir() else REPO_ROOT / folder


def is_clone() -> bool:
    """Whether effbench runs from its own source tree (a clone or an editable install), not an installed copy."""
    return not (PACKAGE_DIR / "_shipped").is_dir() and (REPO_ROOT / "pyproject.toml").is_file()


def cache_dir() -> Path:
    """The cache folder: $EFFBENCH_CACHE, else ~/.cache/effbench."""
    root = os.environ.get("EFFBENCH_CACHE") or Path.home() / ".cache" / "effbench"
    path = Path(root).expanduser()
    path.mkdir(parents=True, exist_ok=True)
    return path


def downloads_dir() -> Path:
    path = cache_dir() / "downloads"
    path.mkdir(parents=True, exist_ok=True)
    return path


def models_dir() -> Path:
    path = cache_dir() / "models"
    path.mkdir(parents=True, exist_ok=True)
    return path


def metric_module(name: str) -> str:
    """The folder of a shipped metric's `evaluate` module, for `evaluate.load(effbench.metric_module(name))`."""
    from effbench.errors import UnknownNameError

    folder = shipped_dir("metrics") / name
    if not (folder / f"{name}.py").is_file():
        available = sorted(p.name for p in shipped_dir("metrics").iterdir() if (p / f"{p.name}.py").is_file())
        raise UnknownNameError(f"no metric module {name!r}; the shipped ones: {', '.join(available)}")
    return str(folder)
