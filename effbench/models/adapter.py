"""The model adapter: one sequence classifier and what explainers need from inside it.

It wraps any `AutoModelForSequenceClassification` of the BERT family (BERT, RoBERTa, ELECTRA, MiniLM:
models whose layers are `encoder.layer[l].attention.{self.value, output.dense}`), forces an
attention implementation that returns attention probabilities, and exposes logits, input embeddings,
attention probabilities, value vectors and each head's slice of the output projection.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
import transformers
from transformers import AttentionInterface, AutoModelForSequenceClassification, AutoTokenizer
from transformers.masking_utils import AttentionMaskInterface, eager_mask
from transformers.models.bert.modeling_bert import eager_attention_forward

from effbench.errors import EffbenchError
from effbench.types import Batch, Example

ATTENTION_IMPLEMENTATION = "effbench_eager"

# (layer index, attention probabilities [B, H, N, N]) -> replacement probabilities of the same shape
AttentionOverride = Callable[[int, torch.Tensor], torch.Tensor]
_active_override: list[AttentionOverride] = []


def _effbench_eager_attention(module, query, key, value, attention_mask, scaling=None, dropout=0.0, **kwargs):
    """Eager attention whose probabilities an `attention_override` context may replace."""
    output, probs = eager_attention_forward(module, query, key, value, attention_mask, scaling, dropout, **kwargs)
    if _active_override:
        probs = _active_override[-1](module.layer_idx, probs)
        output = torch.matmul(probs, value).transpose(1, 2).contiguous()
    return output, probs


transformers.utils.logging.set_verbosity_error()  # no load reports or per-load progress bars in effbench's output
transformers.utils.logging.disable_progress_bar()

AttentionInterface.register(ATTENTION_IMPLEMENTATION, _effbench_eager_attention)
# without a registered mask function, a custom implementation gets no padding mask at all
AttentionMaskInterface.register(ATTENTION_IMPLEMENTATION, eager_mask)


class _EmbeddingCaptured(Exception):
    """Stops a forward pass once the embedding layer's output is captured."""


@dataclass(frozen=True)
class ForwardOutput:
    logits: torch.Tensor  # [B, C]
    attentions: tuple[torch.Tensor, ...]  # per layer [B, H, N, N]
    hidden_states: tuple[torch.Tensor, ...]  # per layer input, and the last output: L + 1 of [B, N, D]


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


