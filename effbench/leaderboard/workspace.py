"""The board folder a command works on: a board folder in place, or a copy seeded from a packaged board."""

from __future__ import annotations

import difflib
import sys
from pathlib import Path

from effbench.errors import EffbenchError
from effbench.leaderboard.records import find_records
from effbench.leaderboard.spec import _NAME_RE, BOARD_FILE, RECORDS_DIR
from effbench.paths import PACKAGE_DIR, shipped_dir


def board_workspace(name_or_path: str | Path, *, output: str | Path | None = None, progress: bool = True) -> Path:
    """The board folder a `leaderboard` command reads and writes.

    A path to a board folder is used in place (or copied to `output`). A name means `output`, else
    ./leaderboards/<name>; where that folder has no board yet, the packaged board of that name (a
    read-only seed) is copied there first: its spec and committed records. (In a clone, run from its root, that is the
    repository's own board folder.) Nothing is ever written into the installed package.
    """
    path = Path(name_or_path).expanduser()
    if (path / BOARD_FILE).is_file():
        seed = path
        target = Path(output).expanduser() if output is not None else path
    elif path.exists():
        raise EffbenchError(f"{path} is not a board folder: it has no {BOARD_FILE}")
    else:
        target = Path(output).expanduser() if output is not None else Path("leaderboards") / str(name_or_path)
        seed = target if (target / BOARD_FILE).is_file() else _packaged_board(str(name_or_path))
    if target.resolve().is_relative_to(PACKAGE_DIR / "_shipped"):
        raise EffbenchError(f"{target} is a board inside the installed effbench package, which is read-only; "
                            "give --output DIR (or run from another folder) to work on a copy")
    if (target / BOARD_FILE).is_file():
        return target
    if target.is_file():
        raise EffbenchError(f"--output {target} is a file; give a folder for the board")
    _seed_board(seed, target)
    if progress:
        print(f"board {seed.name}: copied its spec and {len(find_records(target))} committed records from {seed} "
              f"into {target}", file=sys.stderr)
    return target


def _packaged_board(name: str) -> Path:
    root = shipped_dir("leaderboards")
    folder = root / name
    if _NAME_RE.match(name) and (folder / BOARD_FILE).is_file():
        return folder
    available = sorted(p.name for p in root.iterdir() if (p / BOARD_FILE).is_file()) if root.is_dir() else []
    close = difflib.get_close_matches(name, available, n=3)
    hint = f" Did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
    raise EffbenchError(f"unknown leaderboard {name!r}.{hint} Available: {', '.join(available) or '(none)'} "
                        "(or a path to a board folder)")


def _seed_board(seed: Path, target: Path) -> None:
    """Copy a board's spec and its committed records (not its report, not superseded/) into `target`."""
    import shutil

    try:
        target.mkdir(parents=True, exist_ok=True)
        shutil.copy2(seed / BOARD_FILE, target / BOARD_FILE)
        if (seed / RECORDS_DIR).is_dir():
            shutil.copytree(seed / RECORDS_DIR, target / RECORDS_DIR, dirs_exist_ok=True)
    except OSError as error:
        raise EffbenchError(f"cannot create the board folder {target}: {error.strerror or error}") from None
