"""A board's citations.bib entries: effbench's own, then its explainers', metrics' and datasets', de-duplicated."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import TYPE_CHECKING

import effbench

if TYPE_CHECKING:
    from effbench.leaderboard.records import BoardRecord

EFFBENCH_RELEASE_YEAR = 2026

_BIBTEX_KEY_RE = re.compile(r"@\s*\w+\s*[{(]\s*([^,\s]+)\s*,")


def effbench_citation() -> str:
    return (
        "@software{effbench,\n"
        "  title = {effbench: A Benchmark Suite Scoring Explanations of Transformer Text Classifiers},\n"
        "  author = {{The effbench authors}},\n"
        f"  version = {{{effbench.__version__}}},\n"
        f"  year = {{{EFFBENCH_RELEASE_YEAR}}},\n"
        "  note = {Leaderboards, run records and per-example scores of attention-based and gradient-based explanations}\n"
        "}"
    )


def bibtex_key(entry: str) -> str | None:
    match = _BIBTEX_KEY_RE.search(entry)
    return match.group(1) if match else None


def _citations(records: Sequence[BoardRecord]) -> list[str]:
    """effbench's entry, then every explainer, metric and dataset citation, de-duplicated by BibTeX key."""
    candidates = [effbench_citation()]
    for record in records:
        candidates.append(record.record["explainer"].get("citation"))
        candidates.extend(m.get("citation") for m in record.record["metrics"])
        candidates.append(record.record["task"].get("citation"))
    entries: list[str] = []
    seen: set[str] = set()
    for entry in candidates:
        if not entry or not entry.strip():
            continue
        entry = entry.strip()
        identity = bibtex_key(entry) or entry
        if identity not in seen:
            seen.add(identity)
            entries.append(entry)
    return entries
