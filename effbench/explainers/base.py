"""The explainer interface: one verb, `explain(model, batch) -> Attribution`."""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from effbench.components import Component
from effbench.errors import EffbenchError

if TYPE_CHECKING:
    import torch

    from effbench.models.adapter import ClassifierAdapter
    from effbench.types import Attribution, Batch


class Explainer(Component):
    """Base class for explainers.

    A subclass sets `name`, `version`, `citation` and `defaults` (see Component), and implements
    `scores(model, batch)`, returning [B, N] token scores against `batch.targets`. `explain` zeroes
    everything outside the scorable tokens and wraps the result; it never normalises.
    """

    kind = "explainer"
    # True when every model input the explainer reads goes through the embedding layer's forward pass, with no
    # cache keyed by token ids in between (or it reads no model): then a metric that perturbs the embedding
    # output (sensitivity_max) can rerun it under the perturbation. A third-party explainer opts in by setting it.
    reads_model_through_embedding_layer: ClassVar[bool] = False

    def scores(self, model: ClassifierAdapter, batch: Batch) -> torch.Tensor:
        raise NotImplementedError

    def explain(self, model: ClassifierAdapter, batch: Batch) -> Attribution:
        import torch

        from effbench.types import Attribution

        scores = self.scores(model, batch)
        if not isinstance(scores, torch.Tensor):
            raise EffbenchError(f"explainer {self.name!r} returned a {type(scores).__name__}; scores must be a torch "
                                f"tensor of shape {tuple(batch.input_ids.shape)} (one score per token)")
        if scores.is_complex() or not (scores.is_floating_point() or scores.dtype in (torch.int32, torch.int64)):
            raise EffbenchError(f"explainer {self.name!r} returned scores of dtype {scores.dtype}; scores must be real numbers")
        scores = scores.detach().float().cpu()
        if tuple(scores.shape) != tuple(batch.input_ids.shape):
            raise EffbenchError(
                f"explainer {self.name!r} returned scores of shape {tuple(scores.shape)}; "
                f"expected one per token, {tuple(batch.input_ids.shape)}"
            )
        scores = torch.where(batch.scorable_mask, scores, torch.zeros((), dtype=scores.dtype))
        return Attribution(scores=scores, explainer=self.name, version=self.version, params=dict(self.params))
