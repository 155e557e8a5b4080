"""`attn_lrp`: AttnLRP (Achtibat et al., ICML 2024), layer-wise relevance propagation through attention.

Implemented as gradient x input with modified backward passes, as the authors' `lxt` package does
("efficient" mode): the target logit's relevance is propagated so that, at every tensor t, relevance is
t * (its modified gradient), and the score of token j is the sum over the hidden dimension of the
relevance at the embedding layer's output (the first layer's input). The rules:

- linear layers, residual sums and biases: the plain gradient, which is LRP-0 (epsilon -> 0); a bias
  keeps its share of the relevance (it absorbs b * dR/db);
- LayerNorm and RMSNorm: the identity rule of the paper, with the normalising standard deviation (RMS)
  detached, so that the norm is linear (and conservative, bar its bias) in its input;
- elementwise activations (GELU, SiLU, tanh, ...): the identity rule, relevance passed on unchanged
  (forward f(x), gradient f(x) / x);
- the softmax: the paper's rule R_in = x * (R_out - s * sum(R_out)), which is x times the ordinary
  softmax gradient, so the softmax's backward is left as it is;
- the two matrix products of attention, Q K^T and A V, and the gated MLP's elementwise product: the
  uniform rule, half of the relevance to each factor. Inside the attention function (the adapter's
  `attention_inputs`) the gradients reaching V are halved and those reaching Q and K quartered (half
  for A V's A side, times half for Q K^T), which is the same since everything between is linear in the
  gradient.

Relevance is not conserved exactly even without biases: the softmax rule absorbs
0.5 * (sum_i s_i g_i - sum_i s_i log(s_i) (g_i - sum_j s_j g_j)) per attention row (g the gradient at
the probabilities); the tests check that the input relevances plus what the biases and the softmax
rows absorb equal the target logit.

Supported: the architectures whose every non-linearity is a module and whose attention goes through
`AttentionInterface` (BERT, ELECTRA, ALBERT, GPT-2, Llama, Qwen2, Mistral); the others (the
Architecture table's `lrp_refusal`) get a one-line error. The `lxt` release on PyPI (2.1) was not used:
it does not import with transformers 5 (it imports `transformers.modeling_attn_mask_utils`), and it
works by patching transformers' model modules process-wide.

Cost: one forward and one backward pass per batch, as gradient x input.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, ClassVar

import torch

from effbench.errors import EffbenchError
from effbench.explainers.base import Explainer

if TYPE_CHECKING:
    from effbench.models.adapter import ClassifierAdapter
    from effbench.types import Batch

_ACTIVATION_MODULES = ("transformers.activations", "torch.nn.modules.activation")
_NOT_ELEMENTWISE = ("Softmax", "Softmin", "LogSoftmax", "MultiheadAttention", "GLU", "PReLU")


def scale_gradient(tensor: torch.Tensor, factor: float) -> torch.Tensor:
    """`tensor` in the forward pass; its gradient times `factor` in the backward pass."""
    return tensor.detach() + factor * (tensor - tensor.detach())


def identity_rule(function):
    """forward(x) = function(x); backward: the gradient times function(x) / x (relevance passed unchanged)."""
    def forward(x: torch.Tensor) -> torch.Tensor:
        y = function(x)
        ratio = torch.where(x == 0, torch.zeros((), dtype=y.dtype, device=y.device), y / x).detach()
        return y.detach() + ratio * (x - x.detach())
    return forward


def layer_norm_rule(norm: torch.nn.LayerNorm):
    def forward(x: torch.Tensor) -> torch.Tensor:
        mean = x.mean(-1, keepdim=True)
        deviation = (x.var(-1, unbiased=False, keepdim=True) + norm.eps).sqrt().detach()
        y = (x - mean) / deviation
        if norm.weight is not None:
            y = y * norm.weight
        return y if norm.bias is None else y + norm.bias
    return forward


def rms_norm_rule(norm: torch.nn.Module):
    """For the Llama family's RMSNorm: weight * x / rms(x), computed in float32 as the model does."""
    def forward(x: torch.Tensor) -> torch.Tensor:
        dtype = x.dtype
        x = x.float()
        inverse = torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + norm.variance_epsilon).detach()
        return norm.weight * (x * inverse).to(dtype)
    return forward


