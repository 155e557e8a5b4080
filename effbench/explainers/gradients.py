"""Gradient explainers: `saliency`, `grad_x_input` and `integrated_gradients`.

All differentiate the logit of the predicted class y with respect to an input vector x_j per token and
reduce the hidden dimension to one score per token. Where x_j is taken is the parameter `input_point`:

- `embedding_output` (the default): the embedding layer's output, the first layer's input, as captum's
  layer attributions on `embeddings` take it. In the BERT family that is LayerNorm(word + position +
  token type embedding).
- `word_embeddings`: the word embedding e_j alone (the input embedding table's output), as effbench's
  version 1 took it. In a model whose embedding layer normalises the sum word + position + type, this
  scores positions, not tokens: LayerNorm is scale-invariant, so the gradient g_j at the sum is
  orthogonal to it, g_j . (e_j + p_j + t_j) = 0, and gradient x word embedding is exactly minus
  gradient x (position + type embedding). (On MiniLM: |g . (w + p + t)| is 3e-7 of |g . w|.) The same
  holds along the integrated-gradients path, so their scores are minus the gradient's product with the
  position, type and baseline embeddings. Kept for comparison with tools that attribute there.

- `saliency` (Simonyan et al. 2014): || d logit_y / d x_j ||_2;
- `grad_x_input` (Shrikumar et al. 2016): sum_d (d logit_y / d x_j)_d (x_j)_d;
- `integrated_gradients` (Sundararajan et al. 2017): sum_d (x_j - x'_j)_d sum_k w_k (d logit_y / d x_j)_d
  at x' + alpha_k (x - x'), with captum's quadrature rules (default Gauss-Legendre, captum's default);
  the baseline x' is what the input point holds for the pad token at every scorable token (or zero),
  the special tokens kept.

Under `--dtype bfloat16` or `float16` the model itself runs in that dtype (its weights are cast when it is
loaded; no autocast), so the gradients are those of the model as it ran. What the explainers compute from
them (products, sums, norms, integrated gradients' path and integral) is in at least float32.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import torch

from effbench.errors import EffbenchError
from effbench.explainers.base import Explainer

if TYPE_CHECKING:
    from effbench.models.adapter import ClassifierAdapter
    from effbench.types import Batch

QUADRATURES = ("gausslegendre", "riemann_left", "riemann_right", "riemann_middle")
BASELINES = ("pad", "zero")
INPUT_POINTS = ("embedding_output", "word_embeddings")
_ROWS_PER_PASS = 128  # interpolated inputs per forward/backward pass; changes no number beyond rounding


def _at_least_float32(values: torch.Tensor) -> torch.Tensor:
    """`values` in float32 where they are in a narrower float (bfloat16, float16); unchanged otherwise."""
    return values.to(torch.promote_types(values.dtype, torch.float32))


def input_vectors(model: ClassifierAdapter, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                  input_point: str) -> torch.Tensor:
    """x [B, N, D] at `input_point` for the given ids: the embedding layer's output, or the word embeddings."""
    if input_point == "embedding_output":
        return model.embedding_output(input_ids, attention_mask).detach()
    return model.input_embeddings(input_ids).detach()


def target_logit_gradients(model: ClassifierAdapter, points: torch.Tensor, input_ids: torch.Tensor,
                           attention_mask: torch.Tensor, targets: torch.Tensor, input_point: str) -> torch.Tensor:
    """d logit_{target} / d x at `points` (x at `input_point`), [B, N, D]: each row's gradient of its own target logit."""
    points = points.detach().requires_grad_(True)
    with torch.enable_grad():
        if input_point == "embedding_output":
            logits = model.logits(input_ids, attention_mask, embedding_output=points)
        else:
            logits = model.logits(None, attention_mask, inputs_embeds=points)
        selected = logits.gather(1, targets.to(logits.device).view(-1, 1)).sum()
        (gradients,) = torch.autograd.grad(selected, points)
    return gradients


class GradientExplainer(Explainer):
    """What the three gradient explainers share: the `input_point` parameter."""

    defaults: ClassVar[dict[str, Any]] = {"input_point": "embedding_output"}
    reads_model_through_embedding_layer = True

    def validate(self) -> None:
        if self.params["input_point"] not in INPUT_POINTS:
            raise EffbenchError(f"parameter input_point={self.params['input_point']!r} is not allowed; "
                                f"choose one of {', '.join(INPUT_POINTS)}")

    def inputs(self, model: ClassifierAdapter, batch: Batch) -> torch.Tensor:
        return input_vectors(model, batch.input_ids, batch.attention_mask, self.params["input_point"])

    def gradients(self, model: ClassifierAdapter, points: torch.Tensor, batch: Batch, rows=slice(None)) -> torch.Tensor:
        """The gradients at `points` [R, W, D] of the batch's `rows`, cut to the points' width W."""
        width = points.shape[1]
        return target_logit_gradients(model, points, batch.input_ids[rows, :width], batch.attention_mask[rows, :width],
                                      batch.targets[rows], self.params["input_point"])


class Saliency(GradientExplainer):
    """The L2 norm of the gradient of the predicted class's logit at each token's input vector."""

    name = "saliency"
    version = 2  # 2: the gradient at the embedding layer's output by default (input_point)
    citation = """@inproceedings{simonyan2014deep,
  title = {Deep Inside Convolutional Networks: Visualising Image Classification Models and Saliency Maps},
  author = {Simonyan, Karen and Vedaldi, Andrea and Zisserman, Andrew},
  booktitle = {ICLR Workshop},
  year = {2014}
}"""

    def scores(self, model: ClassifierAdapter, batch: Batch) -> torch.Tensor:
        return _at_least_float32(self.gradients(model, self.inputs(model, batch), batch)).norm(dim=-1)


