"""Explainers that read attention matrices: raw attention, attention rollout, effective attention and
attention norms.

`raw_attention`, `attention_rollout`, `effective_attention` and `efficient_attention` share one readout
(`AttentionReadout`): they differ only in the matrix rows they read (`transform_rows`).

- readout `cls`: the chosen layer's query row of the token the classifier reads (the first token, [CLS],
  for encoders; the last real token for decoders), averaged over the chosen heads;
- readout `rollout`: Abnar & Zuidema (2020): prod_l (0.5 I + 0.5 mean_h A_l) over layers 0..layer, its
  readout row.

Each example's matrices are restricted to its n real tokens; padding is never part of a row. Each row's
C(a) lives on the tokens that row may attend to (all, its causal prefix, or its window).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import torch

from effbench.errors import EffbenchError
from effbench.explainers.base import Explainer

if TYPE_CHECKING:
    from effbench.models.adapter import ClassifierAdapter, ForwardOutput
    from effbench.types import Batch

READOUTS = ("cls", "rollout")


@contextlib.contextmanager
def one_thread() -> Iterator[None]:
    """Run torch on one thread inside the block.

    The per-head and per-row linear algebra here is many small operations: they lose more to thread
    hand-offs (and, on a busy machine, to waiting for a second core) than they gain from parallelism.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


# one basis job: (example, start, stop): the positions [start, stop) of the example that its rows may attend to
Span = tuple[int, int, int]


@dataclass(frozen=True)
class HeadBases:
    """For one layer and a list of spans (`spans`: example, start, stop), per chosen head (`heads`, in
    that order):

    `column[s][i]` [n_s, r] an orthonormal basis of col(T) over the span's n_s tokens (r = rank(T)), and
    `with_ones[s][i]` [n_s, m] one of col([T | 1]) (m = rank([T | 1])): U_r, then the normalised part of 1
    outside col(T) where it is not in col(T). T = V W_O^h is what each token sends into the residual
    stream through head h; a row that may attend to the span's tokens only has its C(a) there.
    """

    heads: list[int]
    spans: list[Span]
    column: list[list[np.ndarray]]
    with_ones: list[list[np.ndarray]]


def full_spans(lengths: list[int]) -> list[Span]:
    """Each example's span of all its real tokens."""
    return [(example, 0, n) for example, n in enumerate(lengths)]


def readout_spans(model: ClassifierAdapter, layer: int, lengths: list[int]) -> list[Span]:
    """Each example's span of the tokens its readout row (the row the classifier's token reads) may attend to."""
    spans = []
    for example, n in enumerate(lengths):
        start, stop = model.key_span(layer, model.readout_position(n), n)
        spans.append((example, start, stop))
    return spans


