"""Building a board: read its spec and records, check them, rank, and write the report files."""

from __future__ import annotations

from pathlib import Path

from effbench.errors import EffbenchError
from effbench.leaderboard.checks import cost, diagnosticity, metric_agreement
from effbench.leaderboard.citations import _citations, bibtex_key
from effbench.leaderboard.claims import paper_claims
from effbench.leaderboard.published import published_rankings
from effbench.leaderboard.ranking import (
    BuildResult,
    _metric_info,
    _overall,
    _provenance,
    _standings,
    _task_provenance,
)
from effbench.leaderboard.records import (
    BoardRecord,
    check_records,
    find_records,
    load_board_record,
    mixed_dtypes,
    unfinished_runs,
)
from effbench.leaderboard.report import _write_outputs
from effbench.leaderboard.rivals import efficient_against_decompositions
from effbench.leaderboard.spec import RECORDS_DIR, load_board


def build_board(board_dir: str | Path) -> BuildResult:
    """Read a board's spec and records, check they are comparable, rank, and write the report files."""
    board_dir = Path(board_dir)
    board = load_board(board_dir)
    notes: list[str] = []

    loaded: list[BoardRecord] = []
    for path in find_records(board_dir):
        record = load_board_record(path, board_dir)
        if record.task not in board.tasks:
            notes.append(f"ignored {record.label}: task {record.task} is not on this board")
            continue
        if record.explainer not in board.explainers:
            notes.append(f"ignored {record.label}: explainer {record.explainer} is not on this board")
            continue
        folder_task = path.parent.parent.name
        if folder_task != record.task:
            raise EffbenchError(f"{record.label}: the record is for task {record.task} but lies under "
                                f"{RECORDS_DIR}/{folder_task}/; move it to {RECORDS_DIR}/{record.task}/")
        extra = [m["name"] for m in record.record["metrics"] if m["name"] not in board.metrics]
        if extra:
            notes.append(f"{record.label}: metrics not on this board ignored: {', '.join(extra)}")
        loaded.append(record)
    if not loaded:
        raise EffbenchError(f"board {board.name} has no records for its tasks and explainers under "
                            f"{board_dir / RECORDS_DIR}; run `effbench run` with the board's settings first")

    mixed = mixed_dtypes(loaded)
    if mixed:  # one line on its own: every record of the other dtype differs, so the list below would be long
        raise EffbenchError(f"board {board.name}: {mixed}")
    problems = check_records(board, loaded)
    if problems:
        raise EffbenchError(f"board {board.name}: {len(problems)} problem(s) with its records:\n  " + "\n  ".join(problems))

    records: dict[str, dict[str, BoardRecord]] = {}
    for task in board.tasks:
        for record in loaded:
            if record.task == task:
                records.setdefault(task, {})[record.explainer] = record
    for task in board.tasks:
        missing = [e for e in board.explainers if e not in records.get(task, {})]
        if task not in records:
            notes.append(f"no records yet for task {task}")
        elif missing:
            notes.append(f"task {task}: no record yet for {', '.join(missing)}")
    notes += unfinished_runs(board, board_dir)

    metrics = _metric_info(board, loaded)
    for name in board.metrics:
        if name not in metrics:
            notes.append(f"no record reports metric {name}")
    standings = _standings(board, records, metrics, notes)
    citations = _citations(loaded)
    result = BuildResult(
        board=board, standings=standings, overall=_overall(board, standings), metrics=metrics,
        provenance=_provenance(loaded), task_provenance=_task_provenance(board, records), records=records,
        notes=notes, citations=citations, claims=paper_claims(board, records, metrics),
        rivals=efficient_against_decompositions(board, records, metrics),
        published=published_rankings(board, records, metrics, {bibtex_key(entry) for entry in citations}),
    )
    result.agreement, result.diagnosticity, result.cost = metric_agreement(result), diagnosticity(result), cost(result)
    _write_outputs(result)
    return result
