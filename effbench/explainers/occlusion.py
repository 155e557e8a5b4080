"""`leave_one_out`: occlusion of one scorable token at a time."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

import torch

from effbench.errors import EffbenchError
from effbench.explainers.base import Explainer
from effbench.metrics.base import PERTURBATION_MODES

if TYPE_CHECKING:
    from effbench.models.adapter import ClassifierAdapter
    from effbench.types import Batch


class LeaveOneOut(Explainer):
    """score_j = p(y | x) - p(y | x without token j), y the predicted class.

    The inputs come from the metrics' perturbation engine, so that they are exactly the metrics'
    leave-one-out inputs: `remove` (default) deletes the token id and re-packs the sequence, `mask`
    replaces it by the mask token. All of a batch's perturbed inputs are batched together.
    """

    name = "leave_one_out"
    version = 1
    defaults: ClassVar[dict[str, Any]] = {"perturbation": "remove"}
    citation = """@article{li2016understanding,
  title = {Understanding Neural Networks through Representation Erasure},
  author = {Li, Jiwei and Monroe, Will and Jurafsky, Dan},
  journal = {arXiv preprint arXiv:1612.08220},
  year = {2016}
}"""

    def validate(self) -> None:
        if self.params["perturbation"] not in PERTURBATION_MODES:
            raise EffbenchError(f"parameter perturbation={self.params['perturbation']!r} is not allowed; choose one of {', '.join(PERTURBATION_MODES)}")

    def scores(self, model: ClassifierAdapter, batch: Batch) -> torch.Tensor:
        from effbench.metrics.perturbation import PerturbationEngine

        engine = PerturbationEngine(model, mode=self.params["perturbation"])
        without = engine.leave_one_out(batch)
        full = engine.full_target_probabilities(batch)
        scores = torch.zeros(batch.input_ids.shape, dtype=torch.float64)
        for example, (positions, probabilities) in enumerate(zip(engine.scorable_positions(batch), without)):
            scores[example, torch.from_numpy(positions)] = torch.from_numpy(full[example] - probabilities)
        return scores
