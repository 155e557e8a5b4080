"""The model adapter: one sequence classifier and what explainers need from inside it.

One adapter serves every supported architecture. What differs between families is declared once, in
`ARCHITECTURES` (a table keyed by `config.model_type`): where layer l's attention output projection
lives, which module is the embedding layer, whether rows are causal or windowed, whether key/value
heads are grouped, which token the classifier reads, whether layers are shared. The explainers read
the adapter and never branch on the model type.

Attention probabilities and value vectors are captured where the model computes them: in effbench's
registered `AttentionInterface` function for every model that uses the interface, and by hooks on the
attention module for DeBERTa-v2, whose disentangled attention does not. The layer index is the order
of the attention calls in one forward pass, so that ALBERT's one shared layer module is told apart.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
import transformers
from transformers import AttentionInterface, AutoModelForSequenceClassification, AutoTokenizer
from transformers.masking_utils import AttentionMaskInterface, eager_mask

from effbench.errors import EffbenchError
from effbench.types import Batch, Example

ATTENTION_IMPLEMENTATION = "effbench_eager"
# the dtypes a model's forward passes may run in (`--dtype`); class probabilities are always float64
DTYPES = {"float32": torch.float32, "float64": torch.float64, "bfloat16": torch.bfloat16, "float16": torch.float16}

# (layer index, attention probabilities [B, H, N, N]) -> replacement probabilities of the same shape
AttentionOverride = Callable[[int, torch.Tensor], torch.Tensor]
# (query, key, value) -> the same three, as the attention function receives them (same values, e.g. other gradients)
AttentionInputs = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor, torch.Tensor]]


class _AttentionCalls:
    """What the attention calls of the forward pass in progress see: the call count (the layer index),
    the active overrides, and, when capturing, the value vectors of each call."""

    def __init__(self):
        self.count = 0
        self.overrides: list[AttentionOverride] = []
        self.input_transforms: list[AttentionInputs] = []
        self.values: list[torch.Tensor] | None = None

    def next_layer(self, value: torch.Tensor) -> int:
        layer = self.count
        self.count += 1
        if self.values is not None:
            self.values.append(value.detach())
        return layer

    def override(self, layer: int, probs: torch.Tensor, value: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor] | None:
        """The replaced probabilities and the head outputs [B, H, N, d_h] they give, or None without an override."""
        if not self.overrides:
            return None
        for override in self.overrides:  # nested overrides compose, the outermost first
            probs = override(layer, probs)
        grouped = value.repeat_interleave(probs.shape[1] // value.shape[1], dim=1)  # a key/value head per query head
        return probs, torch.matmul(probs, grouped)


_calls = _AttentionCalls()


def _effbench_eager_attention(module, query, key, value, attention_mask, scaling=None, dropout=0.0, **kwargs):
    """The model's own eager attention, whose probabilities an `attention_override` context may replace."""
    eager = sys.modules[type(module).__module__].eager_attention_forward
    for transform in _calls.input_transforms:
        query, key, value = transform(query, key, value)
    output, probs = eager(module, query, key, value, attention_mask, scaling=scaling, dropout=dropout, **kwargs)
    layer = _calls.next_layer(value)
    replaced = _calls.override(layer, probs, value)
    if replaced is not None:
        probs, head_outputs = replaced
        output = head_outputs.transpose(1, 2).contiguous()
    return output, probs


transformers.utils.logging.set_verbosity_error()  # no load reports or per-load progress bars in effbench's output
transformers.utils.logging.disable_progress_bar()

AttentionInterface.register(ATTENTION_IMPLEMENTATION, _effbench_eager_attention)
# without a registered mask function, a custom implementation gets no padding mask at all
AttentionMaskInterface.register(ATTENTION_IMPLEMENTATION, eager_mask)


class _EmbeddingCaptured(Exception):
    """Stops a forward pass once the embedding layer's output is captured."""


# ---- one description per architecture ----------------------------------------------------------


def _no_window(config, layer: int) -> int | None:
    return None


