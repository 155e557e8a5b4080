"""Running a board: its explainers and metrics with its settings, and retiring the records a run replaces."""

from __future__ import annotations

import difflib
import re
import sys
from collections.abc import Sequence
from pathlib import Path

from effbench.errors import EffbenchError
from effbench.leaderboard.spec import RECORDS_DIR, SUPERSEDED_DIR, BoardSpec, load_board
from effbench.recordio import read_record
from effbench.untrusted import excerpt


ENGINES = ("local", "ray")


def check_engine(engine: str, address: str | None = None, workers: int | None = None) -> None:
    """A one-line error for an unknown engine, Ray options without the Ray engine, the Ray engine without Ray,
    or an address where no Ray cluster can be reached."""
    if engine not in ENGINES:
        close = difflib.get_close_matches(str(engine), ENGINES, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise EffbenchError(f"unknown engine {excerpt(engine)}{hint}; use one of {', '.join(ENGINES)}")
    if engine == "local" and (address is not None or workers is not None):
        raise EffbenchError("--address and --workers are options of --engine ray")
    if engine == "ray":
        from effbench.leaderboard.ray_engine import check_address, import_ray

        import_ray()
        if address is not None:
            check_address(address)


def run_board(board_dir: str | Path, *, tasks: Sequence[str] | None = None, device: str = "cpu",
              dtype: str = "float32", model: str | None = None, forward_cache_gib: float = 2.0,
              progress: bool = True, engine: str = "local", address: str | None = None,
              workers: int | None = None) -> list[dict]:
    """Run the board's explainers and metrics with its settings, writing records into its records/ folder.

    Metrics that take a perturbation `mode` get the board's `perturbation` (the runner passes it) unless the
    board sets one. `model` (a folder or hub id) replaces the board's model of every task run.
    `engine` "local" runs the tasks one after the other in this process; "ray" runs the board's
    (task, explainer, shard) cells on a Ray cluster (`address`, else a local Ray with `workers` CPUs), into
    the same records (effbench.leaderboard.ray_engine).
    """
    from effbench.runner import evaluate

    check_engine(engine, address, workers)
    board_dir = Path(board_dir)
    board = load_board(board_dir)
    chosen = list(tasks) if tasks else list(board.tasks)
    unknown = [t for t in chosen if t not in board.tasks]
    if unknown:
        raise EffbenchError(f"task {unknown[0]!r} is not on board {board.name}; its tasks: {', '.join(board.tasks)}")
    configs = [(task, board_run_config(board, board_dir, task, device=device, dtype=dtype, model=model,
                                       forward_cache_gib=forward_cache_gib))
               for task in chosen]
    explainers = board_explainers(board)
    if engine == "ray":
        from effbench.leaderboard.ray_engine import run_on_ray

        written = run_on_ray(configs, explainers, board.metrics, address=address, workers=workers, progress=progress)
    records = []
    for task, config in configs:
        task_records = written[task] if engine == "ray" else evaluate([task], explainers, board.metrics, config,
                                                                         progress=progress)
        for old_folder, new_folder, reason in retire_superseded(board_dir, task, task_records):
            if progress:
                print(f"{board.name}: {old_folder.relative_to(board_dir)} is out of date ({reason}): moved to "
                      f"{new_folder.relative_to(board_dir)}", file=sys.stderr)
        records += task_records
    return records


def board_run_config(board: BoardSpec, board_dir: Path, task: str, *, device: str = "cpu", dtype: str = "float32",
                     model: str | None = None, forward_cache_gib: float = 2.0):
    """The RunConfig of one board task: the board's settings, its records/ folder as the output."""
    from effbench.runner import RunConfig

    return RunConfig(seed=board.seed, limit=board.limit_for(task), batch_size=board.batch_size, device=device,
                     dtype=dtype, output_dir=board_dir / RECORDS_DIR, model_kind=board.model_kind,
                     perturbation=board.perturbation, model=model or board.model_for(task), record_local_paths=False,
                     forward_cache_gib=forward_cache_gib)


def board_explainers(board: BoardSpec) -> dict[str, dict]:
    """The board's explainers as the runner takes them: registry name or `package.module:Class` -> parameters."""
    return {board.explainer_specs.get(name, name): params for name, params in board.explainers.items()}


def retire_superseded(board_dir: Path, task: str, written: Sequence[dict]) -> list[tuple[Path, Path, str]]:
    """Move the task's other records of the explainers just run out of records/ into superseded/.

    A board keeps one record per (task, explainer): after a run, a record made with another model
    checkpoint, other data, other component versions or another dtype is out of date. It is kept, not
    deleted. (A run in another dtype retires the records of the tasks it ran only: until every task has
    run in that dtype, the board's build refuses to rank the mix, naming the records of each dtype.)
    Returns (old folder, new folder, what differs) per record moved.
    """
    from effbench.runner import record_folder

    records_dir = board_dir / RECORDS_DIR
    moved = []
    for new in written:
        name = new["explainer"]["name"]
        current = record_folder(records_dir, task, name, new["identity_sha256"])
        pattern = re.compile(re.escape(name) + r"-[0-9a-f]{10}")
        for folder in sorted((records_dir / task).iterdir()):
            if folder == current or not folder.is_dir() or not pattern.fullmatch(folder.name):
                continue
            try:
                reason = _what_changed(read_record(folder / "record.json"), new)
            except EffbenchError:
                reason = "an unfinished or unreadable run"
            target = board_dir / SUPERSEDED_DIR / task / folder.name
            copies = 1
            while target.exists():
                copies += 1
                target = target.with_name(f"{folder.name}.{copies}")
            target.parent.mkdir(parents=True, exist_ok=True)
            folder.rename(target)
            moved.append((folder, target, reason))
    return moved


def _what_changed(old: dict, new: dict) -> str:
    checks = (
        ("task card or data", lambda r: (r["task"]["version"], r["task"]["card_hash"], r["task"]["data_hash"])),
        ("model checkpoint", lambda r: r["model"]["checkpoint_sha256"]),
        ("explainer version or parameters", lambda r: (r["explainer"]["version"], r["explainer"]["params"])),
        ("metric versions or parameters", lambda r: [(m["name"], m["version"], m["params"]) for m in r["metrics"]]),
        ("seed or perturbation", lambda r: (r["config"]["seed"], r["config"]["perturbation"])),
        ("dtype", lambda r: r["config"]["dtype"]),
    )
    changed = []
    for what, get in checks:
        try:
            if get(old) != get(new):
                changed.append(f"dtype ({get(old)} -> {get(new)})" if what == "dtype" else what)
        except (KeyError, TypeError):
            changed.append(what)
    return "another " + ", ".join(changed) if changed else "another run identity"
