"""Identifiability diagnostics: where Brunner's non-identifiability bites and what efficient attention removes.

For every layer, over the readout rows of all (example, head) pairs (the rows the `cls` readout reads:
[CLS] for encoders, the last real token for decoders, each over the tokens it may attend to),
`diagnose` reports the measures shared/spec/efficient-attention.md asks for:

- the null-space dimension n - rank([T | 1]) (min / median / max over pairs), and the share of pairs where
  it is positive, so that C(a) is more than {a};
- the share of pairs where efficient attention (`sparse`) differs from raw attention (total variation
  above 1e-6), the mean support of `sparse` (entries above 1e-9), and the total variation distance between
  raw and efficient rows (mean and max for `sparse`, mean for `minnorm`);
- for effective attention (P_T a): the mean negative mass (sum of its negative entries' magnitudes) and
  the range of its row sums;
- for decoders, the attention-sink columns: the mean mass on the first token of the raw rows and of the
  efficient rows (`sparse`, `minnorm`); a value-aware method drops sink mass that does not change the output.

A last row pools all layers.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from effbench.models.adapter import ClassifierAdapter
    from effbench.types import Example

CHANGED_ABOVE = 1e-6  # total variation above which an efficient row counts as different from the raw one
SUPPORT_ABOVE = 1e-9  # entries above which count towards the support of a `sparse` row

LEGEND = """null dim: n - rank([T | 1]) over (example, head) pairs at the readout row; C(a) != {a}: share of pairs where it is > 0
efficient != raw: share of pairs whose sparse efficient row differs from the raw row (TV > 1e-6)
support: mean number of tokens with weight > 1e-9 in the sparse efficient row
TV: total variation distance between the raw and the efficient row (sparse: mean, max; minnorm: mean)
effective: mean negative mass and the range of the row sums of effective attention P_T a
first-token mass (decoders): mean weight of the first token in the raw and the efficient rows (attention sinks)"""


def diagnose(model: ClassifierAdapter, examples: Sequence[Example], batch_size: int = 16,
             progress: bool = True) -> list[dict[str, Any]]:
    """One row per layer and a pooled row: see the module docstring. Values are plain floats and ints."""
    from tqdm.auto import tqdm

    from effbench.explainers.attention import effective_rows, head_bases, readout_spans
    from effbench.explainers.efficient import efficient_rows

    heads = list(range(model.num_heads))
    measures: dict[int, dict[str, list[float]]] = {layer: {} for layer in range(model.num_layers)}
    starts = range(0, len(examples), batch_size)
    for start in tqdm(starts, desc="diagnose", unit="batch", disable=not progress):
        batch = model.make_batch(examples[start: start + batch_size])
        lengths = batch.attention_mask.sum(1).tolist()
        forward = model.batch_forward(batch)
        for layer in range(model.num_layers):
            probs = forward.attentions[layer].double().cpu().numpy()
            spans = readout_spans(model, layer, lengths)
            raw = [probs[example][:, [model.readout_position(lengths[example])], start:stop] for example, start, stop in spans]
            bases = head_bases(model, forward, layer, spans, heads)
            sparse = efficient_rows(bases, raw, canonical="sparse", device=model.device)
            minnorm = efficient_rows(bases, raw, canonical="minnorm")
            effective = effective_rows(bases, raw)
            collected = measures[layer]
            for example, (_, start, stop) in enumerate(spans):
                _collect(collected, stop - start, bases.with_ones[example], raw[example][:, 0], sparse[example][:, 0],
                         minnorm[example][:, 0], effective[example][:, 0], sees_first_token=start == 0)
    rows = [_summary(str(layer), collected, sinks=model.architecture.causal) for layer, collected in measures.items()]
    pooled: dict[str, list[float]] = {}
    for collected in measures.values():
        for key, values in collected.items():
            pooled.setdefault(key, []).extend(values)
    rows.append(_summary("all", pooled, sinks=model.architecture.causal))
    return rows


def _collect(collected: dict[str, list[float]], n: int, bases: list[np.ndarray], raw: np.ndarray,
             sparse: np.ndarray, minnorm: np.ndarray, effective: np.ndarray, *, sees_first_token: bool) -> None:
    """Add one example's per-head measures ([H, n] rows over the readout row's span) to `collected`."""
    tv_sparse = 0.5 * np.abs(sparse - raw).sum(-1)
    first = (lambda rows: rows[:, 0]) if sees_first_token else (lambda rows: np.zeros(len(rows)))
    values = {
        "null_dim": [n - basis.shape[1] for basis in bases],
        "tv_sparse": tv_sparse,
        "changed": tv_sparse > CHANGED_ABOVE,
        "support": (sparse > SUPPORT_ABOVE).sum(-1),
        "tv_minnorm": 0.5 * np.abs(minnorm - raw).sum(-1),
        "negative_mass": np.clip(-effective, 0, None).sum(-1),
        "row_sum": effective.sum(-1),
        "first_raw": first(raw),
        "first_sparse": first(sparse),
        "first_minnorm": first(minnorm),
    }
    for key, value in values.items():
        collected.setdefault(key, []).extend(np.asarray(value, dtype=float).tolist())


def _summary(layer: str, collected: dict[str, list[float]], *, sinks: bool) -> dict[str, Any]:
    null_dim = np.array(collected["null_dim"])
    row = {
        "layer": layer,
        "pairs": len(null_dim),
        "null dim min": int(null_dim.min()),
        "null dim median": float(np.median(null_dim)),
        "null dim max": int(null_dim.max()),
        "C(a) != {a}": float((null_dim > 0).mean()),
        "efficient != raw": float(np.mean(collected["changed"])),
        "sparse support": float(np.mean(collected["support"])),
        "TV sparse mean": float(np.mean(collected["tv_sparse"])),
        "TV sparse max": float(np.max(collected["tv_sparse"])),
        "TV minnorm mean": float(np.mean(collected["tv_minnorm"])),
        "effective negative mass": float(np.mean(collected["negative_mass"])),
        "effective row sum min": float(np.min(collected["row_sum"])),
        "effective row sum max": float(np.max(collected["row_sum"])),
    }
    if sinks:  # decoders: how much of the first token's (attention sink's) mass efficient attention keeps
        row["first-token mass raw"] = float(np.mean(collected["first_raw"]))
        row["first-token mass sparse"] = float(np.mean(collected["first_sparse"]))
        row["first-token mass minnorm"] = float(np.mean(collected["first_minnorm"]))
    return row


def format_diagnostics(rows: list[dict[str, Any]]) -> str:
    """The rows as a table (tabulate), with a legend."""
    from tabulate import tabulate

    return tabulate(rows, headers="keys", tablefmt="github", floatfmt=".3g") + "\n\n" + LEGEND
