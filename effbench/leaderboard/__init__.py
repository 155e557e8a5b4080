"""Leaderboards: a board spec and its accepted run records -> comparability check -> ranked tables and report.

A board is a folder `leaderboards/<board>/` holding `board.yaml` (what to run and rank) and
`records/<task>/<explainer>-<hash>/{record.json, per_example.jsonl}` (accepted run records).
`run_board` moves the records it replaces (another model, data or component version) to `superseded/`.
`build_board` refuses records that cannot be compared, ranks the explainers per (task, metric) with
paired bootstrap tests between neighbours, and writes README.md, results.csv, results.json,
index.html and citations.bib into the board folder.

    from effbench.leaderboard import board_workspace, build_board
    result = build_board(board_workspace("quick"))   # ./leaderboards/quick, seeded from the packaged board
"""

from effbench.leaderboard.build import build_board
from effbench.leaderboard.citations import EFFBENCH_RELEASE_YEAR, bibtex_key, effbench_citation
from effbench.leaderboard.ranking import (
    BOOTSTRAP_RESAMPLES,
    SIGNIFICANCE_LEVEL,
    BuildResult,
    OverallRow,
    RankedEntry,
    Standing,
    metric_order,
    rank_explainers,
)
from effbench.leaderboard.records import BoardRecord, check_records, find_records, load_board_record
from effbench.leaderboard.report import (
    ARROWS,
    CSV_COLUMNS,
    NOT_SIGNIFICANT_VS_BEST,
    NOT_SIGNIFICANT_VS_NEXT,
    degenerate_banner,
    format_cell,
    format_number,
    format_summary,
    legend,
    metric_header,
    overall_table_rows,
    provenance_rows,
    render_csv,
    render_readme,
    reproducing_section,
    results_document,
    tabulate_github,
    task_provenance_rows,
    task_table_rows,
)
from effbench.leaderboard.running import retire_superseded, run_board
from effbench.leaderboard.spec import (
    BOARD_FILE,
    MODEL_KINDS,
    PERTURBATION_MODES,
    RECORDS_DIR,
    SUPERSEDED_DIR,
    BoardSpec,
    load_board,
)
from effbench.leaderboard.workspace import board_workspace

__all__ = [
    "ARROWS", "BOARD_FILE", "BOOTSTRAP_RESAMPLES", "CSV_COLUMNS", "EFFBENCH_RELEASE_YEAR", "MODEL_KINDS",
    "NOT_SIGNIFICANT_VS_BEST", "NOT_SIGNIFICANT_VS_NEXT", "PERTURBATION_MODES", "RECORDS_DIR", "SIGNIFICANCE_LEVEL",
    "SUPERSEDED_DIR", "BoardRecord", "BoardSpec", "BuildResult", "OverallRow", "RankedEntry", "Standing",
    "bibtex_key", "board_workspace", "build_board", "check_records", "degenerate_banner", "effbench_citation",
    "find_records", "format_cell", "format_number", "format_summary", "legend", "load_board", "load_board_record",
    "metric_header", "metric_order", "overall_table_rows", "provenance_rows", "rank_explainers", "render_csv",
    "render_readme", "reproducing_section", "results_document", "retire_superseded", "run_board", "tabulate_github",
    "task_provenance_rows", "task_table_rows",
]
