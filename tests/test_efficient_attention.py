"""The checks of shared/spec/efficient-attention.md, on the tiny model (its attention sharpened, see
`sharp_tiny_adapter`) and, marked slow, on MiniLM.

Every model input here includes examples longer than 33 tokens, where rank([T | 1]) < n and C(a) is
more than the single point a.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from effbench.explainers import get_explainer
from effbench.explainers.attention import effective_rows, full_spans, head_bases
from effbench.explainers.efficient import ConstrainedRows, efficient_rows, solve_minnorm, solve_sparse
from effbench.types import Example

LONG_TEXTS = [
    "the film is a delight from start to finish and the cast is wonderful , but the plot is thin , the script is "
    "lazy in places , and the ending never finds its footing , which is a pity for a warm funny film about "
    "friendship , loss and starting over again",
    "nothing here works : not the story , not the music , not the ending , not the cast , and not even the jokes "
    "that the trailer promised , so the two hours feel like four and the good scenes are lost in a tedious mess",
    "beautifully shot , smartly written , and acted with real conviction , this honest moving portrait of a family "
    "in trouble earns every one of its tears and never once asks for them",
]
SHORT_TEXT = "a delight"
CANONICALS = ["sparse", "minnorm"]


@pytest.fixture(scope="session")
def sharp_tiny_adapter(tiny_adapter):
    """The tiny model with query and key weights x8 (peaked attention) and value and output weights x4.

    The random tiny model attends almost uniformly and its logits barely depend on the attention rows:
    replacing every row by the uniform one moves them by a few 1e-4 of their size, so the invariance
    checks could hardly fail on it. Here the same replacement moves them by roughly 30%.
    """
    import copy

    from effbench.models.adapter import ClassifierAdapter

    model = copy.deepcopy(tiny_adapter.model)
    with torch.no_grad():
        for layer in model.base_model.encoder.layer:
            layer.attention.self.query.weight.mul_(8.0)
            layer.attention.self.key.weight.mul_(8.0)
            layer.attention.self.value.weight.mul_(4.0)
            layer.attention.output.dense.weight.mul_(4.0)
    return ClassifierAdapter(model, tiny_adapter.tokenizer, max_length=tiny_adapter.max_length, name="tiny-sharpened")


@pytest.fixture(params=["sharp_tiny", pytest.param("minilm", marks=pytest.mark.slow)])
def adapter(request):
    return request.getfixturevalue(f"{request.param}_adapter")


@pytest.fixture()
def long_batch(adapter):
    examples = [Example(id=f"long-{i}", text=text, label=0) for i, text in enumerate(LONG_TEXTS)]
    examples.append(Example(id="short", text=SHORT_TEXT, label=0))
    batch = adapter.make_batch(examples)
    assert batch.attention_mask.sum(1).max() > adapter.head_dim + 1
    return batch


def lengths_of(batch) -> list[int]:
    return batch.attention_mask.sum(1).tolist()


def layer_rows(adapter, forward, layer: int, lengths: list[int], *, all_queries: bool) -> list[np.ndarray]:
    probs = forward.attentions[layer].double().numpy()
    return [probs[b, :, : (n if all_queries else 1), :n] for b, n in enumerate(lengths)]


def efficient_layers(adapter, batch, canonical: str, *, all_layers: bool):
    """The forward pass and, per layer to replace, the efficient rows of every example."""
    lengths = lengths_of(batch)
    heads = list(range(adapter.num_heads))
    with torch.no_grad():
        forward = adapter.forward(batch.input_ids, batch.attention_mask)
    layers = range(adapter.num_layers) if all_layers else [adapter.num_layers - 1]
    replaced = {}
    for layer in layers:
        bases = head_bases(adapter, forward, layer, full_spans(lengths), heads)
        rows = layer_rows(adapter, forward, layer, lengths, all_queries=all_layers)
        replaced[layer] = (rows, efficient_rows(bases, rows, canonical=canonical), bases)
    return forward, replaced


def logits_with_rows(adapter, batch, replacement: dict[int, list[np.ndarray]]) -> torch.Tensor:
    """Logits with the attention rows of `replacement[layer][b]` ([H, q, n]: the first q query rows)."""

    def override(layer: int, probs: torch.Tensor) -> torch.Tensor:
        if layer not in replacement:
            return probs
        probs = probs.clone()
        for b, rows in enumerate(replacement[layer]):
            queries, n = rows.shape[1], rows.shape[2]
            probs[b, :, :queries, :n] = torch.from_numpy(rows).to(probs.dtype)
        return probs

    with torch.no_grad(), adapter.attention_override(override):
        return adapter.logits(batch.input_ids, batch.attention_mask)


def total_variation(first: np.ndarray, second: np.ndarray) -> float:
    return 0.5 * float(np.abs(first - second).sum(-1).max())


# ---- 1. output invariance --------------------------------------------------------------------------


@pytest.mark.parametrize("canonical", CANONICALS)
@pytest.mark.parametrize("all_layers", [False, True], ids=["cls_row", "all_rows_all_layers"])
def test_efficient_rows_leave_the_logits_unchanged(adapter, long_batch, canonical, all_layers):
    forward, replaced = efficient_layers(adapter, long_batch, canonical, all_layers=all_layers)
    logits = logits_with_rows(adapter, long_batch, {layer: efficient for layer, (_, efficient, _) in replaced.items()})
    scale = forward.logits.abs().max()
    assert (logits - forward.logits).abs().max() <= 1e-4 * scale
    # the rows did change: the check is not passed by replacing a by a
    raw, efficient, _ = replaced[adapter.num_layers - 1]
    assert max(total_variation(r, e) for r, e in zip(raw, efficient)) > 1e-2


def test_the_invariance_check_can_fail(adapter, long_batch):
    """[CLS] rows that are distributions but not in C(a) move the logits far beyond the tolerance."""
    with torch.no_grad():
        forward = adapter.forward(long_batch.input_ids, long_batch.attention_mask)
    uniform = [np.full((adapter.num_heads, 1, n), 1.0 / n) for n in lengths_of(long_batch)]
    logits = logits_with_rows(adapter, long_batch, {adapter.num_layers - 1: uniform})
    assert (logits - forward.logits).abs().max() > 1e-2 * forward.logits.abs().max()


# ---- 2. distribution, 5. support ---------------------------------------------------------------------


@pytest.mark.parametrize("canonical", CANONICALS)
def test_efficient_rows_are_distributions(adapter, long_batch, canonical):
    _, replaced = efficient_layers(adapter, long_batch, canonical, all_layers=True)
    for _, efficient, _ in replaced.values():
        for rows in efficient:
            assert rows.min() >= -1e-6
            assert np.abs(rows.sum(-1) - 1).max() <= 1e-5


def test_sparse_rows_have_at_most_rank_nonzeros_and_are_optimal(adapter, long_batch):
    _, replaced = efficient_layers(adapter, long_batch, "sparse", all_layers=False)
    raw, efficient, bases = replaced[adapter.num_layers - 1]
    solved = 0
    for example_raw, example_rows, example_bases in zip(raw, efficient, bases.with_ones):
        for a, x, basis in zip(example_raw[:, 0], example_rows[:, 0], example_bases):
            n, m = basis.shape
            assert (x > 1e-9).sum() <= m
            if m < n:  # the LP optimum: no member of C(a) has a lower cost (HiGHS as the reference)
                normalised = a / a.sum()
                reference = solve_sparse([ConstrainedRows(basis, normalised[None])], solver="highs")[0][0]
                cost = -np.log(np.maximum(normalised, 1e-12))
                assert x @ cost <= reference @ cost + 1e-6
                assert np.abs(basis.T @ (x - normalised)).max() <= 1e-9
                solved += 1
    assert solved > 0


# ---- 3. identifiability of minnorm -------------------------------------------------------------------


def test_minnorm_gives_one_row_per_head_output(adapter, long_batch):
    """Move a halfway to the sparse vertex of C(a): a + (x_sparse - a) / 2 is non-negative and in C(a)
    (x_sparse - a lies in the null space of [T | 1]^T), yet far from a; minnorm must not move."""
    forward, replaced = efficient_layers(adapter, long_batch, "minnorm", all_layers=False)
    raw, efficient, bases = replaced[adapter.num_layers - 1]
    distances = []
    for example_raw, example_rows, example_bases in zip(raw, efficient, bases.with_ones):
        for a, x, basis in zip(example_raw[:, 0], example_rows[:, 0], example_bases):
            n, m = basis.shape
            if m == n:
                continue
            a = a / a.sum()
            vertex = solve_sparse([ConstrainedRows(basis, a[None])])[0][0]
            other = a + 0.5 * (vertex - a)
            assert other.min() >= 0 and np.abs(basis.T @ (other - a)).max() <= 1e-12
            again = solve_minnorm([ConstrainedRows(basis, other[None])])[0][0]
            assert np.abs(again - x).max() <= 1e-6
            distances.append(total_variation(other, a))
    assert max(distances) > 1e-2  # some rows moved far


def test_sparse_and_minnorm_on_a_problem_solved_by_hand():
    """n = 3, T = t = (0, 1, 2), a = (0.2, 0.5, 0.3): C(a) is the segment between the vertices
    (0, 0.9, 0.1) (cost 0.744) and (0.45, 0, 0.55) (cost 1.386); its least-norm point is (17, 20, 23) / 60."""
    basis, _ = np.linalg.qr(np.column_stack([[0.0, 1.0, 2.0], np.ones(3)]))
    a = np.array([[0.2, 0.5, 0.3]])
    for solver in ("batched", "highs"):
        sparse = solve_sparse([ConstrainedRows(basis, a)], solver=solver)[0][0]
        assert np.allclose(sparse, [0.0, 0.9, 0.1], atol=1e-12)
    minnorm = solve_minnorm([ConstrainedRows(basis, a)])[0][0]
    assert np.allclose(minnorm, np.array([17.0, 20.0, 23.0]) / 60, atol=1e-12)


# ---- 4. the trivial case -----------------------------------------------------------------------------


@pytest.mark.parametrize("canonical", CANONICALS)
def test_efficient_equals_raw_when_rank_is_n(adapter, canonical):
    batch = adapter.make_batch([Example(id="short", text=SHORT_TEXT, label=0), Example(id="shorter", text="dull", label=1)])
    lengths = lengths_of(batch)
    with torch.no_grad():
        forward = adapter.forward(batch.input_ids, batch.attention_mask)
    layer = adapter.num_layers - 1
    bases = head_bases(adapter, forward, layer, full_spans(lengths), list(range(adapter.num_heads)))
    assert all(basis.shape == (n, n) for n, example in zip(lengths, bases.with_ones) for basis in example)
    rows = layer_rows(adapter, forward, layer, lengths, all_queries=True)
    for raw, efficient in zip(rows, efficient_rows(bases, rows, canonical=canonical)):
        assert np.array_equal(raw, efficient)
    explained = get_explainer("efficient_attention", canonical=canonical).explain(adapter, batch).scores
    assert torch.equal(explained, get_explainer("raw_attention").explain(adapter, batch).scores)


# ---- 6. effective attention ---------------------------------------------------------------------------


def test_effective_attention_is_the_projection_onto_col_T_and_changes_no_logit(adapter, long_batch):
    lengths = lengths_of(long_batch)
    heads = list(range(adapter.num_heads))
    with torch.no_grad():
        forward = adapter.forward(long_batch.input_ids, long_batch.attention_mask)
    replacement = {}
    eps = torch.finfo(adapter.dtype).eps
    for layer in range(adapter.num_layers):
        rows = layer_rows(adapter, forward, layer, lengths, all_queries=True)
        effective = effective_rows(head_bases(adapter, forward, layer, full_spans(lengths), heads), rows)
        with torch.no_grad():
            transfers = adapter.head_transfers(layer, forward).double().numpy()
        for b, n in enumerate(lengths):
            for h in heads:
                T = transfers[b, h, :n]
                projector = T @ np.linalg.pinv(T, rcond=eps * max(T.shape))  # P_T, computed independently
                assert np.abs(rows[b][h] @ projector.T - effective[b][h]).max() <= 1e-6
        replacement[layer] = effective
    logits = logits_with_rows(adapter, long_batch, replacement)
    assert (logits - forward.logits).abs().max() <= 1e-4 * forward.logits.abs().max()
    last = replacement[adapter.num_layers - 1]
    assert min(rows.min() for rows in last) < 0  # not distributions: the gap efficient attention closes


# ---- the explainer reads what the checks above verified ---------------------------------------------


def test_the_cls_readout_is_the_head_mean_of_efficient_cls_rows(sharp_tiny_adapter):
    tiny_adapter = sharp_tiny_adapter
    batch = tiny_adapter.make_batch([Example(id="long", text=LONG_TEXTS[1], label=0)])
    _, replaced = efficient_layers(tiny_adapter, batch, "sparse", all_layers=False)
    _, efficient, _ = replaced[tiny_adapter.num_layers - 1]
    expected = efficient[0][:, 0].mean(0)
    scores = get_explainer("efficient_attention").explain(tiny_adapter, batch).scores[0]
    scorable = batch.scorable_mask[0]
    assert torch.allclose(scores[scorable].double(), torch.from_numpy(expected)[scorable[: len(expected)]], atol=1e-7)
    one_head = get_explainer("efficient_attention", heads=[2]).explain(tiny_adapter, batch).scores[0]
    assert torch.allclose(one_head[scorable].double(), torch.from_numpy(efficient[0][2, 0])[scorable[: len(expected)]], atol=1e-7)


def test_the_rollout_readout_rolls_out_efficient_matrices(sharp_tiny_adapter):
    tiny_adapter = sharp_tiny_adapter
    batch = tiny_adapter.make_batch([Example(id="long", text=LONG_TEXTS[2], label=0)])
    _, replaced = efficient_layers(tiny_adapter, batch, "minnorm", all_layers=True)
    n = lengths_of(batch)[0]
    product = np.eye(n)
    for layer in range(tiny_adapter.num_layers):
        product = (0.5 * np.eye(n) + 0.5 * replaced[layer][1][0].mean(0)) @ product
    scores = get_explainer("efficient_attention", readout="rollout", canonical="minnorm").explain(tiny_adapter, batch).scores[0]
    scorable = batch.scorable_mask[0]
    assert torch.allclose(scores[scorable].double(), torch.from_numpy(product[0])[scorable], atol=1e-6)
    raw_rollout = get_explainer("attention_rollout").explain(tiny_adapter, batch).scores[0]
    assert not torch.allclose(raw_rollout, scores, atol=1e-4)


def test_the_batched_simplex_matches_highs_and_falls_back_to_it(sharp_tiny_adapter, monkeypatch):
    tiny_adapter = sharp_tiny_adapter
    batch = tiny_adapter.make_batch([Example(id=f"long-{i}", text=t, label=0) for i, t in enumerate(LONG_TEXTS)])
    lengths = lengths_of(batch)
    with torch.no_grad():
        forward = tiny_adapter.forward(batch.input_ids, batch.attention_mask)
    bases = head_bases(tiny_adapter, forward, 0, full_spans(lengths), list(range(tiny_adapter.num_heads)))
    rows = layer_rows(tiny_adapter, forward, 0, lengths, all_queries=True)
    batched = efficient_rows(bases, rows, lp_solver="batched")
    highs = efficient_rows(bases, rows, lp_solver="highs")
    for example_rows, first, second in zip(rows, batched, highs):
        cost = -np.log(np.maximum(example_rows / example_rows.sum(-1, keepdims=True), 1e-12))
        assert np.abs((first * cost).sum(-1) - (second * cost).sum(-1)).max() <= 1e-6
    import effbench.explainers.efficient as efficient_module

    monkeypatch.setattr(efficient_module, "_MAX_ITERATIONS_PER_VARIABLE", 0)  # every LP "fails"
    fallen_back = efficient_rows(bases, rows[:1], lp_solver="batched")
    assert np.abs(fallen_back[0] - highs[0]).max() <= 1e-6


# ---- diagnostics ----------------------------------------------------------------------------------------


def test_diagnose_reports_per_layer_and_pooled(sharp_tiny_adapter):
    from effbench.diagnose import diagnose, format_diagnostics

    examples = [Example(id=f"long-{i}", text=text, label=0) for i, text in enumerate(LONG_TEXTS)]
    examples.append(Example(id="short", text=SHORT_TEXT, label=0))
    rows = diagnose(sharp_tiny_adapter, examples, batch_size=3, progress=False)
    assert [row["layer"] for row in rows] == ["0", "1", "all"]
    heads = sharp_tiny_adapter.num_heads
    for row in rows[:-1]:
        assert row["pairs"] == len(examples) * heads
        assert row["null dim min"] == 0 and row["null dim max"] > 0  # the short example and the long ones
        assert row["C(a) != {a}"] == pytest.approx(3 / 4)
        assert 0 < row["efficient != raw"] <= row["C(a) != {a}"]
        assert row["sparse support"] <= sharp_tiny_adapter.head_dim + 1
        assert 0 < row["TV sparse mean"] <= row["TV sparse max"] <= 1
        assert row["effective negative mass"] > 0 and row["effective row sum min"] < 1
    assert rows[-1]["pairs"] == 2 * len(examples) * heads
    table = format_diagnostics(rows)
    assert "TV sparse mean" in table and "| all" in table
