"""The few frozen types that cross stage boundaries."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

    from effbench.models.adapter import ForwardOutput


@dataclass(frozen=True)
class Example:
    """One labelled text. `id` is stable across runs and machines.

    `evidence`: the character spans [start, end) of the text where the answer is known to lie (a planted
    trigger, effbench.tasks.planting); `()` when the task knows there is none in this text, None when the
    task marks no evidence at all.
    """

    id: str
    text: str
    label: int
    evidence: tuple[tuple[int, int], ...] | None = None


@dataclass(frozen=True)
class Batch:
    """Token ids of several examples, right-padded, and what the model predicts on them.

    `scorable_mask` marks the real tokens that are not special tokens: the only tokens an
    explainer scores and a metric ranks or removes. `targets` is the model's predicted class
    on the full input, the class every explainer and metric explains.
    """

    example_ids: tuple[str, ...]
    input_ids: "torch.Tensor"  # [B, N] long
    attention_mask: "torch.Tensor"  # [B, N] long, 1 for real tokens
    scorable_mask: "torch.Tensor"  # [B, N] bool
    targets: "torch.Tensor"  # [B] long, predicted class on the full input
    labels: "torch.Tensor | None" = None  # [B] long, gold labels where known
    # [B, N] bool, the scorable tokens of each example's evidence (all False in a row without any); None when
    # no example of the batch has evidence (its `evidence` is None)
    evidence_mask: "torch.Tensor | None" = None
    # the full-input forward pass (logits, attentions, hidden states), computed once when the batch is
    # made and shared by every explainer that reads attention: it does not depend on the explainer
    forward: "ForwardOutput | None" = field(default=None, repr=False, compare=False)

    def __len__(self) -> int:
        return len(self.example_ids)


@dataclass(frozen=True)
class Attribution:
    """A score per token, [B, N], zero outside the scorable tokens, never normalised."""

    scores: "torch.Tensor"
    explainer: str
    version: int
    params: dict[str, Any] = field(default_factory=dict)
