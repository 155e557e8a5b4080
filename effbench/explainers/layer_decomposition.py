"""The attention block of a layer as a sum of per-token vectors, for ALTI and GlobEnc.

For one example and layer l with input x (n tokens), head probabilities a^h and transfers
T^h_j = v^h_j W_O^h (the adapter's `head_transfers`; v includes the value bias and, in pre-norm
models, the norm of x_j), the attention block's residual sum is

    z_i = sum_j m_ij + b_O,   m_ij = sum_h a^h_ij T^h_j + [i = j] x_i.

- pre-norm (`norm_placement = "pre"`: GPT-2, Llama family, ModernBERT): the block's output is z_i itself,
  so its parts are T_i(x_j) = m_ij and the rest is the bias b_O.
- post-LN (`"post"`: BERT family, DistilBERT, ALBERT, DeBERTa-v2): the output is y_i = LN(z_i). With the
  standard deviation s_i of z_i fixed (as ALTI and GlobEnc linearise it), LN is linear in z_i:
  T_i(x_j) = gamma * (m_ij - mean(m_ij)) / s_i, and the rest is gamma * (b_O - mean(b_O)) / s_i + beta.

Either way y_i = sum_j T_i(x_j) + rest_i exactly (tests check it against the model's own output).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from effbench.errors import EffbenchError

if TYPE_CHECKING:
    from effbench.models.adapter import ClassifierAdapter, ForwardOutput

NORM_PLACEMENTS = ("pre", "post")


def check_supported(model: ClassifierAdapter, method: str, placements: tuple[str, ...] = NORM_PLACEMENTS) -> None:
    """A one-line error when the architecture's norms are not described, or not where `method` is defined."""
    placement = model.architecture.norm_placement
    if placement not in placements:
        described = "is not described" if placement is None else f"is {placement}-norm"
        raise EffbenchError(f"{method} does not support {model.architecture.family} ({model.model.config.model_type}): "
                            f"its norm placement {described}; {method} needs a {'/'.join(placements)}-norm model")


@dataclass(frozen=True)
class LayerParts:
    """One example's attention block at one layer: `parts` [n, n, D] (row i, column j: T_i(x_j)),
    `rest` [n, D] (the biases' share) and `output` [n, D] = parts.sum(1) + rest."""

    parts: torch.Tensor
    rest: torch.Tensor
    output: torch.Tensor


def linearised_layer_norm(norm: torch.nn.Module, vectors: torch.Tensor, total: torch.Tensor) -> torch.Tensor:
    """gamma * (v - mean(v)) / s: the LayerNorm `norm` as a linear map with the standard deviation s of
    `total` [n, D] (its actual input), applied to `vectors` [n, ..., D] (float64, on the CPU)."""
    if not isinstance(norm, torch.nn.LayerNorm):
        raise EffbenchError(f"expected a LayerNorm, found {type(norm).__name__}")
    deviation = (total.var(-1, unbiased=False) + norm.eps).sqrt()  # [n]
    scale = torch.ones(total.shape[-1], dtype=torch.float64) if norm.weight is None else norm.weight.detach().double().cpu()
    centred = vectors - vectors.mean(-1, keepdim=True)
    return scale * centred / deviation.view((len(total),) + (1,) * (vectors.dim() - 1))


def layer_norm_bias(norm: torch.nn.Module) -> torch.Tensor | float:
    return 0.0 if norm.bias is None else norm.bias.detach().double().cpu()


def layer_inputs_and_forward(model: ClassifierAdapter, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                             extra_path: str | None = None):
    """(forward, the input of each layer [B, N, D] (L of them), the input of the module at `extra_path` in
    each layer or None): one forward pass with the attention probabilities and values captured."""
    with torch.no_grad(), model.layer_calls() as layer_calls:
        if extra_path is None:
            forward = model.forward(input_ids, attention_mask)
            extra = None
        else:
            with model.layer_calls(extra_path) as extra_calls:
                forward = model.forward(input_ids, attention_mask)
            extra = [inputs for inputs, _ in extra_calls]
    return forward, [inputs for inputs, _ in layer_calls], extra


def attention_block_parts(model: ClassifierAdapter, forward: ForwardOutput, layer_input: torch.Tensor, layer: int,
                          example: int, n: int) -> LayerParts:
    """The decomposition of the module docstring for one example's n real tokens, in float64."""
    with torch.no_grad():
        probs = forward.attentions[layer][example, :, :n, :n].double().cpu()  # [H, n, n]
        values = model.value_vectors(layer, forward)[example, :, :n].double().cpu()  # [H, n, d_h]
        projection = model.head_output_projection(layer).double().cpu()  # [H, d_h, D]
        transfers = torch.einsum("hjk,hkd->hjd", values, projection)
        parts = torch.einsum("hij,hjd->ijd", probs, transfers)  # [n, n, D]
        x = layer_input[example, :n].double().cpu()
        parts[torch.arange(n), torch.arange(n)] += x
        bias = model.output_projection_bias(layer)
        bias = torch.zeros(parts.shape[-1], dtype=torch.float64) if bias is None else bias.double().cpu()
        total = parts.sum(1) + bias  # z, [n, D]
        if model.architecture.norm_placement == "pre":
            return LayerParts(parts=parts, rest=bias.expand_as(total), output=total)
        norm = model.layer_submodule(layer, model.architecture.attention_norm)
        parts = linearised_layer_norm(norm, parts, total)
        rest = linearised_layer_norm(norm, bias.expand_as(total), total) + layer_norm_bias(norm)
        return LayerParts(parts=parts, rest=rest, output=parts.sum(1) + rest)
