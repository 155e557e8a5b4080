"""`oracle`: 1 on the tokens of the known evidence, 0 elsewhere: the ceiling of the localisation metrics."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

from effbench.errors import EffbenchError
from effbench.explainers.base import Explainer

if TYPE_CHECKING:
    import torch

    from effbench.models.adapter import ClassifierAdapter
    from effbench.types import Batch

ORACLE_CITATION = """@misc{effbench-oracle,
    title = {The oracle explainer of effbench: score 1 on the planted evidence tokens, 0 elsewhere},
    author = {{effbench contributors}},
    note = {Reads the evidence a task with a planted trigger marks (task card option plant_trigger); not a
            method to explain a model, but the upper bound of the localisation metrics on such a task},
    year = {2025},
}"""


class Oracle(Explainer):
    """Scores each scorable token 1 if it is evidence (`batch.evidence_mask`), else 0: it reads the answer of a
    task with planted evidence, not the model."""

    name = "oracle"
    version = 1
    defaults: ClassVar[dict[str, Any]] = {}
    citation = ORACLE_CITATION
    # runs only on batches whose examples carry evidence: left out of the generic explainer contract tests
    needs_evidence = True

    def scores(self, model: ClassifierAdapter, batch: Batch) -> torch.Tensor:
        if batch.evidence_mask is None:
            raise EffbenchError("explainer oracle needs planted evidence and this task has none; use a task card "
                                "with plant_trigger, e.g. mr-sentences-trigger")
        return batch.evidence_mask.float()
