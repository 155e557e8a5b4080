import pytest
import torch

from effbench.errors import EffbenchError


def test_forward_returns_attention_probabilities_of_every_layer(tiny_adapter, tiny_examples):
    batch = tiny_adapter.make_batch(tiny_examples)
    out = tiny_adapter.forward(batch.input_ids, batch.attention_mask)
    assert len(out.attentions) == tiny_adapter.num_layers == 2
    assert out.attentions[0].shape == (4, 4, batch.input_ids.shape[1], batch.input_ids.shape[1])
    assert len(out.hidden_states) == tiny_adapter.num_layers + 1
    rows = out.attentions[-1].sum(-1)
    assert torch.allclose(rows, torch.ones_like(rows), atol=1e-5)
    # real tokens do not attend to padding
    real = batch.attention_mask.bool()
    to_padding = out.attentions[-1] * (~real)[:, None, None, :] * real[:, None, :, None]
    assert to_padding.abs().max() < 1e-9


def test_scorable_mask_excludes_special_tokens_and_padding(tiny_adapter, tiny_examples):
    batch = tiny_adapter.make_batch(tiny_examples)
    special = {tiny_adapter.tokenizer.cls_token_id, tiny_adapter.tokenizer.sep_token_id, tiny_adapter.tokenizer.pad_token_id}
    assert not any(int(t) in special for t in batch.input_ids[batch.scorable_mask])
    assert batch.scorable_mask.sum(1).tolist() == (batch.attention_mask.sum(1) - 2).tolist()


def test_head_transfers_reproduce_the_attention_output(tiny_adapter, tiny_examples):
    batch = tiny_adapter.make_batch(tiny_examples)
    out = tiny_adapter.forward(batch.input_ids, batch.attention_mask)
    layer = 1
    dense = tiny_adapter.model.bert.encoder.layer[layer].attention.output.dense
    captured = {}
    hook = dense.register_forward_hook(lambda module, inputs, output: captured.setdefault("out", output))
    tiny_adapter.forward(batch.input_ids, batch.attention_mask)
    hook.remove()
    transfers = tiny_adapter.head_transfers(layer, out)
    rebuilt = torch.einsum("bhij,bhjd->bid", out.attentions[layer], transfers) + dense.bias
    assert torch.allclose(rebuilt, captured["out"], atol=1e-5)


def test_attention_override_changes_logits_and_identity_does_not(tiny_adapter, tiny_examples):
    batch = tiny_adapter.make_batch(tiny_examples)
    with torch.no_grad():
        base = tiny_adapter.logits(batch.input_ids, batch.attention_mask)
        with tiny_adapter.attention_override(lambda layer, probs: probs.clone()):
            same = tiny_adapter.logits(batch.input_ids, batch.attention_mask)
        def attend_to_first_token(layer, probs):
            return torch.zeros_like(probs).index_fill_(-1, torch.tensor([0]), 1.0)

        with tiny_adapter.attention_override(attend_to_first_token):
            changed = tiny_adapter.logits(batch.input_ids, batch.attention_mask)
        after = tiny_adapter.logits(batch.input_ids, batch.attention_mask)
    assert torch.allclose(base, same, atol=1e-6)
    assert (base - changed).abs().max() > 1e-4
    assert torch.equal(base, after)


def test_gradients_flow_through_input_embeddings(tiny_adapter, tiny_examples):
    batch = tiny_adapter.make_batch(tiny_examples[:2])
    embeddings = tiny_adapter.input_embeddings(batch.input_ids).detach().requires_grad_(True)
    logits = tiny_adapter.logits(None, batch.attention_mask, inputs_embeds=embeddings)
    logits[:, 0].sum().backward()
    assert embeddings.grad is not None and embeddings.grad.abs().sum() > 0


def test_minilm_loads_with_eager_attention(minilm_adapter):
    assert (minilm_adapter.num_layers, minilm_adapter.num_heads, minilm_adapter.head_dim) == (6, 12, 32)
    encoded = minilm_adapter.tokenize(["a sentence to encode"])
    out = minilm_adapter.forward(encoded["input_ids"], encoded["attention_mask"])
    assert len(out.attentions) == 6


def test_an_unsupported_architecture_gets_a_one_line_error_listing_the_supported_ones():
    import transformers

    from effbench.models.adapter import ClassifierAdapter

    config = transformers.OPTConfig(vocab_size=50, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                                    ffn_dim=32, word_embed_proj_dim=16, num_labels=2)
    model = transformers.OPTForSequenceClassification(config)
    with pytest.raises(EffbenchError, match=r"model type 'opt' is not supported; supported: .*bert.*gpt2.*llama") as error:
        ClassifierAdapter(model, tokenizer=None, max_length=16, name="opt")
    assert "\n" not in str(error.value)


def test_missing_model_path_is_a_clear_error(tmp_path):
    from effbench.models.adapter import ClassifierAdapter

    with pytest.raises(EffbenchError, match="cannot load model"):
        ClassifierAdapter.load(tmp_path / "nothing-here", max_length=16)


def test_padding_does_not_change_logits(tiny_adapter, tiny_examples):
    batch = tiny_adapter.make_batch(tiny_examples)
    with torch.no_grad():
        together = tiny_adapter.logits(batch.input_ids, batch.attention_mask)
        for row, example in enumerate(tiny_examples):
            alone = tiny_adapter.make_batch([example])
            single = tiny_adapter.logits(alone.input_ids, alone.attention_mask)
            assert torch.allclose(single[0], together[row], atol=1e-5)
