"""Benchmark: integrated gradients' padding waste, counted (padded / real tokens through the model).

16 sentences of 2 to 60 tokens, 20 steps. The passes run longest examples first, each as wide as its
longest row; `extra_info` records the padded / real token ratio of those passes and of passes padded
to the batch's longest example (what effbench did before). Counted, not timed; run with
`python -m pytest tests/benchmarks -m '' --benchmark-enable -q`.
"""

from __future__ import annotations

import torch

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


def _counted_run(adapter, batches, monkeypatch) -> dict:
    """Padded and real tokens through the model over integrated gradients and necessity on `batches`."""
    from effbench.metrics import get_metric
    from effbench.metrics.perturbation import PerturbationEngine

    counts = {"padded": 0, "real": 0}
    run = type(adapter)._run

    def counting(self, input_ids, attention_mask, *args, **kwargs):
        counts["padded"] += attention_mask.numel()
        counts["real"] += int(attention_mask.sum())
        return run(self, input_ids, attention_mask, *args, **kwargs)

    monkeypatch.setattr(type(adapter), "_run", counting)
    explainer, necessity = get_explainer("integrated_gradients"), get_metric("necessity")
    for examples in batches:
        adapter.perturbation_cache.clear()
        batch = adapter.make_batch(examples)
        necessity.compute(PerturbationEngine(adapter), batch, explainer.explain(adapter, batch))
    monkeypatch.setattr(type(adapter), "_run", run)
    return counts


def test_padding_over_a_run(benchmark, adapter, corpus_sentences, monkeypatch):
    """Counted over integrated gradients and necessity on 32 sentences of 2 to 60 tokens, batch size 8:
    length-bucketed batches, against batches in the task's order (what effbench did before)."""
    from effbench.runner import length_bucketed_batches, token_lengths

    texts = [" , ".join(corpus_sentences[(i + j) % 8] for j in range(i % 5)) or "fine" for i in range(32)]
    examples = [Example(id=f"bench-{i}", text=text, label=0) for i, text in enumerate(texts)]
    bucketed = length_bucketed_batches(examples, token_lengths(adapter, examples), 8)
    after = _counted_run(adapter, bucketed, monkeypatch)
    before = _counted_run(adapter, [examples[start: start + 8] for start in range(0, 32, 8)], monkeypatch)
    ratio_after, ratio_before = after["padded"] / after["real"], before["padded"] / before["real"]
    assert ratio_after < ratio_before
    benchmark.pedantic(_counted_run, args=(adapter, bucketed[:1], monkeypatch), rounds=1, iterations=1)
    benchmark.extra_info.update({"padded_per_real_token": round(ratio_after, 3),
                                 "padded_per_real_token_before": round(ratio_before, 3)})
    print(f"\n{adapter.name}: {benchmark.extra_info}")


def test_integrated_gradients_on_a_batch_against_one_sentence_at_a_time(benchmark, adapter, corpus_sentences):
    """Seconds of integrated gradients on 8 sentences of similar length in one batch, over the seconds of
    the same sentences explained one at a time (best of interleaved rounds; the ratio is in extra_info)."""
    from timing import ROUNDS, best_time

    texts = [corpus_sentences[i % 8] + " , " + corpus_sentences[(i + 3) % 8] for i in range(8)]
    examples = [Example(id=f"bench-{i}", text=text, label=0) for i, text in enumerate(texts)]
    explainer = get_explainer("integrated_gradients")
    batch = adapter.make_batch(examples)
    singles = [adapter.make_batch([example]) for example in examples]
    batched_seconds = best_time(lambda: explainer.explain(adapter, batch), ROUNDS)
    single_seconds = best_time(lambda: [explainer.explain(adapter, one) for one in singles], ROUNDS)
    benchmark(explainer.explain, adapter, batch)
    lengths = batch.attention_mask.sum(1)
    benchmark.extra_info.update({
        "batch": f"{len(batch)} examples, {int(lengths.min())}-{int(lengths.max())} tokens",
        "batch_over_one_at_a_time": round(batched_seconds / single_seconds, 3),
    })
    batched_scores = explainer.explain(adapter, batch).scores
    for row, one in enumerate(singles):  # the same scores either way
        length = int(lengths[row])
        torch.testing.assert_close(batched_scores[row, :length], explainer.explain(adapter, one).scores[0, :length],
                                   rtol=0, atol=1e-5)
    print(f"\n{adapter.name}: {benchmark.extra_info}")
