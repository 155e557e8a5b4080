"""The leaderboard's index.html: self-contained, escaped, with its charts; rendered in headless Chromium."""

from __future__ import annotations

import re
import struct
import subprocess
from pathlib import Path

import pytest

from effbench.leaderboard import build_board
from effbench.leaderboard.html import bar_chart, esc
from test_leaderboard import make_record, populated_board, synthetic_values, write_board, write_record

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]
XSS = "<script>alert(1)</script>"
needs_chromium = pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's chromium at /usr/bin/chromium "
                                                                   "(apt-get install -y chromium)")


def _tokens(count: int) -> list[list[str]]:
    sentences = [["a", XSS, "film", "&", "\"quoted\"", "'single'"], ["the", "plot", "is", "thin"],
                 ["jokes", "land", "<b>well</b>", "here"]]
    return [sentences[index % len(sentences)] for index in range(count)]


@pytest.fixture()
def built(tmp_path) -> Path:
    board = populated_board(tmp_path, bins=True, tokens=_tokens(30))
    build_board(board)
    return board / "index.html"


def test_dataset_text_is_escaped(built):
    page = built.read_text()
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "&lt;b&gt;well&lt;/b&gt;" in page and "&amp;" in page and "&quot;quoted&quot;" in page
    assert "<script" not in page.lower()
    assert "<b>well</b>" not in page


def test_the_page_is_self_contained(built):
    page = built.read_text()
    assert re.search(r"\b(src|href)\s*=", page, re.IGNORECASE) is None
    assert "@import" not in page and "url(" not in page
    assert set(re.findall(r"https?://[^\s\"'<>]+", page)) == {"http://www.w3.org/2000/svg"}  # the SVG namespace only
    assert "default-src 'none'" in page  # and a Content-Security-Policy forbids any remote load or script


def test_the_page_has_tables_bar_charts_curves_and_heat_maps(built):
    page = built.read_text()
    assert page.count('class="task-table"') == 2 and 'class="overall"' in page
    assert page.count("bar-chart") == 2 * 2  # tasks x metrics
    assert page.count("line-chart") == 2 * 2  # tasks x (necessity, sufficiency)
    assert page.count("<polyline") == 2 * 2 * 3  # one curve per explainer
    assert page.count("<h3>example ") == 3
    assert "0.486 [0.465, 0.503] #1" in page.replace("<br>", " ").replace("\u00a0", " ")  # README.md's cell text


def test_curves_are_skipped_with_a_note_when_rows_have_no_bins(tmp_path):
    board = populated_board(tmp_path, bins=False)
    build_board(board)
    page = (board / "index.html").read_text()
    assert "line-chart" not in page
    assert "No necessity curve for saliency, grad_x_input, random on mr-sentences" in page
    assert "metrics.necessity.details.bins" in page


def test_a_bar_chart_draws_every_finite_bar_with_whiskers():
    chart = bar_chart("t <x>", [("a", 0.5, 0.4, 0.6, "#000"), ("b", -0.2, -0.3, -0.1, "#111"),
                                ("c", float("nan"), float("nan"), float("nan"), "#222")])
    assert chart.count("<rect") == 2 and ">n/a<" in chart and "t &lt;x&gt;" in chart
    assert chart.count("<line") >= 2 * 3  # each finite bar: a whisker and two caps
    assert "nan" not in chart.replace("n/a", "")


def test_esc_escapes_quotes_for_attributes():
    assert esc('"><svg onload=x>') == "&quot;&gt;&lt;svg onload=x&gt;"


def _chromium(page: Path, profile: Path, *extra: str) -> subprocess.CompletedProcess:
    command = [str(CHROMIUM), *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "--enable-logging=stderr", "--v=0",
               *extra, page.resolve().as_uri()]
    return subprocess.run(command, capture_output=True, text=True, timeout=180)


def console_messages(stderr: str) -> list[str]:
    """Chromium logs each console message of the page (errors, warnings, uncaught exceptions) as a
    ':CONSOLE' line on stderr with --enable-logging=stderr --v=0; the page has no scripts, so any is a fault."""
    return [line for line in stderr.splitlines() if ":CONSOLE" in line or "Uncaught" in line]


