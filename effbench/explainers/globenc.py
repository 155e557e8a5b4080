"""`globenc`: GlobEnc (Modarressi et al., NAACL 2022), norm-based attribution over whole encoder layers.

GlobEnc extends Kobayashi et al.'s norm analysis of the attention block (the heads' weighted
transformed vectors, the residual and the first LayerNorm: effbench.explainers.layer_decomposition)
with the layer's second residual connection and output LayerNorm. The feed-forward network is
left out, being non-linear: each token's part T_i(x_j) goes through the second LayerNorm linearised
with the standard deviation of that LayerNorm's actual input (y_i + FFN(y_i)):

    N_ij = || gamma_2 * (T_i(x_j) - mean(T_i(x_j))) / s2_i ||_2,  each row normalised to sum to 1,

and the layers' matrices are aggregated by rollout (no added identity: they include the residual),
R = N^L ... N^1; the score of token j is the readout token ([CLS]) row of R.

Why GlobEnc and not DecompX (Modarressi et al., ACL 2023, the same group's successor): DecompX carries
each token's decomposed vector through every layer, including the FFN with a linearised activation,
and on through the pooler and classifier to a per-class score. That needs a per-architecture
description of the FFN and classifier head and its own propagation code; GlobEnc reuses the
decomposition ALTI already uses and needs only where the output LayerNorm sits.

Supported: post-LN encoders (BERT family, DistilBERT, ALBERT, DeBERTa-v2), the models GlobEnc is
defined on. In a pre-norm model the second norm sits inside the FFN branch, off the residual stream,
and GlobEnc reduces to Kobayashi et al.'s N_res: refused with a one-line error.

The paper evaluates by rank correlation with gradient-based attributions, where GlobEnc comes out above
attention, rollout and N_res; it publishes no comprehensiveness ranking.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

import torch

from effbench.explainers.base import Explainer
from effbench.explainers.layer_decomposition import (attention_block_parts, check_supported,
                                                     layer_inputs_and_forward, linearised_layer_norm)
from effbench.explainers.value_zeroing import normalise_rows, rollout_row

if TYPE_CHECKING:
    from effbench.models.adapter import ClassifierAdapter
    from effbench.types import Batch


class GlobEnc(Explainer):
    """GlobEnc (see the module docstring)."""

    name = "globenc"
    version = 1
    defaults: ClassVar[dict[str, Any]] = {}
    citation = """@inproceedings{modarressi2022globenc,
  title = {{GlobEnc}: Quantifying Global Token Attribution by Incorporating the Whole Encoder Layer in Transformers},
  author = {Modarressi, Ali and Fayyaz, Mohsen and Yaghoobzadeh, Yadollah and Pilehvar, Mohammad Taher},
  booktitle = {Proceedings of the 2022 Conference of the North American Chapter of the Association for Computational Linguistics (NAACL)},
  pages = {258--271},
  year = {2022}
}"""

    def scores(self, model: ClassifierAdapter, batch: Batch) -> torch.Tensor:
        check_supported(model, "globenc", ("post",))
        output_norm = model.architecture.output_norm
        forward, layer_inputs, norm_inputs = layer_inputs_and_forward(model, batch.input_ids, batch.attention_mask,
                                                                      output_norm)
        scores = torch.zeros(batch.input_ids.shape, dtype=torch.float64)
        for example, n in enumerate(batch.attention_mask.sum(1).tolist()):
            matrices = []
            for layer in range(model.num_layers):
                block = attention_block_parts(model, forward, layer_inputs[layer], layer, example, n)
                norm = model.layer_submodule(layer, output_norm)
                through = linearised_layer_norm(norm, block.parts, norm_inputs[layer][example, :n].double().cpu())
                matrices.append(normalise_rows(through.norm(dim=-1)))
            scores[example, :n] = rollout_row(matrices, model.readout_position(n))
        return scores
