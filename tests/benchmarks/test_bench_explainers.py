"""Benchmark: efficient_attention (cls readout, sparse) against one bare forward pass on the same batch.

16 sentences of 40 to 64 tokens. The full-input forward pass with attentions is made once with the
batch and shared by every explainer (it does not depend on the explainer), so the explainer's cost is
the bases and the linear programs. The ratio (explainer time / bare forward time, each the best of
several interleaved rounds) is recorded in `extra_info`, with the ratio that also counts the shared
forward pass with internals; the goal is at most 1.0. Run with
`python -m pytest tests/benchmarks -m '' --benchmark-enable -q` (MiniLM is the slow-marked case).
"""

from __future__ import annotations

import torch

from effbench.explainers import get_explainer
from effbench.types import Example
from timing import ROUNDS, best_time


def test_efficient_attention_against_a_forward_pass(benchmark, adapter, corpus_sentences):
    # 16 texts of 3 or 4 clauses: 40 to 64 tokens with MiniLM's vocabulary
    texts = ["in short , " + " , ".join(corpus_sentences[(i + j) % 8] for j in range(3 + i // 8)) for i in range(16)]
    batch = adapter.make_batch([Example(id=f"bench-{i}", text=text, label=0) for i, text in enumerate(texts)])
    lengths = batch.attention_mask.sum(1)
    assert lengths.min() > adapter.head_dim + 1  # every example has a non-trivial C(a)
    explainer = get_explainer("efficient_attention")

    def forward():
        with torch.no_grad():
            return adapter.logits(batch.input_ids, batch.attention_mask)

    def explain():
        return explainer.explain(adapter, batch)

    def forward_with_internals():
        with torch.no_grad():
            return adapter.forward(batch.input_ids, batch.attention_mask)

    explain()  # warm-up
    forward_seconds, explain_seconds, internals_seconds = float("inf"), float("inf"), float("inf")
    for _ in range(1 if benchmark.disabled else ROUNDS):  # interleaved: a busy machine slows all alike
        forward_seconds = min(forward_seconds, best_time(forward, 1))
        explain_seconds = min(explain_seconds, best_time(explain, 1))
        internals_seconds = min(internals_seconds, best_time(forward_with_internals, 1))
    attribution = benchmark(explain)
    raw = get_explainer("raw_attention").explain(adapter, batch)
    assert torch.isfinite(attribution.scores).all()
    assert (attribution.scores - raw.scores).abs().max() > 1e-3  # the linear programs were solved, not skipped

    benchmark.extra_info.update({
        "batch": f"{len(batch)} examples, {int(lengths.min())}-{int(lengths.max())} tokens",
        "forward_ms": round(1000 * forward_seconds, 2),
        "efficient_attention_ms": round(1000 * explain_seconds, 2),
        "ratio_to_forward": round(explain_seconds / forward_seconds, 3),
        "forward_with_internals_ms": round(1000 * internals_seconds, 2),
        "ratio_counting_the_shared_forward": round((explain_seconds + internals_seconds) / forward_seconds, 3),
    })
    print(f"\n{adapter.name}: {benchmark.extra_info}")