class ClassifierAdapter:
    """A sequence classifier in eval mode, with access to its attention internals."""

    def __init__(self, model, tokenizer, *, max_length: int, name: str, device: str = "cpu"):
        self.model = model.to(device).eval()
        self.tokenizer = tokenizer
        self.max_length = max_length
        self.name = name
        self.device = torch.device(device)
        self.model.set_attn_implementation(ATTENTION_IMPLEMENTATION)
        self._layers = self._find_layers()
        config = model.config
        self.num_layers = config.num_hidden_layers
        self.num_heads = config.num_attention_heads
        self.hidden_size = config.hidden_size
        self.head_dim = self.hidden_size // self.num_heads
        self.num_labels = config.num_labels
        self.dtype = next(model.parameters()).dtype
        # the model's output index of each of the task's classes, when its label order differs from the card's
        self.class_order: torch.Tensor | None = None
        # where the weights came from and their sha256 (effbench.models.loading.ModelProvenance); None when
        # the adapter was built by hand, and then no run record can say which model it explained
        self.provenance = None
        # class probabilities on perturbed inputs, keyed by (token ids, mode, positions): shared by
        # every PerturbationEngine on this model, so no perturbed input runs twice
        self.perturbation_cache: dict = {}

    @classmethod
    def load(cls, path_or_id: str | Path, *, max_length: int, truncation_side: str | None = None,
             device: str = "cpu", dtype: str = "float32"):
        """Load a local folder or hub id (hub ids need the network), safetensors weights only.

        `truncation_side` (right or left) overrides the one saved with the tokenizer."""
        torch_dtype = {"float32": torch.float32, "float64": torch.float64, "bfloat16": torch.bfloat16}.get(dtype)
        if torch_dtype is None:
            raise EffbenchError(f"dtype {dtype!r} is not supported; use float32, float64 or bfloat16")
        try:
            tokenizer = AutoTokenizer.from_pretrained(str(path_or_id))
            model = AutoModelForSequenceClassification.from_pretrained(
                str(path_or_id), attn_implementation="eager", dtype=torch_dtype, use_safetensors=True
            )
        except (OSError, ValueError) as error:
            first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
            raise EffbenchError(f"cannot load model {str(path_or_id)!r}: {first_line}") from None
        if truncation_side is not None:
            tokenizer.truncation_side = truncation_side
        return cls(model, tokenizer, max_length=max_length, name=str(path_or_id), device=device)

    def position_limit(self) -> int | None:
        """The most tokens the model reads (its tokenizer's model_max_length), or None when it sets none."""
        limit = getattr(self.tokenizer, "model_max_length", None)
        return limit if isinstance(limit, int) and 0 < limit < 1_000_000 else None

    def set_class_order(self, order: Sequence[int] | None) -> None:
        """Read output `order[i]` as class i of the task (None: the model's order is the task's)."""
        self.class_order = None if order is None else torch.tensor(list(order), device=self.device)

    def _task_logits(self, logits: torch.Tensor) -> torch.Tensor:
        return logits if self.class_order is None else logits[:, self.class_order]

    def _find_layers(self):
        base = self.model.base_model
        layers = getattr(getattr(base, "encoder", None), "layer", None)
        if layers is None or not hasattr(layers[0], "attention") or not hasattr(layers[0].attention, "self"):
            raise EffbenchError(
                f"model type {self.model.config.model_type!r} is not supported: effbench needs a BERT-family "
                "encoder (encoder.layer[l].attention.self / attention.output), e.g. BERT, RoBERTa, ELECTRA, MiniLM"
            )
        return layers

    # ---- tokens -------------------------------------------------------------------------------

    def tokenize(self, texts: Sequence[str]) -> dict[str, torch.Tensor]:
        """Right-padded ids, attention mask and the scorable mask (real, non-special tokens)."""
        encoded = self.tokenizer(
            list(texts),
            truncation=True,
            max_length=self.max_length,
            padding=True,
            return_tensors="pt",
            return_special_tokens_mask=True,
        )
        attention_mask = encoded["attention_mask"]
        scorable = attention_mask.bool() & ~encoded["special_tokens_mask"].bool()
        return {"input_ids": encoded["input_ids"], "attention_mask": attention_mask, "scorable_mask": scorable}

    def special_token_ids(self) -> set[int]:
        return set(self.tokenizer.all_special_ids)

    def make_batch(self, examples: Sequence[Example]) -> Batch:
        """Tokenise and run the full inputs once: `targets` is the model's class on the full input,
        and the forward pass (with attentions and hidden states) is kept for the explainers."""
        encoded = self.tokenize([example.text for example in examples])
        with torch.no_grad():
            forward = self.forward(encoded["input_ids"], encoded["attention_mask"])
        return Batch(
            example_ids=tuple(example.id for example in examples),
            input_ids=encoded["input_ids"],
            attention_mask=encoded["attention_mask"],
            scorable_mask=encoded["scorable_mask"],
            targets=forward.logits.argmax(-1).cpu(),
            labels=torch.tensor([example.label for example in examples]),
            forward=forward,
        )

    def batch_forward(self, batch: Batch) -> ForwardOutput:
        """The full-input forward pass of a batch: the one made with it, else computed now."""
        if batch.forward is not None:
            return batch.forward
        with torch.no_grad():
            return self.forward(batch.input_ids, batch.attention_mask)

    # ---- forward passes -----------------------------------------------------------------------

    def logits(self, input_ids: torch.Tensor | None, attention_mask: torch.Tensor,
               inputs_embeds: torch.Tensor | None = None, embedding_output: torch.Tensor | None = None):
        """Logits [B, C]. For gradients, pass `inputs_embeds` (word embeddings) instead of ids, or the ids and
        `embedding_output`, which replaces what the embedding layer outputs (see `embedding_module`)."""
        attention_mask = attention_mask.to(self.device)
        if inputs_embeds is not None:
            out = self.model(inputs_embeds=inputs_embeds, attention_mask=attention_mask)
        elif embedding_output is not None:
            handle = self.embedding_module().register_forward_hook(lambda module, args, output: embedding_output)
            try:
                out = self.model(input_ids=input_ids.to(self.device), attention_mask=attention_mask)
            finally:
                handle.remove()
        else:
            out = self.model(input_ids=input_ids.to(self.device), attention_mask=attention_mask)
        return self._task_logits(out.logits)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> ForwardOutput:
        """Logits, attention probabilities of every layer, and hidden states."""
        out = self.model(
            input_ids=input_ids.to(self.device),
            attention_mask=attention_mask.to(self.device),
            output_attentions=True,
            output_hidden_states=True,
        )
        if not out.attentions or len(out.attentions) != self.num_layers:
            raise EffbenchError(
                "the model returned no attention probabilities; it must run with eager attention "
                f"(got attn_implementation={self.model.config._attn_implementation!r})"
            )
        return ForwardOutput(logits=self._task_logits(out.logits), attentions=tuple(out.attentions), hidden_states=tuple(out.hidden_states))

    @contextlib.contextmanager
    def attention_override(self, override: AttentionOverride) -> Iterator[None]:
        """Inside the block, every forward pass replaces attention probabilities by `override(layer, probs)`."""
        _active_override.append(override)
        try:
            yield
        finally:
            _active_override.pop()

    # ---- internals explainers read --------------------------------------------------------------

    def input_embeddings(self, input_ids: torch.Tensor) -> torch.Tensor:
        """The word embeddings [B, N, D] that `logits(inputs_embeds=...)` takes."""
        return self.model.get_input_embeddings()(input_ids.to(self.device))

    def embedding_module(self) -> torch.nn.Module:
        """The embedding layer: its output is the first layer's input (BERT family: word + position + type
        embeddings, then LayerNorm)."""
        return self.model.base_model.embeddings

    def embedding_output(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """What the embedding layer outputs for `input_ids` [B, N]: [B, N, D], as in a forward pass of them.

        The forward pass stops at the embedding layer (its hook raises), so this costs no layer's work."""
        captured: list[torch.Tensor] = []

        def capture(module, args, output):
            captured.append(output.detach())
            raise _EmbeddingCaptured

        handle = self.embedding_module().register_forward_hook(capture)
        try:
            with torch.no_grad():
                self.model(input_ids=input_ids.to(self.device), attention_mask=attention_mask.to(self.device))
        except _EmbeddingCaptured:
            pass
        finally:
            handle.remove()
        return captured[0]

    def value_vectors(self, layer: int, layer_input: torch.Tensor) -> torch.Tensor:
        """V = X W_V + b_V per head, [B, H, N, d_h], from the layer's input hidden states [B, N, D]."""
        value = self._layers[layer].attention.self.value(layer_input)
        batch, tokens, _ = value.shape
        return value.view(batch, tokens, self.num_heads, self.head_dim).transpose(1, 2)

    def head_output_projection(self, layer: int) -> torch.Tensor:
        """W_O^h per head, [H, d_h, D]: head h's rows of the attention output projection."""
        weight = self._layers[layer].attention.output.dense.weight  # [D, H*d_h]; output = x W^T + b
        return weight.t().reshape(self.num_heads, self.head_dim, self.hidden_size)

    def head_transfers(self, layer: int, layer_input: torch.Tensor) -> torch.Tensor:
        """T = V W_O^h, [B, H, N, D]: what each token sends into the residual stream through each head."""
        return torch.einsum("bhnk,hkd->bhnd", self.value_vectors(layer, layer_input), self.head_output_projection(layer))


def normalise_layer(layer: int, num_layers: int) -> int:
    if not -num_layers <= layer < num_layers:
        raise EffbenchError(f"layer {layer} is out of range: the model has {num_layers} layers (0..{num_layers - 1} or -1..-{num_layers})")
    return layer % num_layers