def is_rms_norm(module: torch.nn.Module) -> bool:
    return type(module).__name__.endswith("RMSNorm") and hasattr(module, "variance_epsilon") and hasattr(module, "weight")


def is_elementwise_activation(module: torch.nn.Module) -> bool:
    kind = type(module)
    return kind.__module__ in _ACTIVATION_MODULES and kind.__name__ not in _NOT_ELEMENTWISE


def uniform_rule_attention(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor):
    return scale_gradient(query, 0.25), scale_gradient(key, 0.25), scale_gradient(value, 0.5)


@contextlib.contextmanager
def lrp_rules(model: ClassifierAdapter) -> Iterator[None]:
    """Inside the block, the model's backward passes follow AttnLRP's rules (its forward is unchanged)."""
    architecture = model.architecture
    if architecture.lrp_refusal is not None or not architecture.attention_interface:
        reason = architecture.lrp_refusal or "its attention bypasses AttentionInterface"
        raise EffbenchError(f"attn_lrp does not support {architecture.family} ({model.model.config.model_type}): {reason}")
    patched: list[torch.nn.Module] = []
    handles = []
    try:
        for module in model.model.modules():
            if isinstance(module, torch.nn.LayerNorm):
                module.forward = layer_norm_rule(module)
            elif is_rms_norm(module):
                module.forward = rms_norm_rule(module)
            elif is_elementwise_activation(module):
                module.forward = identity_rule(type(module).forward.__get__(module))
            else:
                continue
            patched.append(module)
        if architecture.gated_mlp is not None:
            for layer in range(model.num_layers):
                for path in architecture.gated_mlp:
                    handles.append(model.layer_submodule(layer, path).register_forward_hook(
                        lambda module, args, output: scale_gradient(output, 0.5)))
        with model.attention_inputs(uniform_rule_attention):
            yield
    finally:
        for module in patched:
            del module.forward  # back to the class's forward
        for handle in handles:
            handle.remove()


class AttnLRP(Explainer):
    """AttnLRP (see the module docstring). The paper reports it ahead of the methods it compares with
    (among them attention rollout, gradient x input and integrated gradients) on token-perturbation
    faithfulness, for LLaMA 2, Mixtral and ViT; it publishes no comprehensiveness ranking on BERT-style
    text classifiers."""

    name = "attn_lrp"
    version = 1
    defaults: ClassVar[dict[str, Any]] = {}
    citation = """@inproceedings{achtibat2024attnlrp,
  title = {{AttnLRP}: Attention-Aware Layer-Wise Relevance Propagation for Transformers},
  author = {Achtibat, Reduan and Hatefi, Sayed Mohammad Vakilzadeh and Dreyer, Maximilian and Jain, Aakriti and Wiegand, Thomas and Lapuschkin, Sebastian and Samek, Wojciech},
  booktitle = {Proceedings of the 41st International Conference on Machine Learning (ICML)},
  pages = {135--168},
  year = {2024}
}"""

    def scores(self, model: ClassifierAdapter, batch: Batch) -> torch.Tensor:
        return input_relevance(model, batch)


def input_relevance(model: ClassifierAdapter, batch: Batch) -> torch.Tensor:
    """Relevance per token [B, N]: the hidden dimension's sum of relevance at the embedding layer's output."""
    inputs = model.embedding_output(batch.input_ids, batch.attention_mask).detach().requires_grad_(True)
    with torch.enable_grad(), lrp_rules(model):
        logits = model.logits(batch.input_ids, batch.attention_mask, embedding_output=inputs)
        target = logits.gather(1, batch.targets.to(logits.device).view(-1, 1)).sum()
        (gradients,) = torch.autograd.grad(target, inputs)
    return (gradients * inputs).sum(-1)
