"""Benchmark: integrated gradients' padding waste, counted (padded / real tokens through the model).

16 sentences of 2 to 60 tokens, 20 steps. The passes run longest examples first, each as wide as its
longest row; `extra_info` records the padded / real token ratio of those passes and of passes padded
to the batch's longest example (what effbench did before). Counted, not timed; run with
`python -m pytest tests/benchmarks -m '' --benchmark-enable -q`.
"""

from __future__ import annotations

from effbench.explainers import get_explainer
from effbench.types import Example


def test_integrated_gradients_padding(benchmark, adapter, corpus_sentences, monkeypatch):
    texts = [" , ".join(corpus_sentences[(i + j) % 8] for j in range(i % 5)) or "fine" for i in range(16)]
    batch = adapter.make_batch([Example(id=f"bench-{i}", text=text, label=0) for i, text in enumerate(texts)])
    lengths = batch.attention_mask.sum(1)
    explainer = get_explainer("integrated_gradients")
    counts = {"padded": 0, "real": 0}
    logits = adapter.logits

    def counting_logits(input_ids, attention_mask, **kwargs):
        counts["padded"] += attention_mask.numel()
        counts["real"] += int(attention_mask.sum())
        return logits(input_ids, attention_mask, **kwargs)

    monkeypatch.setattr(adapter, "logits", counting_logits)
    explainer.explain(adapter, batch)
    ratio = counts["padded"] / counts["real"]
    batch_wide = len(lengths) * int(lengths.max()) / int(lengths.sum())
    assert ratio < batch_wide  # the passes pad less than the batch does
    benchmark(explainer.explain, adapter, batch)
    benchmark.extra_info.update({
        "batch": f"{len(batch)} examples, {int(lengths.min())}-{int(lengths.max())} tokens",
        "padded_per_real_token": round(ratio, 3), "padded_per_real_token_batch_wide": round(batch_wide, 3),
    })
    print(f"\n{adapter.name}: {benchmark.extra_info}")
