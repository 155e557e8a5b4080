"""`random`: uniform random token scores, the floor every explainer must beat."""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import torch

from effbench.errors import EffbenchError
from effbench.explainers.base import Explainer
from effbench.metrics.erasure import ERASER_CITATION

if TYPE_CHECKING:
    from effbench.models.adapter import ClassifierAdapter
    from effbench.types import Batch


def example_key(example_id: str) -> int:
    """A stable 64-bit integer from an example id (unlike Python's `hash`, the same on every run)."""
    return int.from_bytes(hashlib.sha256(example_id.encode("utf-8")).digest()[:8], "little")


class RandomScores(Explainer):
    """Scores drawn uniformly from [0, 1) for each real token.

    Each example's generator is seeded by (seed, a stable hash of its id), so an example's scores do
    not depend on the batch it is in, its position there, or the padding.
    """

    name = "random"
    version = 1
    reads_model_through_embedding_layer = True  # it reads no model
    defaults: ClassVar[dict[str, Any]] = {"seed": 0}
    citation = ERASER_CITATION  # random token scores serve as ERASER's baseline

    def validate(self) -> None:
        seed = self.params["seed"]
        if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
            raise EffbenchError(f"parameter seed={seed!r} is not allowed; use a non-negative integer")

    def scores(self, model: ClassifierAdapter, batch: Batch) -> torch.Tensor:
        scores = torch.zeros(batch.input_ids.shape, dtype=torch.float64)
        for row, (example_id, length) in enumerate(zip(batch.example_ids, batch.attention_mask.sum(1).tolist())):
            generator = np.random.default_rng([self.params["seed"], example_key(example_id)])
            scores[row, :length] = torch.from_numpy(generator.random(length))
        return scores