@one_thread()
@torch.inference_mode()
def head_bases(model: ClassifierAdapter, forward: ForwardOutput, layer: int, spans: list[Span],
               heads: list[int]) -> HeadBases:
    """Orthonormal bases of col(T) and col([T | 1]) per span and head, in float64.

    rank(T) counts the singular values above s_max * max(n, d) * eps, with eps that of the dtype the
    model ran in (the spec: float64's eps would count float32 rounding noise as rank). 1 counts as
    outside col(T) when its part outside has a norm above max(n, d) * eps * ||1||.

    T = V W [n, d] is never formed: with W^T = Q_W R (a QR of [d, d_h]), T = (V R^T) Q_W^T has the
    singular values and left singular vectors of K = V R^T [n, d_h]. With K = Q_K R_K, those are the
    square roots of the eigenvalues of R_K^T R_K (accurate to ~1e-8 s_max in float64, far below the
    tolerance), and where K has full column rank (the usual case) Q_K is the basis; otherwise the
    head's basis comes from an SVD of K. All spans and heads are factorised in one batch, each span's
    tokens first and padding rows set to zero (they stay zero in Q_K).
    """
    eps = torch.finfo(model.dtype).eps
    with torch.no_grad():
        all_values = model.value_vectors(layer, forward)[:, heads].double().cpu()  # [B, H', N, d_h]
        projection = model.head_output_projection(layer)[heads].double().cpu()  # [H', d_h, d]
    width = all_values.shape[2]
    lengths = [stop - start for _, start, stop in spans]
    if all(start == 0 for _, start, _ in spans) and [example for example, _, _ in spans] == list(range(len(all_values))):
        values = all_values
    else:
        values = torch.zeros((len(spans), *all_values.shape[1:]), dtype=torch.float64)
        for index, (example, start, stop) in enumerate(spans):
            values[index, :, : stop - start] = all_values[example, :, start:stop]
    batch, head_count, width, head_dim = values.shape
    d = projection.shape[-1]
    if eps > torch.finfo(torch.float32).eps:
        # the spec's checks (rows summing to 1 within 1e-5, rank above rounding) do not hold at this eps
        largest = eps * max(max(lengths), d)
        consequence = ("so no singular value of T counts" if largest >= 1 else
                       "so the rows of C(a) sum to 1 only within it")
        raise EffbenchError(
            "explainers that read col(T) (effective_attention, efficient_attention) need the model in float32 or "
            f"float64: in {str(model.dtype).removeprefix('torch.')} the rank tolerance max(n, d) * eps is "
            f"{largest:.3g} (eps {eps:.3g}, d {d}), {consequence}")
    real = torch.arange(width) < torch.tensor(lengths).unsqueeze(1)  # [B, N]
    values = values * real[:, None, :, None]
    triangular = torch.linalg.qr(projection.transpose(1, 2), mode="r").R  # [H', d_h, d_h]
    reduced = values @ triangular.transpose(1, 2)  # K, [B, H', N, d_h]
    orthonormal, factor = torch.linalg.qr(reduced)  # [B, H', N, c], [B, H', c, d_h], c = min(N, d_h)
    squared = torch.linalg.eigvalsh(factor.transpose(-1, -2) @ factor).flip(-1)  # descending, [B, H', d_h]
    singular = squared.clamp_min(0).sqrt()
    tolerance = eps * torch.tensor([max(n, d) for n in lengths], dtype=torch.float64)  # [B]
    above = singular > singular[..., :1] * tolerance[:, None, None]
    ranks = (above & (singular[..., :1] > 0)).sum(-1)  # [B, H']
    deficient = ranks < torch.tensor([min(n, head_dim) for n in lengths]).unsqueeze(1)
    for example, position in deficient.nonzero().tolist():
        # QR's columns do not span col(K) here: take the leading left singular vectors instead
        n, rank = lengths[example], int(ranks[example, position])
        orthonormal[example, position] = 0.0
        orthonormal[example, position, :n, :rank] = torch.linalg.svd(reduced[example, position, :n], full_matrices=False).U[:, :rank]

    # the part of 1 outside col(T), projected out twice for orthogonality to working precision
    outside = real.double()[:, None, :, None].expand(batch, head_count, width, 1)
    for _ in range(2):
        outside = outside - orthonormal @ (orthonormal.transpose(-1, -2) @ outside)
    outside = outside.squeeze(-1)
    norms = outside.norm(dim=-1)  # [B, H']
    adds_one = (ranks < torch.tensor(lengths).unsqueeze(1)) & (norms > tolerance[:, None] * torch.tensor(lengths).double().sqrt()[:, None])
    unit = (outside / norms.clamp_min(torch.finfo(torch.float64).tiny).unsqueeze(-1)).numpy()
    orthonormal = orthonormal.numpy()
    column, with_ones = [], []
    for example, n in enumerate(lengths):
        example_column = [orthonormal[example, position, :n, : int(ranks[example, position])] for position in range(head_count)]
        column.append(example_column)
        with_ones.append([
            np.column_stack([basis, unit[example, position, :n]]) if adds_one[example, position] else basis
            for position, basis in enumerate(example_column)
        ])
    return HeadBases(heads=heads, spans=spans, column=column, with_ones=with_ones)


def parse_heads(heads: Any, num_heads: int | None = None, *, all_name: str = "mean") -> list[int] | None:
    """`all_name` (every head) -> None; a list of head indices -> that list. Errors name what is allowed."""
    if heads == all_name:
        return None
    allowed = f"'{all_name}' or a non-empty list of distinct head indices"
    if not isinstance(heads, (list, tuple)) or not heads or any(isinstance(h, bool) or not isinstance(h, int) for h in heads):
        raise EffbenchError(f"parameter heads={heads!r} is not allowed; use {allowed}")
    if len(set(heads)) != len(heads):
        raise EffbenchError(f"parameter heads={heads!r} repeats a head; use {allowed}")
    if num_heads is not None and any(not 0 <= h < num_heads for h in heads):
        raise EffbenchError(f"parameter heads={heads!r} is out of range: the model has {num_heads} heads (0..{num_heads - 1})")
    return list(heads)