def _window_of_sliding_layers(config, layer: int) -> int | None:
    """`config.sliding_window` on the layers `config.layer_types` marks as sliding (Qwen2, Qwen3, ModernBERT)."""
    layer_types = getattr(config, "layer_types", None)
    if layer_types is not None and layer_types[layer] == "sliding_attention":
        return config.sliding_window
    return None


def _window_of_every_layer(config, layer: int) -> int | None:
    """`config.sliding_window` on every layer, when set (Mistral)."""
    return getattr(config, "sliding_window", None)


@dataclass(frozen=True)
class Architecture:
    """Where one family keeps what effbench reads; paths are attribute paths ("a.b.c").

    - `layers`: from the base model, the list of layers (ALBERT: its layer groups, `shared_layers`);
    - `output_projection`: from a layer, the attention output projection W_O (a Linear, or a GPT-2
      Conv1D when `conv1d_projection`, whose weight is stored transposed);
    - `embeddings`: from the base model, the embedding layer (its output is the first layer's input);
    - `causal`: query i attends to tokens 0..i; `window(config, layer)`: the sliding window of layer l
      (None: none): causal rows see their last `window` tokens, bidirectional rows those within
      `window` positions either side;
    - `grouped_query`: query heads share `config.num_key_value_heads` key/value heads;
    - `readout`: the token the classifier reads: `first` ([CLS], <s>) or `last` (the last non-padding
      token; decoders, whose logits the adapter reads there itself with the `decoder_head` module);
    - `attention_interface`: the model calls `AttentionInterface` (else `attention_module`, from a
      layer, is hooked: DeBERTa-v2).
    - `norm_placement`: where the residual stream is normalised, for the explainers that read a layer as
      a sum of per-token vectors (ALTI, GlobEnc): `post`, y = LN(x + attention(x)) with the LayerNorm at
      `attention_norm` (from a layer), and the layer's output LN(y + FFN(y)) at `output_norm`; `pre`,
      y = x + attention(norm(x)), whose norm acts on each token alone and so sits inside its value
      vectors (LayerNorm or RMSNorm alike); None: not described.
    - `gated_mlp`: (activation, partner) paths from a layer when the MLP multiplies its activation's output
      by another module's output elementwise (Llama family), else None; `lrp_refusal`: why AttnLRP's
      rules cannot all be applied through modules and the attention function, or None.
    """

    family: str
    layers: str
    output_projection: str
    embeddings: str
    conv1d_projection: bool = False
    causal: bool = False
    window: Callable[[object, int], int | None] = _no_window
    grouped_query: bool = False
    readout: str = "first"
    decoder_head: str | None = None
    attention_interface: bool = True
    attention_module: str | None = None
    shared_layers: bool = False
    norm_placement: str | None = None
    attention_norm: str | None = None
    output_norm: str | None = None
    gated_mlp: tuple[str, str] | None = None
    lrp_refusal: str | None = None


_BERT_FAMILY = Architecture("BERT family", layers="encoder.layer", output_projection="attention.output.dense",
                            embeddings="embeddings", norm_placement="post", attention_norm="attention.output.LayerNorm",
                            output_norm="output.LayerNorm")
_DECODER = Architecture("Llama family", layers="layers", output_projection="self_attn.o_proj", embeddings="embed_tokens",
                        causal=True, grouped_query=True, readout="last", decoder_head="score", norm_placement="pre",
                        gated_mlp=("mlp.act_fn", "mlp.up_proj"))
_ROBERTA = dataclasses.replace(_BERT_FAMILY, lrp_refusal="its classification head applies tanh as a function, not a module")