@needs_chromium
def test_the_console_check_catches_a_faulty_page(tmp_path):
    """The check below would pass vacuously if Chromium stopped logging console errors: make sure it does not."""
    page = tmp_path / "faulty.html"
    page.write_text('<!DOCTYPE html><html><body><svg><rect width="x"/></svg>'
                    "<script>undefinedFunction()</script></body></html>")
    run = _chromium(page, tmp_path / "profile", "--dump-dom")
    messages = console_messages(run.stderr)
    assert any("Uncaught ReferenceError" in m for m in messages), run.stderr[-2000:]
    assert any("<rect> attribute width" in m for m in messages), run.stderr[-2000:]


@needs_chromium
def test_chromium_renders_the_report_without_console_errors(built, tmp_path):
    run = _chromium(built, tmp_path / "profile", "--dump-dom")
    assert run.returncode == 0, run.stderr[-2000:]
    assert console_messages(run.stderr) == []
    dom = run.stdout
    assert dom.count("<table") == built.read_text().count("<table") >= 2 + 1 + 3
    assert dom.count("<svg") == 2 * 2 + 2 * 2
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in dom and "<script" not in dom.lower()

    screenshot = tmp_path / "board.png"
    run = _chromium(built, tmp_path / "profile", f"--screenshot={screenshot}", "--window-size=1200,1600",
                    "--hide-scrollbars")
    assert console_messages(run.stderr) == []
    header = screenshot.read_bytes()[:24]
    assert header[:8] == b"\x89PNG\r\n\x1a\n"
    assert struct.unpack(">II", header[16:24]) == (1200, 1600)


def test_a_board_whose_rows_have_no_tokens_says_so(tmp_path):
    board = write_board(tmp_path, tasks=["mr-sentences"], explainers=["saliency"], metrics=["necessity"])
    record, rows = make_record("mr-sentences", "saliency", {"necessity": synthetic_values(0, 0.3)})
    for row in rows:
        del row["tokens"], row["scores"]
    write_record(board, record, rows)
    build_board(board)
    assert "No token heat maps: no record carries per-example tokens and scores." in (board / "index.html").read_text()


def heat_map_headings(tmp_path: Path, **changes) -> list[str]:
    """The per-example headings of a one-record board on mr-sentences whose rows have labels 0, 1, 0, ..."""
    board = write_board(tmp_path, tasks=["mr-sentences"], explainers=["saliency"], metrics=["necessity"])
    write_record(board, *make_record("mr-sentences", "saliency", {"necessity": synthetic_values(0, 0.3)}, **changes))
    build_board(board)
    return re.findall(r"<h3>example (.*?)</h3>", (board / "index.html").read_text())


def test_heat_maps_name_the_classes_the_record_carries(tmp_path):
    headings = heat_map_headings(tmp_path, **{"task.labels": ["<neg>", "pos"]})
    assert headings == ["row-0 (label &lt;neg&gt;, model predicts &lt;neg&gt;)",
                        "row-1 (label pos, model predicts pos)",
                        "row-2 (label &lt;neg&gt;, model predicts &lt;neg&gt;)"]


def test_heat_maps_of_older_records_name_the_classes_of_their_own_task_card(tmp_path):
    from effbench.tasks import get_card

    headings = heat_map_headings(tmp_path, **{"task.card_hash": get_card("mr-sentences").card_hash})
    assert headings[:2] == ["row-0 (label negative, model predicts negative)",
                            "row-1 (label positive, model predicts positive)"]


def test_heat_maps_show_class_numbers_when_the_names_are_unknown(tmp_path):
    # no labels in the record, and its card_hash is not that of the mr-sentences card here
    headings = heat_map_headings(tmp_path)
    assert headings[:2] == ["row-0 (label 0, model predicts 0)", "row-1 (label 1, model predicts 1)"]


def test_a_record_whose_labels_are_not_names_is_refused(tmp_path):
    from effbench.recordio import RecordError

    with pytest.raises(RecordError, match=r"key 'task.labels' must be a list of class names"):
        heat_map_headings(tmp_path, **{"task.labels": "negative,positive"})
