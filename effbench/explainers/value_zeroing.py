"""`value_zeroing`: Mohebbi et al. (EACL 2023), context mixing measured by zeroing value vectors.

For layer l and token j, the value vector of j is set to zero in every head of layer l (what the
layer's other computations see is unchanged) and the layer's output for every token i is compared with
the original: C^l_ij = cosine distance(x~^l_i without v_j, x^l_i), each row then normalised to sum to 1.
The layer's output includes its residual connections, so the matrices are aggregated without an
added identity: rollout R = C^L ... C^1 (parameter `aggregation`: `rollout`, as the paper, or `last`,
the last layer's matrix alone). The score of token j is the readout token's row of R at column j.

Zeroing v_j in all heads is the same as zeroing column j of the layer's attention probabilities (no
renormalisation): head output i is sum_{k != j} a_ik v_k either way. That is done with the adapter's
`attention_override`, and every layer's input is reset to the unperturbed one (`layer_calls`), so one
forward pass of n + 1 copies of an example (the original first, then one per zeroed token) gives the
matrices of all layers at once.

Cost: n + 1 full forward passes per example of n tokens (every token including the special ones is
zeroed, since the matrices mix through them), in chunks of at most `tokens_per_pass` tokens: on a
256-token input that is 257 passes of 256 tokens, roughly a leave-one-out explanation's worth.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

import torch

from effbench.errors import EffbenchError
from effbench.explainers.base import Explainer

if TYPE_CHECKING:
    from effbench.models.adapter import ClassifierAdapter
    from effbench.types import Batch

AGGREGATIONS = ("rollout", "last")


def rollout_row(matrices: list[torch.Tensor], readout: int) -> torch.Tensor:
    """The readout row of C^L ... C^1 for per-layer mixing matrices [n, n] whose rows already include the residual."""
    row = matrices[-1][readout]
    for matrix in reversed(matrices[:-1]):
        row = row @ matrix
    return row


def normalise_rows(matrix: torch.Tensor) -> torch.Tensor:
    return matrix / matrix.sum(-1, keepdim=True).clamp_min(torch.finfo(matrix.dtype).tiny)


def zeroing_columns(keep: torch.Tensor):
    """An attention override that multiplies column j of copy c's probabilities by keep[c, j] (every head and row)."""
    def override(layer: int, probs: torch.Tensor) -> torch.Tensor:
        return probs * keep[:, None, None, :]
    return override


def original_input(layer: int, hidden: torch.Tensor) -> torch.Tensor:
    """Every copy's layer input replaced by the first copy's (the unperturbed example's)."""
    return hidden[:1].expand_as(hidden)


class ValueZeroing(Explainer):
    """Value zeroing (see the module docstring).

    The paper evaluates by rank correlation with blank-out (leave-one-out) scores, not on
    comprehensiveness; no ranking on this benchmark's metrics is taken from it.
    """

    name = "value_zeroing"
    version = 1
    defaults: ClassVar[dict[str, Any]] = {"aggregation": "rollout", "tokens_per_pass": 8192}
    citation = """@inproceedings{mohebbi2023quantifying,
  title = {Quantifying Context Mixing in Transformers},
  author = {Mohebbi, Hosein and Zuidema, Willem and Chrupa{\\l}a, Grzegorz and Alishahi, Afra},
  booktitle = {Proceedings of the 17th Conference of the European Chapter of the Association for Computational Linguistics (EACL)},
  pages = {3378--3400},
  year = {2023}
}"""

    def validate(self) -> None:
        if self.params["aggregation"] not in AGGREGATIONS:
            raise EffbenchError(f"parameter aggregation={self.params['aggregation']!r} is not allowed; "
                                f"choose one of {', '.join(AGGREGATIONS)}")
        budget = self.params["tokens_per_pass"]
        if isinstance(budget, bool) or not isinstance(budget, int) or budget < 1:
            raise EffbenchError(f"parameter tokens_per_pass={budget!r} is not allowed; use a positive integer")

    def scores(self, model: ClassifierAdapter, batch: Batch) -> torch.Tensor:
        lengths = batch.attention_mask.sum(1).tolist()
        scores = torch.zeros(batch.input_ids.shape, dtype=torch.float64)
        for example, n in enumerate(lengths):
            matrices = self.mixing_matrices(model, batch.input_ids[example, :n])
            readout = model.readout_position(n)
            row = matrices[-1][readout] if self.params["aggregation"] == "last" else rollout_row(matrices, readout)
            scores[example, :n] = row
        return scores

    @torch.no_grad()
    def mixing_matrices(self, model: ClassifierAdapter, input_ids: torch.Tensor) -> list[torch.Tensor]:
        """C^l [n, n] per layer for one example's n real token ids: row i, column j = the (row-normalised)
        cosine distance of token i's layer output with and without v_j."""
        n = len(input_ids)
        distances = torch.zeros((model.num_layers, n, n), dtype=torch.float64)  # [L, i, j]
        copies_per_pass = max(1, self.params["tokens_per_pass"] // n - 1)
        for first in range(0, n, copies_per_pass):
            zeroed = torch.arange(first, min(n, first + copies_per_pass))  # the token zeroed in copies 1..
            keep = torch.ones((len(zeroed) + 1, n), dtype=model.dtype, device=model.device)
            keep[torch.arange(1, len(zeroed) + 1), zeroed] = 0.0  # copy 0 is the original
            ids = input_ids.unsqueeze(0).expand(len(keep), n)
            with model.attention_override(zeroing_columns(keep)), model.layer_calls(replace_input=original_input) as calls:
                model.logits(ids, torch.ones_like(ids))
            if len(calls) != model.num_layers:
                raise EffbenchError(f"value_zeroing saw {len(calls)} layer calls in one forward pass of {model.name!r}; "
                                    f"expected {model.num_layers}")
            for layer, (_, output) in enumerate(calls):
                output = output.double().cpu()
                changed = 1.0 - torch.nn.functional.cosine_similarity(output[1:], output[:1], dim=-1)  # [copies, i]
                distances[layer, :, zeroed] = changed.T
        return [normalise_rows(distances[layer]) for layer in range(model.num_layers)]