ARCHITECTURES: dict[str, Architecture] = {
    "bert": _BERT_FAMILY,
    "roberta": _ROBERTA,
    "xlm-roberta": _ROBERTA,
    "electra": _BERT_FAMILY,
    "distilbert": Architecture("DistilBERT", layers="transformer.layer", output_projection="attention.out_lin",
                               embeddings="embeddings", norm_placement="post", attention_norm="sa_layer_norm",
                               output_norm="output_layer_norm",
                               lrp_refusal="its classifier applies ReLU as a function, not a module"),
    "albert": Architecture("ALBERT", layers="encoder.albert_layer_groups", output_projection="attention.dense",
                           embeddings="embeddings", shared_layers=True, norm_placement="post",
                           attention_norm="attention.LayerNorm", output_norm="full_layer_layer_norm"),
    "gpt2": Architecture("GPT-2", layers="h", output_projection="attn.c_proj", conv1d_projection=True,
                         embeddings="drop", causal=True, readout="last", decoder_head="score", norm_placement="pre"),
    "llama": _DECODER,
    "qwen2": Architecture("Qwen2", layers="layers", output_projection="self_attn.o_proj", embeddings="embed_tokens",
                          causal=True, window=_window_of_sliding_layers, grouped_query=True, readout="last",
                          decoder_head="score", norm_placement="pre", gated_mlp=("mlp.act_fn", "mlp.up_proj")),
    "mistral": Architecture("Mistral", layers="layers", output_projection="self_attn.o_proj", embeddings="embed_tokens",
                            causal=True, window=_window_of_every_layer, grouped_query=True, readout="last",
                            decoder_head="score", norm_placement="pre", gated_mlp=("mlp.act_fn", "mlp.up_proj")),
    "deberta-v2": Architecture("DeBERTa-v2/v3", layers="encoder.layer", output_projection="attention.output.dense",
                               embeddings="embeddings", attention_interface=False, attention_module="attention.self",
                               norm_placement="post", attention_norm="attention.output.LayerNorm",
                               output_norm="output.LayerNorm",
                               lrp_refusal="its disentangled attention bypasses AttentionInterface"),
    "modernbert": Architecture("ModernBERT", layers="layers", output_projection="attn.Wo", embeddings="embeddings",
                               window=_window_of_sliding_layers, norm_placement="pre",
                               lrp_refusal="its gated MLP multiplies the two halves of one projection's output"),
}


def architecture_of(config) -> Architecture:
    """The description of `config.model_type`, or a one-line error that lists the supported ones."""
    architecture = ARCHITECTURES.get(config.model_type)
    if architecture is None:
        raise EffbenchError(f"model type {config.model_type!r} is not supported; supported: {', '.join(sorted(ARCHITECTURES))}")
    if getattr(config, "classifier_pooling", "cls") != "cls":  # ModernBERT may pool the mean: no one token is read
        raise EffbenchError(f"classifier_pooling={config.classifier_pooling!r} is not supported; effbench reads classifiers that pool 'cls'")
    return architecture


def _attribute(root, path: str):
    for name in path.split("."):
        root = getattr(root, name)
    return root


def _hook_attention_module(module) -> None:
    """Capture and override the probabilities of an attention module that bypasses `AttentionInterface`
    (DeBERTa-v2's disentangled attention: called as (hidden_states, attention_mask, output_attentions,
    ...), it returns (context [B, N, H*d_h], probabilities [B, H, N, N] or None))."""
    requested: list[bool] = []

    def before(module, args, kwargs):
        requested.append(bool(args[2]) if len(args) > 2 else bool(kwargs.get("output_attentions", False)))
        if len(args) > 2:
            return (*args[:2], True, *args[3:]), kwargs
        return args, {**kwargs, "output_attentions": True}

    def after(module, args, kwargs, output):
        context, probs = output
        batch, tokens = context.shape[:2]
        heads = probs.shape[1]
        value = module.value_proj(args[0]).view(batch, tokens, heads, -1).transpose(1, 2)
        layer = _calls.next_layer(value)
        replaced = _calls.override(layer, probs, value)
        if replaced is not None:
            probs, head_outputs = replaced
            context = head_outputs.transpose(1, 2).reshape(batch, tokens, -1)
        return context, (probs if requested.pop() else None)

    module.register_forward_pre_hook(before, with_kwargs=True)
    module.register_forward_hook(after, with_kwargs=True)


