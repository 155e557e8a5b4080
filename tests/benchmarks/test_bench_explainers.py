"""Benchmark: efficient_attention (cls readout, sparse) against one bare forward pass on the same batch.

16 sentences of 40 to 64 tokens. The full-input forward pass with attentions is made once with the
batch and shared by every explainer (it does not depend on the explainer), so the explainer's cost is
the bases and the linear programs. The ratio (explainer time / bare forward time, each the best of
several interleaved rounds) is recorded in `extra_info`, with the ratio that also counts the shared
forward pass with internals; the goal is at most 1.0. Run with
`python -m pytest tests/benchmarks -m '' --benchmark-enable -q` (MiniLM is the slow-marked case).
"""

from __future__ import annotations

import time

import pytest
import torch

from effbench.explainers import get_explainer
from effbench.types import Example

CLAUSES = [
    "the film is a delight from start to finish and the cast is wonderful",
    "a dull and tedious mess that never finds its footing",
    "an honest moving portrait of a family in trouble",
    "the plot is thin but the jokes land and the pace never flags",
    "i wanted to like it but the script is lazy and the acting is worse",
    "beautifully shot , smartly written , and acted with real conviction",
    "nothing here works : not the story , not the music , not the ending",
    "a warm funny film about friendship , loss and starting over again",
]
# 16 texts of 3 or 4 clauses: 40 to 64 tokens with MiniLM's vocabulary
TEXTS = ["in short , " + " , ".join(CLAUSES[(i + j) % len(CLAUSES)] for j in range(3 + i // 8)) for i in range(16)]
ROUNDS = 7


@pytest.fixture(params=["tiny", pytest.param("minilm", marks=pytest.mark.slow)])
def adapter(request):
    return request.getfixturevalue(f"{request.param}_adapter")


def elapsed(function) -> float:
    start = time.perf_counter()
    function()
    return time.perf_counter() - start


def test_efficient_attention_against_a_forward_pass(benchmark, adapter):
    batch = adapter.make_batch([Example(id=f"bench-{i}", text=text, label=0) for i, text in enumerate(TEXTS)])
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
        forward_seconds = min(forward_seconds, elapsed(forward))
        explain_seconds = min(explain_seconds, elapsed(explain))
        internals_seconds = min(internals_seconds, elapsed(forward_with_internals))
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
