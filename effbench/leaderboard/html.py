"""The leaderboard's index.html: one self-contained page (inline CSS and SVG, no scripts, no external files).

Every piece of text that comes from a record or a dataset (tokens, ids, names) goes through `esc`,
and a Content-Security-Policy forbids scripts and remote loads as a second line of defence.
"""

from __future__ import annotations

import html
import json
import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

from effbench.errors import EffbenchError
from effbench.leaderboard.ranking import metric_order
from effbench.leaderboard.report import (
    ARROWS,
    CLAIMS_HEADERS,
    CLAIMS_HEADING,
    CLAIMS_INTRO,
    AGREEMENT_HEADING,
    AGREEMENT_INTRO,
    COST_HEADING,
    COST_INTRO,
    PUBLISHED_HEADING,
    PUBLISHED_INTRO,
    PUBLISHED_OBSERVED_HEADERS,
    PUBLISHED_PAIRS_HEADERS,
    RIVALS_HEADERS,
    RIVALS_HEADING,
    RIVALS_INTRO,
    agreement_table_rows,
    claims_lines,
    claims_table_rows,
    cost_table_rows,
    diagnosticity_table_rows,
    degenerate_banner,
    format_number,
    legend,
    overall_table_rows,
    provenance_rows,
    published_lines,
    published_observed_rows,
    published_pairs_rows,
    rivals_lines,
    rivals_table_rows,
    task_provenance_rows,
    task_table_rows,
)

if TYPE_CHECKING:
    from effbench.leaderboard.ranking import BuildResult
    from effbench.leaderboard.records import BoardRecord

AOPC_METRICS = ("necessity", "sufficiency")
HEATMAP_EXAMPLES = 3
HEATMAP_MAX_TOKENS = 60
PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22",
           "#17becf", "#393b79", "#637939")

STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; margin: 2em auto; max-width: 1150px;
       padding: 0 1em; color: #222; line-height: 1.4; }