@dataclass(frozen=True)
class ForwardOutput:
    logits: torch.Tensor  # [B, C]
    attentions: tuple[torch.Tensor, ...]  # per layer [B, H, N, N]
    hidden_states: tuple[torch.Tensor, ...]  # per layer input, and the last output: L + 1 of [B, N, D]
    values: tuple[torch.Tensor, ...]  # per layer the value vectors [B, H_kv, N, d_h] the attention mixed


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@dataclass
class PassCounts:
    """Rows through a model: `forwarded` (every sequence of every forward pass) and `backward` (those whose
    logits a gradient flowed back from)."""

    forwarded: int = 0
    backward: int = 0


class ClassifierAdapter:
    """A sequence classifier in eval mode, with access to its attention internals."""

    def __init__(self, model, tokenizer, *, max_length: int, name: str, device: str = "cpu"):
        check_device(device)
        config = model.config
        self.architecture = architecture_of(config)
        self.model = model.to(device).eval()
        self.tokenizer = tokenizer
        self.max_length = max_length
        self.name = name
        self.device = torch.device(device)
        self.num_layers = config.num_hidden_layers
        self._layers = self._find_layers()
        if self.architecture.attention_interface:
            self.model.set_attn_implementation(ATTENTION_IMPLEMENTATION)
        else:
            for layer in self._layers:
                _hook_attention_module(_attribute(layer, self.architecture.attention_module))
        # every forward pass counts its attention calls from 0: the count is the layer index
        self.model.base_model.register_forward_pre_hook(lambda module, args: setattr(_calls, "count", 0))
        self.num_heads = config.num_attention_heads
        self.num_key_value_heads = config.num_key_value_heads if self.architecture.grouped_query else self.num_heads
        self.hidden_size = config.hidden_size
        self.head_dim = self._output_projection_weight(0).shape[0] // self.num_heads
        self.num_labels = config.num_labels
        self.dtype = next(model.parameters()).dtype
        # the model's output index of each of the task's classes, when its label order differs from the card's
        self.class_order: torch.Tensor | None = None
        # where the weights came from and their sha256 (effbench.models.loading.ModelProvenance); None when
        # the adapter was built by hand, and then no run record can say which model it explained
        self.provenance = None
        # class probabilities on perturbed inputs, keyed by (token ids, mode, positions): shared by
        # every PerturbationEngine on this model, so no perturbed input of a batch runs twice (the
        # runner clears it after each batch, so that memory does not grow with the examples)
        self.perturbation_cache: dict = {}
        # the persistent cache of whole perturbation requests (effbench.forward_cache.ForwardCache), set by a run
        self.forward_cache = None
        # the sequences through the model (padded or not) and those a gradient flowed back from; one object that
        # copies of the adapter share (the randomisation check's re-initialised model), so their passes count too
        self.passes = PassCounts()

    @classmethod
    def load(cls, path_or_id: str | Path, *, max_length: int, truncation_side: str | None = None,
             device: str = "cpu", dtype: str = "float32"):
        """Load a local folder or hub id (hub ids need the network), safetensors weights only.

        `truncation_side` (right or left) overrides the one saved with the tokenizer."""
        torch_dtype = DTYPES.get(dtype)
        if torch_dtype is None:
            raise EffbenchError(f"dtype {dtype!r} is not supported; use {', '.join(DTYPES)}")
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

    def _find_layers(self) -> list:
        """The module of each layer l, [L] (ALBERT: its shared layer, repeated)."""
        layers = _attribute(self.model.base_model, self.architecture.layers)
        if not self.architecture.shared_layers:
            return list(layers)
        config = self.model.config
        if config.inner_group_num != 1:
            raise EffbenchError(f"ALBERT with inner_group_num={config.inner_group_num} is not supported; effbench reads ALBERT with one layer per group")
        per_group = self.num_layers / config.num_hidden_groups
        return [layers[int(layer / per_group)].albert_layers[0] for layer in range(self.num_layers)]

    # ---- tokens -------------------------------------------------------------------------------

    def tokenize(self, texts: Sequence[str], *, offsets: bool = False) -> dict[str, torch.Tensor]:
        """Right-padded ids (whatever padding side the tokenizer was saved with), attention mask and
        the scorable mask (real, non-special tokens); with `offsets`, each token's character span [B, N, 2]
        ("offset_mapping", which only a fast tokenizer gives)."""
        if offsets and not getattr(self.tokenizer, "is_fast", False):
            raise EffbenchError(f"model {self.name}: examples with evidence need a fast tokenizer, whose offsets map "
                                "the evidence's characters to tokens; this model's tokenizer is not a fast one")
        encoded = self.tokenizer(
            list(texts),
            truncation=True,
            max_length=self.max_length,
            padding=True,
            padding_side="right",
            return_tensors="pt",
            return_special_tokens_mask=True,
            **({"return_offsets_mapping": True} if offsets else {}),
        )
        attention_mask = encoded["attention_mask"]
        scorable = attention_mask.bool() & ~encoded["special_tokens_mask"].bool()
        tokens = {"input_ids": encoded["input_ids"], "attention_mask": attention_mask, "scorable_mask": scorable}
        return {**tokens, "offset_mapping": encoded["offset_mapping"]} if offsets else tokens

    def special_token_ids(self) -> set[int]:
        return set(self.tokenizer.all_special_ids)

    def make_batch(self, examples: Sequence[Example]) -> Batch:
        """Tokenise and run the full inputs once: `targets` is the model's class on the full input,
        and the forward pass (with attentions and hidden states) is kept for the explainers."""
        with_evidence = any(example.evidence is not None for example in examples)
        encoded = self.tokenize([example.text for example in examples], offsets=with_evidence)
        with torch.no_grad():
            forward = self.forward(encoded["input_ids"], encoded["attention_mask"])
        return Batch(
            example_ids=tuple(example.id for example in examples),
            input_ids=encoded["input_ids"],
            attention_mask=encoded["attention_mask"],
            scorable_mask=encoded["scorable_mask"],
            targets=forward.logits.argmax(-1).cpu(),
            labels=torch.tensor([example.label for example in examples]),
            evidence_mask=(evidence_token_mask(examples, encoded["offset_mapping"], encoded["scorable_mask"])
                           if with_evidence else None),
            forward=forward,
        )

    def batch_forward(self, batch: Batch) -> ForwardOutput:
        """The full-input forward pass of a batch: the one made with it, else computed now."""
        if batch.forward is not None:
            return batch.forward
        with torch.no_grad():
            return self.forward(batch.input_ids, batch.attention_mask)

    # ---- forward passes -----------------------------------------------------------------------

    def _run(self, input_ids, attention_mask: torch.Tensor, inputs_embeds=None, **outputs):
        """(logits [B, C] in the model's class order, the model's output).

        Decoders run their base model with positions counted from the attention mask (left or right
        padding give the same numbers) and are read at the last non-padding token by `decoder_head`."""
        attention_mask = attention_mask.to(self.device)
        self.passes.forwarded += len(attention_mask)
        inputs = {"inputs_embeds": inputs_embeds} if inputs_embeds is not None else {"input_ids": input_ids.to(self.device)}
        if self.architecture.readout == "first":
            out = self.model(attention_mask=attention_mask, **inputs, **outputs)
            return self._counting_backward(out.logits), out
        position_ids = (attention_mask.long().cumsum(-1) - 1).clamp_min(0)
        out = self.model.base_model(attention_mask=attention_mask, position_ids=position_ids, **inputs, **outputs)
        width = attention_mask.shape[1]
        last = (torch.arange(width, device=self.device) * attention_mask.long()).argmax(-1)
        read = out.last_hidden_state[torch.arange(len(last), device=self.device), last]
        return self._counting_backward(_attribute(self.model, self.architecture.decoder_head)(read)), out

    def _counting_backward(self, logits: torch.Tensor) -> torch.Tensor:
        """`logits`, which add their rows to `passes.backward` each time a gradient flows back through them."""
        if logits.requires_grad:
            rows, passes = len(logits), self.passes

            def count(gradient):
                passes.backward += rows

            logits.register_hook(count)
        return logits

    def logits(self, input_ids: torch.Tensor | None, attention_mask: torch.Tensor,
               inputs_embeds: torch.Tensor | None = None, embedding_output: torch.Tensor | None = None):
        """Logits [B, C]. For gradients, pass `inputs_embeds` (word embeddings) instead of ids, or the ids and
        `embedding_output`, which replaces what the embedding layer outputs (see `embedding_module`)."""
        if embedding_output is None:
            return self._task_logits(self._run(input_ids, attention_mask, inputs_embeds)[0])
        handle = self.embedding_module().register_forward_hook(lambda module, args, output: embedding_output)
        try:
            return self._task_logits(self._run(input_ids, attention_mask)[0])
        finally:
            handle.remove()

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> ForwardOutput:
        """Logits, attention probabilities and value vectors of every layer, and hidden states."""
        _calls.values = []
        try:
            logits, out = self._run(input_ids, attention_mask, output_attentions=True, output_hidden_states=True)
            values = tuple(_calls.values)
        finally:
            _calls.values = None
        if not out.attentions or len(out.attentions) != self.num_layers or len(values) != self.num_layers:
            raise EffbenchError(
                "the model returned no attention probabilities; it must run with eager attention "
                f"(got attn_implementation={self.model.config._attn_implementation!r})"
            )
        return ForwardOutput(logits=self._task_logits(logits), attentions=tuple(out.attentions),
                             hidden_states=tuple(out.hidden_states), values=values)

    @contextlib.contextmanager
    def attention_inputs(self, transform: AttentionInputs) -> Iterator[None]:
        """Inside the block, the attention function receives `transform(query, key, value)` (models that call
        `AttentionInterface`; DeBERTa-v2's hooked attention is not affected)."""
        _calls.input_transforms.append(transform)
        try:
            yield
        finally:
            _calls.input_transforms.pop()

    @contextlib.contextmanager
    def attention_override(self, override: AttentionOverride) -> Iterator[None]:
        """Inside the block, every forward pass replaces attention probabilities by `override(layer, probs)`."""
        _calls.overrides.append(override)
        try:
            yield
        finally:
            _calls.overrides.pop()

    # ---- the attention layout -------------------------------------------------------------------

    def readout_position(self, length: int) -> int:
        """The position of the token the classifier reads in a right-padded row of `length` real tokens."""
        return 0 if self.architecture.readout == "first" else length - 1

    def key_span(self, layer: int, query: int, length: int) -> tuple[int, int]:
        """The positions [start, stop) query row `query` of layer `layer` may attend to, in a row of
        `length` real tokens: all of them, its prefix (causal), or its window."""
        start, stop = 0, length
        if self.architecture.causal:
            stop = query + 1
        window = self.architecture.window(self.model.config, layer)
        if window is not None:
            if self.architecture.causal:
                start = max(0, query - window + 1)
            else:
                start, stop = max(0, query - window), min(length, query + window + 1)
        return start, stop

    # ---- internals explainers read --------------------------------------------------------------

    def input_embeddings(self, input_ids: torch.Tensor) -> torch.Tensor:
        """The word embeddings [B, N, D] that `logits(inputs_embeds=...)` takes."""
        return self.model.get_input_embeddings()(input_ids.to(self.device))

    def embedding_module(self) -> torch.nn.Module:
        """The embedding layer: its output is the first layer's input (BERT family: word + position + type
        embeddings, then LayerNorm; GPT-2: word + position embeddings, after dropout; Llama family: the
        word embeddings)."""
        return _attribute(self.model.base_model, self.architecture.embeddings)

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
                self._run(input_ids, attention_mask)
        except _EmbeddingCaptured:
            pass
        finally:
            handle.remove()
        return captured[0]

    def value_vectors(self, layer: int, forward: ForwardOutput) -> torch.Tensor:
        """V per query head, [B, H, N, d_h]: head h mixes the values of its key/value head."""
        values = forward.values[layer]
        return values.repeat_interleave(self.num_heads // values.shape[1], dim=1)

    def _output_projection_weight(self, layer: int) -> torch.Tensor:
        """W_O as [H*d_h, D]: output = x W_O + b."""
        module = _attribute(self._layers[layer], self.architecture.output_projection)
        return module.weight if self.architecture.conv1d_projection else module.weight.t()

    def head_output_projection(self, layer: int) -> torch.Tensor:
        """W_O^h per head, [H, d_h, D]: head h's rows of the attention output projection."""
        return self._output_projection_weight(layer).reshape(self.num_heads, self.head_dim, self.hidden_size)

    def output_projection_bias(self, layer: int) -> torch.Tensor | None:
        """b_O [D], the attention output projection's bias, or None when it has none."""
        return _attribute(self._layers[layer], self.architecture.output_projection).bias

    def layer_submodule(self, layer: int, path: str) -> torch.nn.Module:
        """The module at `path` (an attribute path, as in `Architecture`) inside layer `layer`."""
        return _attribute(self._layers[layer], path)

    @contextlib.contextmanager
    def layer_calls(self, path: str | None = None, *,
                    replace_input: Callable[[int, torch.Tensor], torch.Tensor] | None = None
                    ) -> Iterator[list[tuple[torch.Tensor, torch.Tensor]]]:
        """Inside the block, forward passes record (first input, output) of the module at `path` in each
        layer (None: the layer itself), in layer order (L per pass), in the yielded list;
        `replace_input(layer, hidden_states)`, when given, replaces that first input.

        Hooks go on each distinct module once, so ALBERT's one shared layer is seen once per layer."""
        modules = [self._layers[layer] if path is None else _attribute(self._layers[layer], path)
                   for layer in range(self.num_layers)]
        calls: list[tuple[torch.Tensor, torch.Tensor]] = []
        started = [0]

        def before(module, args, kwargs):
            layer = started[0] % self.num_layers
            started[0] += 1
            if replace_input is None:
                return None
            if args:
                return (replace_input(layer, args[0]), *args[1:]), kwargs
            return args, {**kwargs, "hidden_states": replace_input(layer, kwargs["hidden_states"])}

        def after(module, args, kwargs, output):
            inputs = args[0] if args else kwargs["hidden_states"]
            calls.append((inputs, output[0] if isinstance(output, tuple) else output))

        handles = []
        for module in {id(module): module for module in modules}.values():
            handles.append(module.register_forward_pre_hook(before, with_kwargs=True))
            handles.append(module.register_forward_hook(after, with_kwargs=True))
        try:
            yield calls
        finally:
            for handle in handles:
                handle.remove()

    def head_transfers(self, layer: int, forward: ForwardOutput) -> torch.Tensor:
        """T = V W_O^h, [B, H, N, D]: what each token sends into the residual stream through each head."""
        return torch.einsum("bhnk,hkd->bhnd", self.value_vectors(layer, forward), self.head_output_projection(layer))


def evidence_token_mask(examples: Sequence[Example], offset_mapping: torch.Tensor, scorable_mask: torch.Tensor) -> torch.Tensor:
    """[B, N] bool: the scorable tokens whose characters overlap an evidence span of their example (a span
    cut off by truncation marks nothing)."""
    starts, ends = offset_mapping[..., 0], offset_mapping[..., 1]
    mask = torch.zeros_like(scorable_mask)
    for row, example in enumerate(examples):
        for start, end in example.evidence or ():
            mask[row] |= (starts[row] < end) & (ends[row] > start)
    return mask & scorable_mask


def check_device(device: str) -> None:
    """A one-line error for a device torch does not know, or one this machine does not have."""
    try:
        parsed = torch.device(device)
    except (RuntimeError, TypeError, ValueError):
        raise EffbenchError(f"--device {device!r} is not a torch device; use cpu, cuda or cuda:N") from None
    if parsed.type == "cuda" and not torch.cuda.is_available():
        raise EffbenchError(f"--device {device}: CUDA is not available here (torch {torch.__version__}); use --device cpu")
    if parsed.type == "cuda" and parsed.index is not None and parsed.index >= torch.cuda.device_count():
        raise EffbenchError(f"--device {device}: this machine has {torch.cuda.device_count()} CUDA device(s)")


def normalise_layer(layer: int, num_layers: int) -> int:
    if not -num_layers <= layer < num_layers:
        raise EffbenchError(f"layer {layer} is out of range: the model has {num_layers} layers (0..{num_layers - 1} or -1..-{num_layers})")
    return layer % num_layers
