"""Gradient explainers: `saliency`, `grad_x_input` and `integrated_gradients`.

All differentiate the logit of the predicted class y with respect to the word embeddings e_j (the
input embedding table's output; the model adds position and token-type embeddings itself), and
reduce the hidden dimension to one score per token:

- `saliency` (Simonyan et al. 2014): || d logit_y / d e_j ||_2;
- `grad_x_input` (Shrikumar et al. 2016): sum_d (d logit_y / d e_j)_d (e_j)_d;
- `integrated_gradients` (Sundararajan et al. 2017): sum_d (e_j - e'_j)_d sum_k w_k (d logit_y / d e_j)_d
  at e' + alpha_k (e - e'), with captum's quadrature rules (default Gauss-Legendre, captum's default);
  the baseline e' is the pad token's embedding at every scorable token, the special tokens kept.
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
_ROWS_PER_PASS = 128  # interpolated inputs per forward/backward pass; changes no number beyond rounding


def target_logit_gradients(model: ClassifierAdapter, embeddings: torch.Tensor, attention_mask: torch.Tensor,
                           targets: torch.Tensor) -> torch.Tensor:
    """d logit_{target} / d embeddings, [B, N, D]: each row's gradient of its own target logit."""
    embeddings = embeddings.detach().requires_grad_(True)
    with torch.enable_grad():
        logits = model.logits(None, attention_mask, inputs_embeds=embeddings)
        selected = logits.gather(1, targets.to(logits.device).view(-1, 1)).sum()
        (gradients,) = torch.autograd.grad(selected, embeddings)
    return gradients


class Saliency(Explainer):
    """The L2 norm of the gradient of the predicted class's logit at each word embedding."""

    name = "saliency"
    version = 1
    citation = """@inproceedings{simonyan2014deep,
  title = {Deep Inside Convolutional Networks: Visualising Image Classification Models and Saliency Maps},
  author = {Simonyan, Karen and Vedaldi, Andrea and Zisserman, Andrew},
  booktitle = {ICLR Workshop},
  year = {2014}
}"""

    def scores(self, model: ClassifierAdapter, batch: Batch) -> torch.Tensor:
        embeddings = model.input_embeddings(batch.input_ids)
        return target_logit_gradients(model, embeddings, batch.attention_mask, batch.targets).norm(dim=-1)


class GradientXInput(Explainer):
    """The gradient of the predicted class's logit times the word embedding, summed over the hidden size."""

    name = "grad_x_input"
    version = 1
    citation = """@article{shrikumar2016not,
  title = {Not Just a Black Box: Learning Important Features Through Propagating Activation Differences},
  author = {Shrikumar, Avanti and Greenside, Peyton and Shcherbina, Anna and Kundaje, Anshul},
  journal = {arXiv preprint arXiv:1605.01713},
  year = {2016}
}"""

    def scores(self, model: ClassifierAdapter, batch: Batch) -> torch.Tensor:
        embeddings = model.input_embeddings(batch.input_ids).detach()
        gradients = target_logit_gradients(model, embeddings, batch.attention_mask, batch.targets)
        return (gradients * embeddings).sum(-1)


def quadrature(method: str, steps: int) -> tuple[np.ndarray, np.ndarray]:
    """Points alpha_k in [0, 1] and weights w_k, as captum's approximation methods.

    captum's `riemann_trapezoid` is left out: its weights sum to (steps - 1) / steps, not 1.
    """
    if method == "gausslegendre":
        points, weights = np.polynomial.legendre.leggauss(steps)
        return 0.5 * (points + 1), 0.5 * weights
    start = {"riemann_left": 0.0, "riemann_right": 1.0 / steps, "riemann_middle": 0.5 / steps}[method]
    return np.linspace(start, start + 1 - 1.0 / steps, steps), np.full(steps, 1.0 / steps)


class IntegratedGradients(Explainer):
    """Integrated gradients of the predicted class's logit over the word embeddings.

    All interpolation steps of all examples go through the model together, in passes of up to 128 rows.
    """

    name = "integrated_gradients"
    version = 1
    defaults: ClassVar[dict[str, Any]] = {"steps": 20, "method": "gausslegendre", "baseline": "pad"}
    citation = """@inproceedings{sundararajan2017axiomatic,
  title = {Axiomatic Attribution for Deep Networks},
  author = {Sundararajan, Mukund and Taly, Ankur and Yan, Qiqi},
  booktitle = {Proceedings of ICML},
  pages = {3319--3328},
  year = {2017}
}"""

    def validate(self) -> None:
        steps = self.params["steps"]
        if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
            raise EffbenchError(f"parameter steps={steps!r} is not allowed; use a positive integer")
        if self.params["method"] not in QUADRATURES:
            raise EffbenchError(f"parameter method={self.params['method']!r} is not allowed; choose one of {', '.join(QUADRATURES)}")
        if self.params["baseline"] not in BASELINES:
            raise EffbenchError(f"parameter baseline={self.params['baseline']!r} is not allowed; choose one of {', '.join(BASELINES)}")

    def baseline_embeddings(self, model: ClassifierAdapter, batch: Batch) -> torch.Tensor:
        """The baseline e': pad-token (or zero) embeddings at the scorable tokens, the rest as they are."""
        scorable = batch.scorable_mask.to(model.device)
        embeddings = model.input_embeddings(batch.input_ids).detach()
        if self.params["baseline"] == "zero":
            return embeddings.masked_fill(scorable.unsqueeze(-1), 0.0)
        pad_id = model.tokenizer.pad_token_id or 0
        return model.input_embeddings(torch.where(batch.scorable_mask, pad_id, batch.input_ids)).detach()

    def scores(self, model: ClassifierAdapter, batch: Batch) -> torch.Tensor:
        alphas, weights = quadrature(self.params["method"], self.params["steps"])
        embeddings = model.input_embeddings(batch.input_ids).detach()
        baseline = self.baseline_embeddings(model, batch)
        difference = embeddings - baseline
        steps, size = len(alphas), len(batch)
        # rows ordered (step, example), so that a pass covers consecutive steps of all examples
        alpha_rows = torch.tensor(alphas, dtype=embeddings.dtype, device=embeddings.device).repeat_interleave(size)
        weight_rows = torch.tensor(weights, dtype=torch.float64).repeat_interleave(size)
        example_rows = torch.arange(size).repeat(steps)
        integral = torch.zeros(embeddings.shape, dtype=torch.float64)
        for start in range(0, steps * size, _ROWS_PER_PASS):
            rows = example_rows[start: start + _ROWS_PER_PASS]
            alpha = alpha_rows[start: start + _ROWS_PER_PASS].view(-1, 1, 1)
            points = baseline[rows] + alpha * difference[rows]
            gradients = target_logit_gradients(model, points, batch.attention_mask[rows], batch.targets[rows])
            weighted = gradients.double().cpu() * weight_rows[start: start + _ROWS_PER_PASS].view(-1, 1, 1)
            integral.index_add_(0, rows, weighted)
        return (integral * difference.double().cpu()).sum(-1)
