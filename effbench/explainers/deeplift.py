"""`deeplift`: DeepLIFT (Shrikumar et al. 2017) at the embedding layer's output, by captum's DeepLift.

score_j = sum_d (x_j - x'_j)_d m_{j,d}: x_j the embedding layer's output at token j (the first layer's
input, as the gradient explainers take it by default), x' the baseline, and m the multipliers captum
back-propagates from the predicted class's logit, summed over the hidden size as `grad_x_input` and
`integrated_gradients` do. The baseline (`baseline`) is what the embedding layer outputs for the pad
token (default, as integrated_gradients) or the mask token at every scorable token, the special tokens
kept, or zero at the scorable tokens.

What captum's rules reach in a transformer (captum 0.9, `SUPPORTED_NON_LINEAR` in
captum/attr/_core/deep_lift.py): its Rescale rule replaces the gradient of a registered submodule whose
type is exactly nn.ReLU, nn.ELU, nn.LeakyReLU, nn.Sigmoid, nn.Tanh or nn.Softplus by the multiplier
(f(z) - f(z')) / (z - z'), z' the baseline's activation (nn.Softmax and max pooling have rules of their
own). Everything else
back-propagates its plain gradient at the input x: the feed-forward activations (transformers'
GELUActivation, NewGELUActivation, SiLUActivation are none of those types), LayerNorm and RMSNorm, the
attention softmax (nn.functional.softmax in the attention code, not an nn.Softmax module) and the
products of queries with keys and of probabilities with values. Of the supported architectures, the
rule applies only at the pooler's nn.Tanh of BERT (MiniLM included) and ALBERT; RoBERTa's head calls
torch.tanh, DistilBERT's builds its nn.ReLU inside forward (no submodule to hook), the others' heads
have none; a model configured with hidden_act='relu' also gets it in every feed-forward block. So this
is gradient x (input - baseline) with the Rescale rule where such a module sits, not DeepLIFT through
the whole network: the scores need not sum to logit_y(x) - logit_y(x') (DeepLIFT's summation-to-delta).
"""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING, Any, ClassVar

import torch

from effbench.errors import EffbenchError
from effbench.explainers.base import Explainer
from effbench.explainers.gradients import input_vectors

if TYPE_CHECKING:
    from effbench.models.adapter import ClassifierAdapter
    from effbench.types import Batch

BASELINES = ("pad", "mask", "zero")


class _LogitsFromEmbeddingOutput(torch.nn.Module):
    """The classifier as captum's DeepLift needs it: a module (whose submodules it hooks) from the
    embedding layer's output to the logits."""

    def __init__(self, model: ClassifierAdapter):
        super().__init__()
        self.classifier = model.model  # registered, so that captum finds its nonlinear modules
        self.adapter = model

    def forward(self, embedding_output: torch.Tensor, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.adapter.logits(input_ids, attention_mask, embedding_output=embedding_output)


class DeepLift(Explainer):
    """DeepLIFT-Rescale multipliers times (input - baseline) at the embedding output, summed per token."""

    name = "deeplift"
    version = 1
    defaults: ClassVar[dict[str, Any]] = {"baseline": "pad"}
    citation = """@inproceedings{shrikumar2017learning,
  title = {Learning Important Features Through Propagating Activation Differences},
  author = {Shrikumar, Avanti and Greenside, Peyton and Kundaje, Anshul},
  booktitle = {Proceedings of the 34th International Conference on Machine Learning},
  pages = {3145--3153},
  year = {2017}
}"""

    def validate(self) -> None:
        if self.params["baseline"] not in BASELINES:
            raise EffbenchError(f"parameter baseline={self.params['baseline']!r} is not allowed; choose one of {', '.join(BASELINES)}")

    def baseline_inputs(self, model: ClassifierAdapter, batch: Batch) -> torch.Tensor:
        """x' [B, N, D]: the embedding output of the pad (or mask) token at the scorable tokens, or zero there."""
        from effbench.metrics.perturbation import mask_token_id

        scorable = batch.scorable_mask
        if self.params["baseline"] == "zero":
            inputs = input_vectors(model, batch.input_ids, batch.attention_mask, "embedding_output")
            return inputs.masked_fill(scorable.to(inputs.device).unsqueeze(-1), 0.0)
        if self.params["baseline"] == "mask":
            token = mask_token_id(model.tokenizer)
            if token is None:
                raise EffbenchError("deeplift baseline 'mask' needs a mask token, or an unk token that is no special "
                                    "token the model relies on; this tokenizer has neither: use baseline 'pad' or 'zero'")
        else:
            token = model.tokenizer.pad_token_id or 0
        baseline_ids = torch.where(scorable, token, batch.input_ids)
        return input_vectors(model, baseline_ids, batch.attention_mask, "embedding_output")

    def scores(self, model: ClassifierAdapter, batch: Batch) -> torch.Tensor:
        try:
            from captum.attr import DeepLift as CaptumDeepLift
        except ImportError:
            raise EffbenchError("explainer deeplift needs captum: pip install 'effbench[captum]' (or 'captum>=0.7')") from None
        inputs = input_vectors(model, batch.input_ids, batch.attention_mask, "embedding_output").requires_grad_(True)
        baselines = self.baseline_inputs(model, batch)
        with torch.enable_grad(), warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Setting forward, backward hooks", category=UserWarning)
            attributions = CaptumDeepLift(_LogitsFromEmbeddingOutput(model)).attribute(
                inputs, baselines=baselines, target=batch.targets.to(model.device),
                additional_forward_args=(batch.input_ids, batch.attention_mask),
            )
        return attributions.detach().sum(-1)