def validate_layer(value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise EffbenchError(f"parameter layer={value!r} is not allowed; use a layer index (negative counts from the last)")


class AttentionReadout(Explainer):
    """Token scores read from attention-like matrices of the model (see the module docstring).

    Subclasses change `transform_rows` (which rows are read) and, through `needs_bases`, whether the
    orthonormal bases of col(T) are computed for it.
    """

    defaults: ClassVar[dict[str, Any]] = {"layer": -1, "heads": "mean"}
    readout: ClassVar[str] = "cls"  # unless the parameters choose one
    needs_bases: ClassVar[bool] = True
    reads_model_through_embedding_layer = True

    def validate(self) -> None:
        validate_layer(self.params["layer"])
        parse_heads(self.params["heads"])
        readout = self.params.get("readout", self.readout)
        if readout not in READOUTS:
            raise EffbenchError(f"parameter readout={readout!r} is not allowed; choose one of {', '.join(READOUTS)}")

    def transform_rows(self, model: ClassifierAdapter, bases: HeadBases | None, rows: list[np.ndarray]) -> list[np.ndarray]:
        """The rows to read instead of the attention rows: `rows[b]` is [H', q, n_b] float64."""
        return rows

    def scores(self, model: ClassifierAdapter, batch: Batch) -> torch.Tensor:
        from effbench.models.adapter import normalise_layer

        layer = normalise_layer(self.params["layer"], model.num_layers)
        heads = parse_heads(self.params["heads"], model.num_heads) or list(range(model.num_heads))
        lengths = batch.attention_mask.sum(1).tolist()
        forward = model.batch_forward(batch)
        if self.params.get("readout", self.readout) == "cls":
            rows = self.layer_rows(model, forward, layer, lengths, heads, all_queries=False)
            per_example = [example_rows[:, 0, :].mean(0) for example_rows in rows]
        else:
            per_example = self.rollout(model, forward, layer, lengths, heads)
        scores = torch.zeros(batch.input_ids.shape, dtype=torch.float64)
        for example, values in enumerate(per_example):
            scores[example, : lengths[example]] = torch.from_numpy(values)
        return scores

    def layer_rows(self, model: ClassifierAdapter, forward: ForwardOutput, layer: int, lengths: list[int],
                   heads: list[int], *, all_queries: bool) -> list[np.ndarray]:
        """The rows this explainer reads at `layer`: per example [H', q, n] (q = 1, the readout row, or n)."""
        transform = (lambda bases, rows: self.transform_rows(model, bases, rows)) if self.needs_bases else None
        return attention_rows(model, forward, layer, lengths, heads, all_queries=all_queries, transform=transform)

    def rollout(self, model: ClassifierAdapter, forward: ForwardOutput, last_layer: int, lengths: list[int],
                heads: list[int]) -> list[np.ndarray]:
        """The readout row of prod_l (0.5 I + 0.5 mean_h A_l), layers 0..last_layer, per example."""
        products = [np.eye(n) for n in lengths]
        for layer in range(last_layer + 1):
            rows = self.layer_rows(model, forward, layer, lengths, heads, all_queries=True)
            for example, example_rows in enumerate(rows):
                mixed = 0.5 * np.eye(lengths[example]) + 0.5 * example_rows.mean(0)
                products[example] = mixed @ products[example]
        return [product[model.readout_position(n)] for product, n in zip(products, lengths)]


RowTransform = Callable[[HeadBases, list[np.ndarray]], list[np.ndarray]]
_SPANS_PER_SOLVE = 64  # spans factorised together: bounds memory when every causal row has its own span


def attention_rows(model: ClassifierAdapter, forward: ForwardOutput, layer: int, lengths: list[int],
                   heads: list[int], *, all_queries: bool, transform: RowTransform | None = None) -> list[np.ndarray]:
    """Attention rows of `layer`, per example [H', q, n] over its n real tokens: q = 1 (the readout
    row) or q = n (every row), optionally transformed (efficient, effective rows).

    A row's C(a) lives on the tokens it may attend to (`model.key_span`): all of them, its prefix or
    its window. Rows of an example with the same span share one basis; `transform(bases, rows)` gets
    the rows cut to their span ([H', q_s, n_s] per span) and returns rows of the same shapes, which go
    back to their place (zero outside the span).
    """
    with one_thread():
        probs = forward.attentions[layer][:, heads].detach().double().cpu().numpy()
        results, jobs = [], []  # jobs: (span, the slots of its rows in the result, their query positions)
        for example, n in enumerate(lengths):
            queries = list(range(n)) if all_queries else [model.readout_position(n)]
            results.append(np.zeros((len(heads), len(queries), n)))
            by_span: dict[tuple[int, int], list[int]] = {}
            for slot, query in enumerate(queries):
                by_span.setdefault(model.key_span(layer, query, n), []).append(slot)
            for (start, stop), slots in by_span.items():
                jobs.append(((example, start, stop), slots, [queries[slot] for slot in slots]))
        for first in range(0, len(jobs), _SPANS_PER_SOLVE):
            chunk = jobs[first: first + _SPANS_PER_SOLVE]
            rows = [probs[example][:, positions, start:stop] for (example, start, stop), _, positions in chunk]
            if transform is not None:
                rows = transform(head_bases(model, forward, layer, [span for span, _, _ in chunk], heads), rows)
            for ((example, start, stop), slots, _), span_rows in zip(chunk, rows):
                results[example][:, slots, start:stop] = span_rows
        return results


class RawAttention(AttentionReadout):
    """The attention probabilities themselves."""

    name = "raw_attention"
    version = 1
    needs_bases = False
    citation = """@inproceedings{jain2019attention,
  title = {Attention is not Explanation},
  author = {Jain, Sarthak and Wallace, Byron C.},
  booktitle = {Proceedings of NAACL-HLT},
  pages = {3543--3556},
  year = {2019}
}"""


class AttentionRollout(AttentionReadout):
    """Attention rollout over the raw attention matrices of layers 0..layer."""

    name = "attention_rollout"
    version = 1
    needs_bases = False
    readout = "rollout"
    citation = """@inproceedings{abnar2020quantifying,
  title = {Quantifying Attention Flow in Transformers},
  author = {Abnar, Samira and Zuidema, Willem},
  booktitle = {Proceedings of ACL},
  pages = {4190--4197},
  year = {2020}
}"""


class EffectiveAttention(AttentionReadout):
    """Brunner et al.'s effective attention: each row projected onto col(T), a_eff = U_r U_r^T a.

    Its rows give the same head output, but they can be negative and need not sum to 1.
    """

    name = "effective_attention"
    version = 1
    citation = """@inproceedings{brunner2020identifiability,
  title = {On Identifiability in Transformers},
  author = {Brunner, Gino and Liu, Yang and Pascual, Dami{\\'a}n and Richter, Oliver and Ciaramita, Massimiliano and Wattenhofer, Roger},
  booktitle = {International Conference on Learning Representations (ICLR)},
  year = {2020}
}"""

    def transform_rows(self, model: ClassifierAdapter, bases: HeadBases | None, rows: list[np.ndarray]) -> list[np.ndarray]:
        return effective_rows(bases, rows)


def effective_rows(bases: HeadBases, rows: list[np.ndarray]) -> list[np.ndarray]:
    """P_T a for every row: `rows[b]` is [H', q, n_b]."""
    projected = []
    for example, example_rows in enumerate(rows):
        projected.append(np.stack([
            (example_rows[position] @ basis) @ basis.T for position, basis in enumerate(bases.column[example])
        ]))
    return projected


class AttentionNorm(Explainer):
    """Kobayashi et al. (2020): the norm of the weighted transformed vectors at the readout query ([CLS]),
    || sum_{h in heads} a^h_{0j} T^h_j || with T^h_j = (x_j W_V^h + b_V^h) W_O^h, at the chosen layer.

    As in the paper's analysis of a whole attention layer, the heads' weighted vectors are summed
    before the norm is taken (not their norms).
    """

    name = "attention_norm"
    version = 1
    reads_model_through_embedding_layer = True
    defaults: ClassVar[dict[str, Any]] = {"layer": -1, "heads": "all"}
    citation = """@inproceedings{kobayashi2020attention,
  title = {Attention is Not Only a Weight: Analyzing Transformers with Vector Norms},
  author = {Kobayashi, Goro and Kuribayashi, Tatsuki and Yokoi, Sho and Inui, Kentaro},
  booktitle = {Proceedings of EMNLP},
  pages = {7057--7075},
  year = {2020}
}"""

    def validate(self) -> None:
        validate_layer(self.params["layer"])
        parse_heads(self.params["heads"], all_name="all")

    def scores(self, model: ClassifierAdapter, batch: Batch) -> torch.Tensor:
        from effbench.models.adapter import normalise_layer

        layer = normalise_layer(self.params["layer"], model.num_layers)
        heads = parse_heads(self.params["heads"], model.num_heads, all_name="all") or list(range(model.num_heads))
        forward = model.batch_forward(batch)
        with torch.no_grad():
            transfers = model.head_transfers(layer, forward)[:, heads]  # [B, H', N, D]
            lengths = batch.attention_mask.sum(1).tolist()
            readout = torch.tensor([model.readout_position(n) for n in lengths], device=transfers.device)
            examples = torch.arange(len(lengths), device=transfers.device)
            rows = forward.attentions[layer][examples, :, readout]  # [B, H, N], zero on padding
            weights = rows[:, heads]
            return torch.einsum("bhn,bhnd->bnd", weights, transfers).norm(dim=-1)