class GradientXInput(GradientExplainer):
    """The gradient of the predicted class's logit times the input vector, summed over the hidden size."""

    name = "grad_x_input"
    # 2: at the embedding layer's output by default; at the word embeddings (version 1) it scored positions
    version = 2
    citation = """@article{shrikumar2016not,
  title = {Not Just a Black Box: Learning Important Features Through Propagating Activation Differences},
  author = {Shrikumar, Avanti and Greenside, Peyton and Shcherbina, Anna and Kundaje, Anshul},
  journal = {arXiv preprint arXiv:1605.01713},
  year = {2016}
}"""

    def scores(self, model: ClassifierAdapter, batch: Batch) -> torch.Tensor:
        inputs = self.inputs(model, batch)
        return (_at_least_float32(self.gradients(model, inputs, batch)) * _at_least_float32(inputs)).sum(-1)


def quadrature(method: str, steps: int) -> tuple[np.ndarray, np.ndarray]:
    """Points alpha_k in [0, 1] and weights w_k, as captum's approximation methods.

    captum's `riemann_trapezoid` is left out: its weights sum to (steps - 1) / steps, not 1.
    """
    if method == "gausslegendre":
        points, weights = np.polynomial.legendre.leggauss(steps)
        return 0.5 * (points + 1), 0.5 * weights
    start = {"riemann_left": 0.0, "riemann_right": 1.0 / steps, "riemann_middle": 0.5 / steps}[method]
    return np.linspace(start, start + 1 - 1.0 / steps, steps), np.full(steps, 1.0 / steps)


class IntegratedGradients(GradientExplainer):
    """Integrated gradients of the predicted class's logit over the tokens' input vectors.

    All interpolation steps of all examples go through the model together, in passes of up to 128 rows,
    longest examples first, each pass as wide as its longest row.
    """

    name = "integrated_gradients"
    version = 2  # 2: at the embedding layer's output by default (input_point)
    defaults: ClassVar[dict[str, Any]] = {"steps": 20, "method": "gausslegendre", "baseline": "pad",
                                          **GradientExplainer.defaults}
    citation = """@inproceedings{sundararajan2017axiomatic,
  title = {Axiomatic Attribution for Deep Networks},
  author = {Sundararajan, Mukund and Taly, Ankur and Yan, Qiqi},
  booktitle = {Proceedings of ICML},
  pages = {3319--3328},
  year = {2017}
}"""

    def validate(self) -> None:
        super().validate()
        steps = self.params["steps"]
        if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
            raise EffbenchError(f"parameter steps={steps!r} is not allowed; use a positive integer")
        if self.params["method"] not in QUADRATURES:
            raise EffbenchError(f"parameter method={self.params['method']!r} is not allowed; choose one of {', '.join(QUADRATURES)}")
        if self.params["baseline"] not in BASELINES:
            raise EffbenchError(f"parameter baseline={self.params['baseline']!r} is not allowed; choose one of {', '.join(BASELINES)}")

    def baseline_inputs(self, model: ClassifierAdapter, batch: Batch) -> torch.Tensor:
        """The baseline x': the pad token's input vector (or zero) at the scorable tokens, the rest as they are."""
        scorable = batch.scorable_mask.to(model.device)
        if self.params["baseline"] == "zero":
            return self.inputs(model, batch).masked_fill(scorable.unsqueeze(-1), 0.0)
        pad_id = model.tokenizer.pad_token_id or 0
        baseline_ids = torch.where(batch.scorable_mask, pad_id, batch.input_ids)
        return input_vectors(model, baseline_ids, batch.attention_mask, self.params["input_point"])

    def scores(self, model: ClassifierAdapter, batch: Batch) -> torch.Tensor:
        alphas, weights = quadrature(self.params["method"], self.params["steps"])
        embeddings = self.inputs(model, batch)
        baseline = _at_least_float32(self.baseline_inputs(model, batch))
        # the path is interpolated in at least float32, and each point enters the model in its dtype
        difference = _at_least_float32(embeddings) - baseline
        steps, size = len(alphas), len(batch)
        # rows ordered (example, step) with the longest examples first, and each pass cut to its longest
        # row: a pass pads only to the length of the examples in it, not to the batch's longest
        lengths = batch.attention_mask.sum(1).tolist()
        longest_first = sorted(range(size), key=lambda example: (-lengths[example], example))
        example_rows = torch.tensor(longest_first).repeat_interleave(steps)
        step_rows = torch.arange(steps).repeat(size)
        alpha_rows = torch.tensor(alphas, dtype=difference.dtype, device=embeddings.device)[step_rows]
        weight_rows = torch.tensor(weights, dtype=torch.float64)[step_rows]
        integral = torch.zeros(embeddings.shape, dtype=torch.float64)
        for start in range(0, steps * size, _ROWS_PER_PASS):
            rows = example_rows[start: start + _ROWS_PER_PASS]
            width = lengths[int(rows[0])]
            alpha = alpha_rows[start: start + _ROWS_PER_PASS].view(-1, 1, 1)
            points = (baseline[rows, :width] + alpha * difference[rows, :width]).to(embeddings.dtype)
            gradients = self.gradients(model, points, batch, rows)
            weighted = gradients.double().cpu() * weight_rows[start: start + _ROWS_PER_PASS].view(-1, 1, 1)
            integral[:, :width].index_add_(0, rows, weighted)
        return (integral * difference.double().cpu()).sum(-1)
