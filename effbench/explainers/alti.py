"""`alti`: Aggregation of Layer-wise Token-to-token Interactions (Ferrando et al., EMNLP 2022).

Each layer's attention block output is decomposed into per-token vectors, y_i = sum_j T_i(x_j) + rest_i
(effbench.explainers.layer_decomposition: the heads' weighted transformed vectors, the residual and
the LayerNorm's linear part, with the bias terms in rest_i), and token j's contribution to token i is

    c_ij = max(0, ||y_i||_1 - ||y_i - T_i(x_j)||_1),  normalised so that each row sums to 1.

y_i is the block's actual output (biases included). The layers' matrices include the residual, so they
are aggregated by rollout without an added identity, R = C^L ... C^1, and the score of token j is the
readout token's row of R (the first token for encoders, the last real token for decoders). The
feed-forward blocks are not part of the decomposition (as in the paper).

Supported: every architecture whose norm placement the adapter describes: post-LN encoders (BERT
family, DistilBERT, ALBERT, DeBERTa-v2) and pre-norm models (GPT-2, Llama family, ModernBERT; their
norms, LayerNorm or RMSNorm, act on each token alone before its value projection, so they sit inside
T_i(x_j)). Others get a one-line error.

Cost: one forward pass, then per layer an [n, n, D] tensor per example (float64): 50 MB at n = 128,
D = 384; 200 MB at n = 256.

The paper's ranking on comprehensiveness (text classification): ALTI > integrated gradients ~ gradient
~ gradient x input > attention norm (Kobayashi et al.) > attention rollout.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

import torch

from effbench.explainers.base import Explainer
from effbench.explainers.layer_decomposition import attention_block_parts, check_supported, layer_inputs_and_forward
from effbench.explainers.value_zeroing import rollout_row

if TYPE_CHECKING:
    from effbench.models.adapter import ClassifierAdapter
    from effbench.types import Batch


def alti_contributions(parts: torch.Tensor, output: torch.Tensor) -> torch.Tensor:
    """c [n, n] from T_i(x_j) `parts` [n, n, D] and y_i `output` [n, D]: rows non-negative, summing to 1."""
    size = output.abs().sum(-1, keepdim=True)  # ||y_i||_1, [n, 1]
    distance = (output.unsqueeze(1) - parts).abs().sum(-1)  # ||y_i - T_i(x_j)||_1, [n, n]
    contributions = (size - distance).clamp_min(0.0)
    return contributions / contributions.sum(-1, keepdim=True).clamp_min(torch.finfo(contributions.dtype).tiny)


class ALTI(Explainer):
    """ALTI (see the module docstring)."""

    name = "alti"
    version = 1
    defaults: ClassVar[dict[str, Any]] = {}
    citation = """@inproceedings{ferrando2022measuring,
  title = {Measuring the Mixing of Contextual Information in the Transformer},
  author = {Ferrando, Javier and G{\\'a}llego, Gerard I. and Costa-juss{\\`a}, Marta R.},
  booktitle = {Proceedings of the 2022 Conference on Empirical Methods in Natural Language Processing (EMNLP)},
  pages = {8698--8714},
  year = {2022}
}"""

    def scores(self, model: ClassifierAdapter, batch: Batch) -> torch.Tensor:
        check_supported(model, "alti")
        forward, layer_inputs, _ = layer_inputs_and_forward(model, batch.input_ids, batch.attention_mask)
        scores = torch.zeros(batch.input_ids.shape, dtype=torch.float64)
        for example, n in enumerate(batch.attention_mask.sum(1).tolist()):
            matrices = self.layer_matrices(model, forward, layer_inputs, example, n)
            scores[example, :n] = rollout_row(matrices, model.readout_position(n))
        return scores

    def layer_matrices(self, model, forward, layer_inputs, example: int, n: int) -> list[torch.Tensor]:
        matrices = []
        for layer in range(model.num_layers):
            block = attention_block_parts(model, forward, layer_inputs[layer], layer, example, n)
            matrices.append(alti_contributions(block.parts, block.output))
        return matrices