h1 { margin-bottom: 0.2em; } h2 { border-bottom: 1px solid #ccc; padding-bottom: 0.2em; margin-top: 2em; }
table { border-collapse: collapse; margin: 0.8em 0; font-size: 13px; }
th, td { border: 1px solid #ddd; padding: 3px 7px; text-align: left; vertical-align: top; }
th { background: #f3f3f3; }
td.best { font-weight: bold; }
.num { font-variant-numeric: tabular-nums; }
.scroll { overflow-x: auto; }
.charts { display: flex; flex-wrap: wrap; gap: 12px; }
svg { background: #fff; border: 1px solid #eee; }
svg text { font-family: inherit; font-size: 11px; fill: #222; }
svg .title { font-size: 13px; font-weight: bold; }
.note { color: #666; font-style: italic; }
.warning { background: #fff3cd; border: 1px solid #e0a800; padding: 0.6em 0.8em; font-weight: bold; }
.tok { padding: 1px 2px; margin: 0 1px; border-radius: 2px; display: inline-block; }
table.heat td { line-height: 1.9; }
table.heat th { vertical-align: middle; white-space: nowrap; }
table.task-provenance td { word-break: break-all; }
pre { background: #f7f7f7; padding: 0.8em; overflow-x: auto; font-size: 12px; }
code { font-size: 12px; }
"""


def esc(value: object) -> str:
    return html.escape(str(value), quote=True)


def _colours(names: Sequence[str]) -> dict[str, str]:
    colours = {}
    for index, name in enumerate(names):
        colours[name] = PALETTE[index] if index < len(PALETTE) else f"hsl({(index * 47) % 360}, 55%, 45%)"
    return colours


def _nice_ticks(low: float, high: float, count: int = 5) -> list[float]:
    """About `count` round tick values covering [low, high]."""
    span = high - low
    raw_step = span / max(1, count - 1)
    magnitude = 10 ** math.floor(math.log10(raw_step))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw_step)
    first = math.ceil(low / step - 1e-9) * step
    ticks = []
    value = first
    while value <= high + 1e-9 * span:
        ticks.append(0.0 if abs(value) < 1e-12 else round(value, 10))
        value += step
    return ticks


def _tick_label(value: float) -> str:
    return f"{value:g}"


def _axis_range(values: list[float], padding_fraction: float) -> tuple[float, float]:
    """An axis from min(0, values) to max(0, values), one unit wide when flat, padded on both sides."""
    low, high = min([0.0, *values]), max([0.0, *values])
    if high - low < 1e-12:
        high = low + 1.0
    padding = padding_fraction * (high - low)
    return low - padding, high + padding


def bar_chart(title: str, bars: Sequence[tuple[str, float, float, float, str]]) -> str:
    """Horizontal bars (label, mean, low, high, colour) with interval whiskers; non-finite means show 'n/a'."""
    width, label_width, value_width, row_height, top, bottom = 560, 150, 70, 20, 40, 26
    plot_left, plot_right = label_width + 8, width - value_width
    height = top + row_height * len(bars) + bottom
    numbers = [v for _, mean, low, high, _ in bars for v in (mean, low, high) if math.isfinite(v)]
    low_end, high_end = _axis_range(numbers, padding_fraction=0.04)

    def x(value: float) -> float:
        return plot_left + (value - low_end) / (high_end - low_end) * (plot_right - plot_left)

    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" role="img" '
             f'aria-label="{esc(title)}" class="chart bar-chart">',
             f'<text class="title" x="8" y="18">{esc(title)}</text>']
    axis_y = top + row_height * len(bars)
    for tick in _nice_ticks(low_end, high_end):
        tx = x(tick)
        parts.append(f'<line x1="{tx:.1f}" y1="{top - 6}" x2="{tx:.1f}" y2="{axis_y}" stroke="#eee"/>')
        parts.append(f'<text x="{tx:.1f}" y="{axis_y + 15}" text-anchor="middle">{esc(_tick_label(tick))}</text>')
    zero = x(0.0)
    parts.append(f'<line x1="{zero:.1f}" y1="{top - 6}" x2="{zero:.1f}" y2="{axis_y}" stroke="#888"/>')
    for index, (label, mean, low, high, colour) in enumerate(bars):
        y = top + row_height * index
        middle = y + row_height / 2
        parts.append(f'<text x="{label_width}" y="{middle + 4:.1f}" text-anchor="end">{esc(label)}</text>')
        if not math.isfinite(mean):
            parts.append(f'<text x="{plot_left + 4}" y="{middle + 4:.1f}" class="note">n/a</text>')
            continue
        left, right = sorted((zero, x(mean)))
        parts.append(f'<rect x="{left:.1f}" y="{y + 4}" width="{max(right - left, 0.5):.1f}" height="{row_height - 8}" '
                     f'fill="{colour}" fill-opacity="0.75"><title>{esc(label)}: {esc(format_number(mean))}</title></rect>')
        if math.isfinite(low) and math.isfinite(high):
            x_low, x_high = x(low), x(high)
            parts.append(f'<line x1="{x_low:.1f}" y1="{middle:.1f}" x2="{x_high:.1f}" y2="{middle:.1f}" stroke="#222"/>')
            for cap in (x_low, x_high):
                parts.append(f'<line x1="{cap:.1f}" y1="{middle - 5:.1f}" x2="{cap:.1f}" y2="{middle + 5:.1f}" stroke="#222"/>')
        parts.append(f'<text x="{plot_right + 6}" y="{middle + 4:.1f}">{esc(format_number(mean))}</text>')
    parts.append("</svg>")
    return "".join(parts)


def line_chart(title: str, series: Sequence[tuple[str, str, list[tuple[float, float]]]], x_label: str,
               y_label: str) -> str:
    """Lines with point markers, one per (label, colour, points), and a legend on the right."""
    width, height = 560, max(260, 60 + 16 * len(series))
    plot_left, plot_right, plot_top, plot_bottom = 52, 370, 34, height - 40
    xs = [px for _, _, points in series for px, _ in points]
    ys = [py for _, _, points in series for _, py in points]
    x_low, x_high = 0.0, max(xs)
    if x_high <= x_low:
        x_high = x_low + 1.0
    y_low, y_high = _axis_range(ys, padding_fraction=0.05)

    def sx(value: float) -> float:
        return plot_left + (value - x_low) / (x_high - x_low) * (plot_right - plot_left)

    def sy(value: float) -> float:
        return plot_bottom - (value - y_low) / (y_high - y_low) * (plot_bottom - plot_top)

    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" role="img" '
             f'aria-label="{esc(title)}" class="chart line-chart">',
             f'<text class="title" x="8" y="18">{esc(title)}</text>']
    for tick in _nice_ticks(y_low, y_high):
        ty = sy(tick)
        parts.append(f'<line x1="{plot_left}" y1="{ty:.1f}" x2="{plot_right}" y2="{ty:.1f}" stroke="#eee"/>')
        parts.append(f'<text x="{plot_left - 4}" y="{ty + 4:.1f}" text-anchor="end">{esc(_tick_label(tick))}</text>')
    for tick in _nice_ticks(x_low, x_high):
        tx = sx(tick)
        parts.append(f'<line x1="{tx:.1f}" y1="{plot_top}" x2="{tx:.1f}" y2="{plot_bottom}" stroke="#eee"/>')
        parts.append(f'<text x="{tx:.1f}" y="{plot_bottom + 14}" text-anchor="middle">{esc(_tick_label(tick))}</text>')
    parts.append(f'<line x1="{plot_left}" y1="{sy(0.0):.1f}" x2="{plot_right}" y2="{sy(0.0):.1f}" stroke="#888"/>')
    parts.append(f'<text x="{(plot_left + plot_right) / 2:.1f}" y="{height - 8}" text-anchor="middle">{esc(x_label)}</text>')
    parts.append(f'<text x="12" y="{(plot_top + plot_bottom) / 2:.1f}" text-anchor="middle" '
                 f'transform="rotate(-90 12 {(plot_top + plot_bottom) / 2:.1f})">{esc(y_label)}</text>')
    for index, (label, colour, points) in enumerate(series):
        coordinates = " ".join(f"{sx(px):.1f},{sy(py):.1f}" for px, py in points)
        parts.append(f'<polyline points="{coordinates}" fill="none" stroke="{colour}" stroke-width="1.8"/>')
        for px, py in points:
            parts.append(f'<circle cx="{sx(px):.1f}" cy="{sy(py):.1f}" r="2.5" fill="{colour}">'
                         f'<title>{esc(label)}: {esc(_tick_label(px))} -> {esc(format_number(py))}</title></circle>')
        legend_y = plot_top + 16 * index
        parts.append(f'<line x1="{plot_right + 14}" y1="{legend_y:.1f}" x2="{plot_right + 34}" y2="{legend_y:.1f}" '
                     f'stroke="{colour}" stroke-width="3"/>')
        parts.append(f'<text x="{plot_right + 40}" y="{legend_y + 4:.1f}">{esc(label)}</text>')
    parts.append("</svg>")
    return "".join(parts)


def html_table(headers: Sequence[str], rows: Sequence[Sequence[str]], *, css_class: str = "",
               result_cells: bool = False) -> str:
    """A table. With `result_cells`, the cells after the first are `format_cell` texts: shown with the mean
    on its own line and "[low, high] #rank marks" unbroken below it, in bold where the rank is #1."""
    head = "".join(f"<th>{esc(h)}</th>" for h in headers)
    body = []
    for row in rows:
        cells = []
        for index, cell in enumerate(row):
            text = esc(cell)
            classes = []
            if index > 0:
                classes.append("num")
            if result_cells and index > 0:
                text = text.replace(" [", "<br>[", 1).replace(" ", "\u00a0")
                if " #1 " in f"{cell} ":
                    classes.append("best")
            cells.append(f'<td class="{" ".join(classes)}">{text}</td>' if classes else f"<td>{text}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return (f'<div class="scroll"><table class="{esc(css_class)}"><thead><tr>{head}</tr></thead>'
            f'<tbody>{"".join(body)}</tbody></table></div>')


def _aopc_curve(record: BoardRecord, metric: str) -> list[tuple[float, float]] | None:
    """Mean over examples of each bin's p(y|x) - p(y|perturbed), from per-example details; None if absent."""
    sums: dict[float, float] = {}
    counts: dict[float, int] = {}
    for row in record.rows:
        bins = row["metrics"].get(metric, {}).get("details", {}).get("bins")
        if not isinstance(bins, dict):
            continue
        for key, value in bins.items():
            try:
                fraction, number = float(key), float(value)
            except (TypeError, ValueError):
                continue
            if math.isfinite(fraction) and math.isfinite(number):
                sums[fraction] = sums.get(fraction, 0.0) + number
                counts[fraction] = counts.get(fraction, 0) + 1
    if not sums:
        return None
    return [(fraction, sums[fraction] / counts[fraction]) for fraction in sorted(sums)]


def _aopc_section(result: BuildResult, task: str, colours: dict[str, str]) -> list[str]:
    parts = []
    for metric in AOPC_METRICS:
        if metric not in result.metrics:
            continue
        series, skipped = [], []
        for explainer in result.ranked_explainers(task):
            record = result.records[task][explainer]
            curve = _aopc_curve(record, metric) if metric in record.record["results"] else None
            if curve:
                series.append((explainer, colours[explainer], curve))
            else:
                skipped.append(explainer)
        if series:
            title = f"{task}: {metric} per bin (AOPC curve, mean over examples)"
            parts.append(line_chart(title, series, "fraction of tokens (top-k bin)", "p(y|x) − p(y|perturbed)"))
        if skipped:
            parts.append(f'<p class="note">No {esc(metric)} curve for {esc(", ".join(skipped))} on {esc(task)}: '
                         f'their per-example rows carry no per-bin values (metrics.{esc(metric)}.details.bins).</p>')
    return parts


def _token_colour(value: float) -> str:
    """Red for positive, blue for negative display scores in [-1, 1]."""
    alpha = min(1.0, abs(value)) * 0.85
    rgb = "214, 39, 40" if value >= 0 else "31, 119, 180"
    return f"rgba({rgb}, {alpha:.2f})"


def _heatmap_row(tokens: Sequence[str], scores: Sequence[float | None]) -> str:
    numbers = [float("nan") if s is None else float(s) for s in scores]
    largest = max((abs(s) for s in numbers if math.isfinite(s)), default=0.0)
    spans = []
    for token, score in list(zip(tokens, numbers))[:HEATMAP_MAX_TOKENS]:
        shown = score / largest if largest > 0 and math.isfinite(score) else 0.0
        spans.append(f'<span class="tok" style="background:{_token_colour(shown)}" '
                     f'title="{esc(format_number(score, 4))}">{esc(token)}</span>')
    if len(tokens) > HEATMAP_MAX_TOKENS:
        spans.append(f'<span class="note">… {len(tokens) - HEATMAP_MAX_TOKENS} more tokens</span>')
    return "".join(spans)


def class_names(record: dict) -> list[str] | None:
    """A run record's class names in class order, or None when it cannot tell.

    Records carry them in task.labels; for older ones, the task card of that name is read, if it is the
    very card the record was made with (same card_hash).
    """
    labels = record["task"].get("labels")
    if labels is not None:
        return labels
    from effbench.tasks.card import get_card, task_names

    name = record["task"]["name"]
    try:
        card = get_card(name) if name in task_names() else None
    except EffbenchError:
        return None
    return list(card.labels) if card is not None and card.card_hash == record["task"]["card_hash"] else None


def class_text(value: object, names: Sequence[str] | None) -> str:
    """A class number as its name where the names are known, else as the number."""
    known = names is not None and isinstance(value, int) and not isinstance(value, bool) and 0 <= value < len(names)
    return names[value] if known else str(value)


def _heatmap_section(result: BuildResult) -> list[str]:
    """Token heat maps for a few examples of the first task whose rows carry tokens and scores."""
    for task in result.board.tasks:
        explainers = result.ranked_explainers(task) if task in result.records else []
        rows_by_explainer = {e: {row["example_id"]: row for row in result.records[task][e].rows} for e in explainers}
        with_tokens = [e for e in explainers if any("tokens" in row for row in rows_by_explainer[e].values())]
        if not with_tokens:
            continue
        first_rows = list(rows_by_explainer[with_tokens[0]].values())
        # prefer short examples, which fit on a line; keep the record's order otherwise
        chosen = sorted(first_rows, key=lambda row: not 4 <= len(row.get("tokens") or []) <= 40)[:HEATMAP_EXAMPLES]
        parts = [f"<h2>Token heat maps: {esc(task)}</h2>",
                 '<p class="note">Each explainer\'s scores, divided by their largest absolute value within the '
                 "example (for display only; metrics never normalise): red positive, blue negative. "
                 "Hover a token for its raw score.</p>"]
        names = class_names(result.records[task][with_tokens[0]].record)
        for example in chosen:
            example_id = example["example_id"]
            parts.append(f'<h3>example {esc(example_id)} (label {esc(class_text(example.get("label"), names))}, '
                         f'model predicts {esc(class_text(example.get("target"), names))})</h3>')
            table_rows = []
            for explainer in with_tokens:
                row = rows_by_explainer[explainer].get(example_id)
                if row is None or "tokens" not in row:
                    continue
                table_rows.append(f"<tr><th>{esc(explainer)}</th><td>{_heatmap_row(row['tokens'], row['scores'])}</td></tr>")
            parts.append(f'<table class="heat"><tbody>{"".join(table_rows)}</tbody></table>')
        return parts
    return ['<p class="note">No token heat maps: no record carries per-example tokens and scores.</p>']


def render_html(result: BuildResult) -> str:
    board = result.board
    colours = _colours(list(board.explainers) + [e for t in result.records.values() for e in t if e not in board.explainers])
    body = [f"<h1>effbench leaderboard: {esc(board.name)}</h1>", f"<p>{esc(board.description)}</p>",
            "<h2>Legend</h2><ul>" + "".join(f"<li>{esc(item)}</li>" for item in legend(board)) + "</ul>",
            "<h2>Overall</h2>", html_table(*overall_table_rows(result), css_class="overall")]
    for task in board.tasks:
        if task not in result.records:
            continue
        p = result.task_provenance[task]
        body.append(f'<h2 id="task-{esc(task)}">Task: {esc(task)}</h2>')
        banner = degenerate_banner(task, p)
        if banner:
            body.append(f'<p class="warning degenerate">{esc(banner)}</p>')
        body.append(f"<p>Task version {esc(p['version'])}, data sha256 <code>{esc(p['data_hash'])}</code>; model "
                    f"{esc(p['model'])}, checkpoint sha256 <code>{esc(p['checkpoint_sha256'])}</code>, test accuracy "
                    f"{esc(format_number(p['test_accuracy']))}; {esc(p['evaluated'])} of {esc(p['test_examples'])} test "
                    "examples evaluated.</p>")
        body.append(html_table(*task_table_rows(result, task), css_class="task-table", result_cells=True))
        charts = []
        for metric in metric_order(board, result.metrics):
            direction = result.metrics[metric]["direction"]
            bars = []
            for explainer in result.ranked_explainers(task):
                standing = result.standing(task, explainer, metric)
                if standing is not None:
                    bars.append((explainer, standing.mean, standing.low, standing.high, colours[explainer]))
            if bars:
                title = f"{task}: {metric} {ARROWS[direction]} ({direction} is better), mean and 95% CI"
                charts.append(bar_chart(title, bars))
        charts += _aopc_section(result, task, colours)
        body.append('<div class="charts">' + "".join(charts) + "</div>")
    body += [f'<h2 id="claims">{esc(CLAIMS_HEADING)}</h2>', f"<p>{esc(CLAIMS_INTRO)}</p>",
             '<ul class="claims">' + "".join(f"<li>{esc(line)}</li>" for line in claims_lines(result)) + "</ul>"]
    if result.claims.rows:
        body.append(html_table(CLAIMS_HEADERS, claims_table_rows(result), css_class="claims-table"))
    body += [f'<h2 id="rivals">{esc(RIVALS_HEADING)}</h2>', f"<p>{esc(RIVALS_INTRO)}</p>",
             '<ul class="rivals">' + "".join(f"<li>{esc(line)}</li>" for line in rivals_lines(result)) + "</ul>"]
    if result.rivals.rows:
        body.append(html_table(RIVALS_HEADERS, rivals_table_rows(result), css_class="rivals-table"))
    if result.published.entries:
        body += [f'<h2 id="published">{esc(PUBLISHED_HEADING)}</h2>', f"<p>{esc(PUBLISHED_INTRO)}</p>",
                 '<ul class="published">' + "".join(f"<li>{esc(line)}</li>" for line in published_lines(result))
                 + "</ul>"]
        if result.published.tasks:
            body += [html_table(PUBLISHED_OBSERVED_HEADERS, published_observed_rows(result),
                                css_class="published-observed-table"),
                     html_table(PUBLISHED_PAIRS_HEADERS, published_pairs_rows(result), css_class="published-table")]
    if result.agreement or result.diagnosticity:
        body += [f'<h2 id="agreement">{esc(AGREEMENT_HEADING)}</h2>', f"<p>{esc(AGREEMENT_INTRO)}</p>"]
        if result.agreement:
            body.append(html_table(*agreement_table_rows(result), css_class="agreement-table"))
        if result.diagnosticity:
            body.append(html_table(*diagnosticity_table_rows(result), css_class="diagnosticity-table"))
    if result.cost:
        body += [f'<h2 id="cost">{esc(COST_HEADING)}</h2>', f"<p>{esc(COST_INTRO)}</p>",
                 html_table(*cost_table_rows(result), css_class="cost-table")]
    body += _heatmap_section(result)
    metric_rows = [[name, ARROWS[info["direction"]], str(info["version"]), info["family"],
                    f"[{info['range'][0]}, {info['range'][1]}]", json.dumps(info["params"], sort_keys=True)]
                   for name, info in ((n, result.metrics[n]) for n in metric_order(board, result.metrics))]
    body += ["<h2>Metrics</h2>", html_table(["metric", "better", "version", "family", "range", "parameters"], metric_rows),
             "<h2>Provenance</h2>", html_table(["", "value"], provenance_rows(result), css_class="provenance"),
             html_table(*task_provenance_rows(result), css_class="task-provenance")]
    if result.notes:
        body.append("<h2>Notes</h2><ul>" + "".join(f"<li>{esc(note)}</li>" for note in result.notes) + "</ul>")
    body += ["<h2>Citation</h2>", "<pre>" + esc("\n\n".join(result.citations)) + "</pre>"]
    return (
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
        "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'\">\n"
        "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
        f"<title>effbench leaderboard: {esc(board.name)}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n"
        + "\n".join(body) + "\n</body>\n</html>\n"
    )
