"""Tiny random classifiers of every supported architecture, built offline from configs.

Each has 2 layers, 4 query heads (2 key/value heads where the family groups them), hidden size 64
(d_h = 16, so rank([T | 1]) <= 17 and inputs of ~50 tokens have a non-trivial C(a)), and weights drawn
with a large `initializer_range`, so that attention is peaked and the logits depend on the rows.
Encoders get the WordPiece tokenizer of `train_word_piece_tokenizer` ([CLS] first, a [MASK] token);
decoders a word-level tokenizer with pad = eos and no mask token: GPT-2's has no BOS and its unk is
its eos (so `mask` perturbations are refused), the Llama family's adds <s> and has a separate <unk>.
"""

from __future__ import annotations

ENCODERS = ["bert", "roberta", "xlm-roberta", "electra", "distilbert", "albert", "deberta-v2", "modernbert"]
DECODERS = ["gpt2", "llama", "qwen2", "mistral"]
ARCHITECTURES = ENCODERS + DECODERS

# the tests' eight review sentences (tests/conftest.py builds the tiny BERT's vocabulary from them too)
REVIEW_SENTENCES = [
    "the film is a delight from start to finish and the cast is wonderful",
    "a dull and tedious mess that never finds its footing",
    "an honest moving portrait of a family in trouble",
    "the plot is thin but the jokes land and the pace never flags",
    "i wanted to like it but the script is lazy and the acting is worse",
    "beautifully shot , smartly written , and acted with real conviction",
    "nothing here works : not the story , not the music , not the ending",
    "a warm funny film about friendship , loss and starting over again",
]
CORPUS = REVIEW_SENTENCES + [
    "which is a pity for a warm funny film about friendship",
    "so the two hours feel like four and the good scenes are lost in a tedious mess",
    "good great superb delightful bad awful boring really quite was story ending music",
]

# longer than rank([T | 1]) <= d_h + 1 = 17 tokens, and than Mistral's window of 24
LONG_TEXTS = [
    "the film is a delight from start to finish and the cast is wonderful , but the plot is thin , the script is "
    "lazy in places , and the ending never finds its footing , which is a pity for a warm funny film about "
    "friendship , loss and starting over again",
    "nothing here works : not the story , not the music , not the ending , not the cast , and not the jokes , "
    "so the two hours feel like four and the good scenes are lost in a tedious mess",
]
SHORT_TEXTS = ["a delight", "dull"]
MIXED_TEXTS = ["a delight", "the plot is thin but the jokes land", LONG_TEXTS[0],
               "nothing here works : not the story , not the music , not the ending , not the cast"]

HIDDEN, LAYERS, HEADS, KV_HEADS, INTERMEDIATE = 64, 2, 4, 2, 128
MISTRAL_WINDOW = 24


def decoder_tokenizer(kind: str):
    """A word-level tokenizer over the corpus: `gpt2` (no BOS, unk = eos = pad) or `llama` (<s> added, pad = eos)."""
    import transformers
    from tokenizers import Tokenizer, models, pre_tokenizers, processors

    words = sorted({word for text in CORPUS for word in text.split()} | {"jokes", "land", "cast"})
    specials = ["<|endoftext|>"] if kind == "gpt2" else ["<unk>", "<s>", "</s>"]
    vocabulary = {token: index for index, token in enumerate(specials + words)}
    unknown = "<|endoftext|>" if kind == "gpt2" else "<unk>"
    tokenizer = Tokenizer(models.WordLevel(vocabulary, unk_token=unknown))
    tokenizer.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    if kind == "gpt2":
        return transformers.PreTrainedTokenizerFast(tokenizer_object=tokenizer, eos_token="<|endoftext|>",
                                                    unk_token="<|endoftext|>", pad_token="<|endoftext|>",
                                                    bos_token="<|endoftext|>")
    tokenizer.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", vocabulary["<s>"])])
    return transformers.PreTrainedTokenizerFast(tokenizer_object=tokenizer, bos_token="<s>", eos_token="</s>",
                                                unk_token="<unk>", pad_token="</s>")


def tiny_classifier(model_type: str, seed: int = 0):
    """(model, tokenizer): a random tiny `*ForSequenceClassification` of `model_type` and its tokenizer."""
    import torch
    import transformers

    from effbench.models.reference import train_word_piece_tokenizer

    if model_type in ENCODERS:
        tokenizer = train_word_piece_tokenizer(CORPUS, vocab_size=400, min_frequency=1)
    else:
        tokenizer = decoder_tokenizer("gpt2" if model_type == "gpt2" else "llama")
    common = dict(vocab_size=len(tokenizer), num_labels=2, pad_token_id=tokenizer.pad_token_id, initializer_range=0.25)
    encoder = dict(hidden_size=HIDDEN, num_hidden_layers=LAYERS, num_attention_heads=HEADS, intermediate_size=INTERMEDIATE,
                   max_position_embeddings=256, **common)
    decoder = dict(hidden_size=HIDDEN, num_hidden_layers=LAYERS, num_attention_heads=HEADS, num_key_value_heads=KV_HEADS,
                   intermediate_size=INTERMEDIATE, max_position_embeddings=256, bos_token_id=tokenizer.bos_token_id,
                   eos_token_id=tokenizer.eos_token_id, **common)
    configs = {
        "bert": lambda: transformers.BertConfig(**encoder),
        "roberta": lambda: transformers.RobertaConfig(**{**encoder, "max_position_embeddings": 260}),
        "xlm-roberta": lambda: transformers.XLMRobertaConfig(**{**encoder, "max_position_embeddings": 260}),
        "electra": lambda: transformers.ElectraConfig(embedding_size=32, **encoder),
        "distilbert": lambda: transformers.DistilBertConfig(dim=HIDDEN, n_layers=LAYERS, n_heads=HEADS, hidden_dim=INTERMEDIATE,
                                                            max_position_embeddings=256, **common),
        "albert": lambda: transformers.AlbertConfig(embedding_size=32, num_hidden_groups=1, inner_group_num=1, **encoder),
        "deberta-v2": lambda: transformers.DebertaV2Config(**encoder, relative_attention=True, position_buckets=32,
                                                           pos_att_type=["p2c", "c2p"], max_relative_positions=64),
        "modernbert": lambda: transformers.ModernBertConfig(
            **{**encoder, "max_position_embeddings": 256}, global_attn_every_n_layers=2, local_attention=48,
            classifier_pooling="cls", cls_token_id=tokenizer.cls_token_id, sep_token_id=tokenizer.sep_token_id),
        "gpt2": lambda: transformers.GPT2Config(n_embd=HIDDEN, n_layer=LAYERS, n_head=HEADS, n_positions=256,
                                                bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                                                **common),
        "llama": lambda: transformers.LlamaConfig(**decoder),
        "qwen2": lambda: transformers.Qwen2Config(**decoder, use_sliding_window=True, sliding_window=MISTRAL_WINDOW,
                                                  max_window_layers=1),
        "mistral": lambda: transformers.MistralConfig(**decoder, sliding_window=MISTRAL_WINDOW),
    }
    config = configs[model_type]()
    torch.manual_seed(seed)
    model = transformers.AutoModelForSequenceClassification.from_config(config, attn_implementation="eager")
    return model.eval(), tokenizer


def tiny_adapter_of(model_type: str):
    from effbench.models.adapter import ClassifierAdapter

    model, tokenizer = tiny_classifier(model_type)
    return ClassifierAdapter(model, tokenizer, max_length=128, name=f"tiny-{model_type}")
