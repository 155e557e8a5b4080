"""Benchmark: necessity and sufficiency on one batch, against the bare forward passes they need.

The floor is the same perturbed sequences, in the same chunks, fed straight to `model.logits`: what any
implementation must pay. The ratio (engine time / floor time, each the best of several interleaved
rounds) is recorded in `extra_info`; the goal is at most 1.3. Run with
`python -m pytest tests/benchmarks -m '' --benchmark-enable -q` (MiniLM is the slow-marked case).
"""

from __future__ import annotations

import numpy as np
import torch

from effbench.metrics import get_metric
from effbench.metrics.perturbation import PerturbationEngine
from effbench.types import Attribution, Example
from timing import ROUNDS, best_time

SHORT_TEXTS = [
    "a delight",
    "the jokes land",
    "the cast is wonderful but the script is lazy , the pace flags and the ending never finds its footing",
    "a moving film",
    "smartly written and acted , a warm portrait of friendship and loss that never flags from start to finish",
    "tedious",
    "the music is wonderful",
    "not the story , not the cast , not the acting : a mess",
]


def test_necessity_and_sufficiency_against_bare_forward_passes(benchmark, adapter, corpus_sentences):
    texts = corpus_sentences + SHORT_TEXTS
    batch = adapter.make_batch([Example(id=f"bench-{i}", text=text, label=0) for i, text in enumerate(texts)])
    generator = torch.Generator().manual_seed(0)
    attribution = Attribution(
        scores=torch.randn(batch.input_ids.shape, generator=generator) * batch.scorable_mask, explainer="random", version=1
    )
    necessity, sufficiency = get_metric("necessity"), get_metric("sufficiency")

    def run_metrics(record: bool = False) -> PerturbationEngine:
        adapter.perturbation_cache.clear()  # every round computes its passes afresh
        engine = PerturbationEngine(adapter)
        if record:
            engine.chunk_log = []
        necessity.compute(engine, batch, attribution)
        sufficiency.compute(engine, batch, attribution)
        return engine

    recorded = run_metrics(record=True)
    chunks = recorded.chunk_log

    def bare_forward_passes() -> list[torch.Tensor]:
        with torch.inference_mode():
            return [adapter.logits(input_ids, attention_mask) for input_ids, attention_mask in chunks]

    # The floor does the same work: the same sequences, whose probabilities the engine cached.
    assert recorded.forward_calls == len(chunks)
    floor_probabilities = torch.softmax(torch.cat(bare_forward_passes()).double(), -1).numpy()
    assert len(floor_probabilities) == recorded.sequences_evaluated > len(batch)
    np.testing.assert_allclose(floor_probabilities, np.stack(list(recorded._cache.values())), rtol=0, atol=1e-12)

    def grouped_forward_passes() -> list[torch.Tensor]:
        """The same distinct sequences, grouped across examples by exact length: no padding, few calls."""
        rows = [ids[mask.bool()] for input_ids, attention_mask in chunks for ids, mask in zip(input_ids, attention_mask)]
        by_length: dict[int, list[torch.Tensor]] = {}
        for row in rows:
            by_length.setdefault(len(row), []).append(row)
        with torch.inference_mode():
            return [adapter.logits(torch.stack(group), torch.ones(len(group), length, dtype=torch.long))
                    for length, group in by_length.items()]

    benchmark(run_metrics)

    if not benchmark.disabled:
        engine_times, floor_times, grouped_times = [], [], []
        for _ in range(ROUNDS):  # interleaved, so that a busy machine slows both alike
            engine_times.append(best_time(run_metrics, 1))
            floor_times.append(best_time(bare_forward_passes, 1))
            grouped_times.append(best_time(grouped_forward_passes, 1))
        ratio = min(engine_times) / min(floor_times)
        benchmark.extra_info.update(
            {
                "ratio_to_bare_forward": round(ratio, 3),
                # against the same sequences grouped across examples by length, which no number could
                # then be independent of: what per-example chunks cost
                "ratio_to_forward_grouped_across_examples": round(min(engine_times) / min(grouped_times), 3),
                "engine_seconds": min(engine_times),
                "bare_forward_seconds": min(floor_times),
                "sequences": recorded.sequences_evaluated,
                "chunks": len(chunks),
                "examples": len(batch),
                "torch_threads": torch.get_num_threads(),
            }
        )
        print(f"\n{adapter.name}: {benchmark.extra_info}")
